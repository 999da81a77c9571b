"""Frame preprocessing for the Hugging Face vision towers: the image processor's size and normalisation, in torch."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

PREPROCESSOR_NAME = "preprocessor_config.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ImageSettings:
    """Resize target and normalisation of an image processor.

    With `center_crop` (CLIP), frames are resized so their shorter side is `size`'s and then centre-cropped to
    `size`, keeping the aspect ratio; otherwise they are resized to `size` directly (BLIP-2, SigLIP).
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float = 1 / 255
    center_crop: bool = False


def read_image_settings(
    path: str | os.PathLike, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> ImageSettings:
    """Image settings from `path/preprocessor_config.json`, falling back to `image_size`, `mean` and `std`.

    `size` may be `{"height", "width"}`, `{"shortest_edge"}` or an int; with `do_center_crop`, `crop_size` is the
    output size.
    """
    file = Path(path) / PREPROCESSOR_NAME
    saved: dict[str, Any] = json.loads(file.read_text()) if file.exists() else {}
    center_crop = bool(saved.get("do_center_crop")) and "crop_size" in saved
    size = saved["crop_size"] if center_crop else saved.get("size", image_size)
    if isinstance(size, dict):
        edge = size.get("shortest_edge", image_size)
        size = (size.get("height", edge), size.get("width", edge))
    elif isinstance(size, int):
        size = (size, size)
    return ImageSettings(
        size=(int(size[0]), int(size[1])),
        mean=tuple(saved.get("image_mean", mean)),
        std=tuple(saved.get("image_std", std)),
        rescale_factor=float(saved.get("rescale_factor", 1 / 255)),
        center_crop=center_crop,
    )


def check_frames(frames: Tensor) -> None:
    """Raise `ValueError` unless `frames` is a non-empty uint8 `[T, H, W, 3]` tensor."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"frames must be a uint8 torch.Tensor [T, H, W, 3], got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 RGB, got {frames.dtype}")
    if frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"frames must be non-empty [T>0, H>0, W>0, 3], got shape {tuple(frames.shape)}")


def preprocess_frames(frames: Tensor, settings: ImageSettings, dtype: torch.dtype = torch.float32) -> Tensor:
    """uint8 `[T, H, W, 3]` -> normalised `[T, 3, h, w]` (bicubic antialiased resize, optional centre crop)."""
    pixels = frames.permute(0, 3, 1, 2).float()
    height, width = settings.size
    resized = settings.size
    if settings.center_crop:
        scale = max(height / pixels.shape[-2], width / pixels.shape[-1])
        resized = (max(height, round(pixels.shape[-2] * scale)), max(width, round(pixels.shape[-1] * scale)))
    if tuple(pixels.shape[-2:]) != resized:
        pixels = F.interpolate(pixels, size=resized, mode="bicubic", antialias=True, align_corners=False)
        pixels = pixels.clamp(0, 255)
    top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
    pixels = pixels[..., top : top + height, left : left + width]
    mean = torch.tensor(settings.mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(settings.std, device=pixels.device).view(1, 3, 1, 1)
    return ((pixels * settings.rescale_factor - mean) / std).to(dtype)
