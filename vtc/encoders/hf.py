"""Frozen Hugging Face vision encoders loaded from a local folder: BLIP-2 (ViT + Q-Former), CLIP and SigLIP.

Weights are read with `from_pretrained(path, local_files_only=True)`, never from a hub id. Frames are resized
and normalised in torch with the folder's image-processor settings when present, and
encoded in chunks of `chunk_size` frames so memory stays bounded for long videos. `tome_r > 0` applies Token
Merging inside the tower (`vtc.encoders.patch`), so each frame gives fewer patch tokens. `attention=True` (CLIP,
SigLIP, BLIP-2 patches) switches the tower to eager attention and lets `encode_with_attention` also return the
attention each patch token received in the layer whose tokens are returned (VisionZip's dominant-token score).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtc.compressors.tome import tokens_after_merging
from vtc.encoders.base import VisionEncoder
from vtc.encoders.patch import patch_vision_tower

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


def quantization_kwargs(load_in_4bit: bool) -> dict[str, Any]:
    """`from_pretrained` arguments for optional 4-bit (NF4) loading with `bitsandbytes` (`quant` extra)."""
    if not load_in_4bit:
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as error:
        raise ImportError("load_in_4bit=True needs bitsandbytes: pip install 'vtc[quant]'") from error
    from transformers import BitsAndBytesConfig

    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return {"quantization_config": config, "device_map": {"": 0 if torch.cuda.is_available() else "cpu"}}


def patch_tokens(settings: ImageSettings, vision_config: Any, tome_r: int = 0, merged_layers: int | None = None) -> int:
    """Patch tokens per frame of a ViT with `vision_config` on frames of `settings.size`, after ToMe merged `tome_r` of
    them in each of `merged_layers` layers (all of them when None)."""
    patches = (settings.size[0] // vision_config.patch_size) * (settings.size[1] // vision_config.patch_size)
    layers = vision_config.num_hidden_layers if merged_layers is None else merged_layers
    return tokens_after_merging(patches, tome_r, layers)


def class_token_attention(attention: Tensor) -> Tensor:
    """`[t, heads, 1 + N, 1 + N]` -> `[t, N]`: the [CLS] query's attention to each patch token, averaged over heads
    (VisionZip, Yang et al. CVPR 2025, Sec. 3.2, dominant tokens of a tower with [CLS])."""
    return attention[:, :, 0, 1:].mean(dim=1)


def received_attention(attention: Tensor) -> Tensor:
    """`[t, heads, N, N]` -> `[t, N]`: the attention each token receives, averaged over heads and queries (VisionZip
    Sec. 3.2, dominant tokens of a tower without [CLS] such as SigLIP)."""
    return attention.mean(dim=(1, 2))


def freeze(module: nn.Module) -> nn.Module:
    """Put `module` in eval mode with every parameter frozen."""
    module.requires_grad_(False)
    return module.eval()


class HFVisionEncoder(VisionEncoder):
    """A frozen vision tower: frames are preprocessed in torch and encoded `chunk_size` at a time.

    With `tome_r > 0` the `tower` is patched in place with Token Merging (`tome_r` tokens merged in each layer); the
    subclass passes the `tokens_per_frame` that the patched tower gives (see `patch_tokens`). With `attention` the
    tower runs eager attention (sdpa returns no weights), so `encode_with_attention` works. Subclasses implement
    `tower_outputs`.
    """

    def __init__(
        self,
        tower: nn.Module,
        settings: ImageSettings,
        output_dim: int,
        tokens_per_frame: int,
        chunk_size: int,
        tome_r: int = 0,
        attention: bool = False,
    ) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if tome_r < 0:
            raise ValueError(f"tome_r must be >= 0, got {tome_r}")
        if not isinstance(attention, bool):
            raise ValueError(f"attention must be true or false, got {attention!r}")
        if attention and tome_r:
            raise ValueError(f"attention=True needs tome_r=0, got tome_r={tome_r}: merged tokens are not patches")
        if tome_r:
            patch_vision_tower(tower, tome_r)
        if attention:
            tower.set_attn_implementation("eager")
        self.settings = settings
        self.output_dim = output_dim
        self.tokens_per_frame = tokens_per_frame
        self.chunk_size = chunk_size
        self.provides_attention = attention

    def train(self, mode: bool = True) -> HFVisionEncoder:
        """Frozen: always stays in eval mode."""
        return super().train(False)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        """`[t, 3, h, w]` pixels -> `([t, N, D] tokens, [t, N] attention each token received, or None when not
        `with_attention`)`."""
        raise NotImplementedError

    def encode_chunks(self, frames: Tensor, with_attention: bool) -> list[tuple[Tensor, Tensor | None]]:
        """`tower_outputs` of uint8 `[T, H, W, 3]` frames preprocessed and encoded `chunk_size` at a time."""
        check_frames(frames)
        parameter = next(self.parameters())
        dtype = parameter.dtype if parameter.is_floating_point() else torch.float32
        return [
            self.tower_outputs(preprocess_frames(chunk.to(parameter.device), self.settings, dtype), with_attention)
            for chunk in frames.split(self.chunk_size)
        ]

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> float `[T, N, D]` (`N = tokens_per_frame`, `D = output_dim`)."""
        return torch.cat([tokens.float() for tokens, _ in self.encode_chunks(frames, False)])

    @torch.no_grad()
    def encode_with_attention(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 `[T, H, W, 3]` -> `(float [T, N, D] tokens, float [T, N] attention each token received)`; needs
        `attention=True` at construction."""
        if not self.provides_attention:
            raise ValueError(f"this {type(self).__name__} was built without attention: set attention: true")
        chunks = self.encode_chunks(frames, True)
        return torch.cat([t.float() for t, _ in chunks]), torch.cat([a.float() for _, a in chunks])


class CLIPVisionEncoder(HFVisionEncoder):
    """CLIP vision tower: patch tokens of layer `feature_layer` (class token dropped), `[T, (S/P)^2, D]`; with
    `attention`, the [CLS] attention of that layer to each patch."""

    def __init__(
        self,
        path: str | os.PathLike,
        chunk_size: int = 32,
        feature_layer: int = -1,
        load_in_4bit: bool = False,
        tome_r: int = 0,
        attention: bool = False,
    ) -> None:
        from transformers import CLIPVisionModel

        model = CLIPVisionModel.from_pretrained(path, local_files_only=True, **quantization_kwargs(load_in_4bit))
        config = model.config
        settings = read_image_settings(path, config.image_size, CLIP_MEAN, CLIP_STD)
        merged_layers = range(config.num_hidden_layers + 1)[feature_layer]  # hidden_states[0] is the embeddings
        if attention and merged_layers == 0:
            raise ValueError(
                f"attention=True needs a transformer layer, got feature_layer={feature_layer} (embeddings)"
            )
        patches = patch_tokens(settings, config, tome_r, merged_layers)
        super().__init__(model, settings, config.hidden_size, patches, chunk_size, tome_r, attention)
        self.model = freeze(model)
        self.feature_layer = feature_layer
        self.attention_layer = merged_layers - 1  # attentions[i] belongs to the layer giving hidden_states[i + 1]

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        last = self.feature_layer == -1
        outputs = self.model(pixel_values=pixels, output_hidden_states=not last, output_attentions=with_attention)
        hidden = outputs.last_hidden_state if last else outputs.hidden_states[self.feature_layer]
        attention = class_token_attention(outputs.attentions[self.attention_layer]) if with_attention else None
        return hidden[:, 1:], attention


class SiglipVisionEncoder(HFVisionEncoder):
    """SigLIP vision tower (no class token): all patch tokens of the last layer, `[T, (S/P)^2, D]`; with `attention`,
    the mean attention each patch receives in that layer."""

    def __init__(
        self,
        path: str | os.PathLike,
        chunk_size: int = 32,
        load_in_4bit: bool = False,
        tome_r: int = 0,
        attention: bool = False,
    ) -> None:
        from transformers import SiglipVisionModel

        model = SiglipVisionModel.from_pretrained(path, local_files_only=True, **quantization_kwargs(load_in_4bit))
        config = model.config
        settings = read_image_settings(path, config.image_size, HALF, HALF)
        patches = patch_tokens(settings, config, tome_r)
        super().__init__(model, settings, config.hidden_size, patches, chunk_size, tome_r, attention)
        self.model = freeze(model)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        outputs = self.model(pixel_values=pixels, output_attentions=with_attention)
        return outputs.last_hidden_state, received_attention(outputs.attentions[-1]) if with_attention else None


class Blip2VisionEncoder(HFVisionEncoder):
    """BLIP-2 ViT + Q-Former: `output="qformer"` gives `[T, Q=32, D_qformer]` query tokens (STAC's input),
    `output="patches"` the ViT patch tokens `[T, (S/P)^2, D_vit]` (class token dropped; with `attention`, the
    [CLS] attention of the last layer to each patch).

    Build it from a folder (`from_pretrained`) or around an already loaded `Blip2ForConditionalGeneration`
    (`from_blip2`, sharing its modules with the language model).
    """

    def __init__(
        self,
        vision_model: nn.Module,
        qformer: nn.Module,
        query_tokens: nn.Parameter,
        settings: ImageSettings,
        output: str = "qformer",
        chunk_size: int = 32,
        tome_r: int = 0,
        attention: bool = False,
    ) -> None:
        if output not in ("qformer", "patches"):
            raise ValueError(f"output must be 'qformer' or 'patches', got {output!r}")
        if output == "qformer" and attention:
            raise ValueError("attention=True needs output='patches': the Q-Former's queries have no patch attention")
        if output == "qformer":
            dim, tokens = query_tokens.shape[-1], query_tokens.shape[-2]
        else:
            dim, tokens = vision_model.config.hidden_size, patch_tokens(settings, vision_model.config, tome_r)
        super().__init__(vision_model, settings, dim, tokens, chunk_size, tome_r, attention)
        self.vision_model = freeze(vision_model)
        self.qformer = freeze(qformer)
        self.query_tokens = query_tokens
        self.query_tokens.requires_grad_(False)
        self.output = output

    @classmethod
    def from_blip2(cls, model: nn.Module, path: str | os.PathLike, **options: Any) -> Blip2VisionEncoder:
        """Wrap the vision side of a loaded `Blip2ForConditionalGeneration` (image settings from `path`; `options`:
        the constructor's `output`, `chunk_size`, `tome_r`, `attention`); `tome_r > 0` patches its vision tower in
        place, and `attention` switches it to eager attention."""
        settings = read_image_settings(path, model.config.vision_config.image_size, CLIP_MEAN, CLIP_STD)
        return cls(model.vision_model, model.qformer, model.query_tokens, settings, **options)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, load_in_4bit: bool = False, **options: Any) -> Blip2VisionEncoder:
        """Load a BLIP-2 folder and keep only its vision side (the language model is dropped); `options` as for
        `from_blip2`."""
        from transformers import Blip2ForConditionalGeneration

        model = Blip2ForConditionalGeneration.from_pretrained(
            path, local_files_only=True, **quantization_kwargs(load_in_4bit)
        )
        return cls.from_blip2(model, path, **options)

    def tower_outputs(self, pixels: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        outputs = self.vision_model(pixel_values=pixels, output_attentions=with_attention)
        image_embeds = outputs.last_hidden_state
        if self.output == "patches":
            return image_embeds[:, 1:], class_token_attention(outputs.attentions[-1]) if with_attention else None
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        query = self.query_tokens.expand(image_embeds.shape[0], -1, -1)
        return self.qformer(
            query_embeds=query, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
        ).last_hidden_state, None
