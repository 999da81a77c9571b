"""LLaVA-OneVision / LLaVA-Video (`LlavaOnevisionForConditionalGeneration`): the compressor runs inside
`get_video_features`, after the SigLIP tower, the projector and (when kept on) the model's own 2 x 2 bilinear pooling,
before the trailing newline token; the processor writes the compressed count of `<video>` placeholders.

One hook: the base model's `get_video_features` is wrapped on the instance (generate's multimodal pre-encoding and
`forward` both call it). Positions are 1-D, so the shorter sequence needs nothing else. `pooling=False` replaces the
instance's `apply_pooling` by the identity: the compressor then reads the full patch grid.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from vtc.compressors import Compressor
from vtc.integrations.tokens import VideoTokenCompression


def frame_grid(model: nn.Module, pooling: bool) -> tuple[int, int]:
    """`(rows, cols)` of a frame's tokens after the projector: the vision tower's patch grid, halved (rounded up)
    by the model's own pooling when it is on."""
    vision = model.config.vision_config
    side = vision.image_size // vision.patch_size
    return (math.ceil(side / 2),) * 2 if pooling else (side, side)


def attach(
    model: nn.Module, compressor: Compressor, processor: Any | None, pooling: bool = True
) -> VideoTokenCompression:
    """Put `compressor` into `model` (and the compressed placeholder count into `processor`, when given)."""
    base = model.model
    compression = VideoTokenCompression(compressor, frame_grid(model, pooling), extra_tokens=1)
    base.video_token_compression = compression
    if not pooling:
        base.apply_pooling = lambda features: features
    original = base.get_video_features

    @functools.wraps(original)
    def get_video_features(pixel_values_videos: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """`pooler_output [B, T * N + 1, D]` (frames, then the newline) -> `[B, L + 1, D]`."""
        kwargs["return_dict"] = True
        outputs = original(pixel_values_videos, *args, **kwargs)
        batch, frames = pixel_values_videos.shape[:2]
        features, newline = outputs.pooler_output[:, :-1], outputs.pooler_output[:, -1:]
        videos = features.reshape(batch, frames, -1, features.shape[-1])
        compressed = compression(list(videos), [compression.grid] * batch)
        outputs.pooler_output = torch.cat([torch.stack(compressed), newline], dim=1)
        return outputs

    base.get_video_features = get_video_features
    if processor is not None:

        def replace_video_token(video_inputs: dict, video_idx: int, **kwargs: Any) -> str:
            frames = len(video_inputs["pixel_values_videos"][video_idx])
            return processor.video_token * compression.placeholder_count(frames)

        processor.replace_video_token = replace_video_token
    return compression
