"""A `VideoLMM`'s batches: videos of different lengths encoded and padded, and one video as a batch of one.

A batch holds either `frames` (a list of uint8 `[T_i, H, W, 3]`, for the vision encoder) or cached `features
[B, T, N, D]` (with an optional `frame_mask [B, T]` and, for a compressor that uses it, `attention [B, T, N]`), and
`timestamps` (`[B, T]` or a list of `[T_i]` seconds); then `query` (B strings), `duration` (B seconds, where time
tokens or the saliency readout need it) and, to train, `answer` (B strings) or `window` (B `(start, end)` seconds).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from vtc.encoders import VisionEncoder
from vtc.utils.batching import pad_frames

if TYPE_CHECKING:
    from vtc.video import VideoClip


def encode_frames(
    encoder: VisionEncoder, frames: Sequence[Tensor], timestamps: Sequence[Any], with_attention: bool = False
) -> tuple[Tensor, ...]:
    """Encode each video's uint8 frames `[T_i, H, W, 3]` (with `[T_i]` timestamps) and pad them to features
    `[B, T, N, D]`, float32 timestamps `[B, T]` and the frame mask `[B, T]`; `with_attention` appends the attention
    each token received in the encoder, `[B, T, N]` (0 on padded frames, `encoder.encode_with_attention`)."""
    if with_attention:
        pairs = [encoder.encode_with_attention(video) for video in frames]
        encoded, attention = [tokens for tokens, _ in pairs], [weights for _, weights in pairs]
    else:
        encoded, attention = [encoder.encode(video) for video in frames], None
    times = [torch.as_tensor(t, dtype=torch.float32) for t in timestamps]
    if [len(t) for t in times] != [len(e) for e in encoded]:
        raise ValueError(
            f"timestamps must have one entry per frame: frames {[len(e) for e in encoded]}, "
            f"timestamps {[len(t) for t in times]}"
        )
    features, frame_mask = pad_frames(encoded)
    padded = (features, pad_frames(times)[0], frame_mask)
    return padded if attention is None else (*padded, pad_frames(attention)[0])


def batch_visuals(
    batch: Mapping[str, Any], encoder: VisionEncoder | None, with_attention: bool, device: torch.device
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """A batch's features `[B, T, N, D]`, float32 timestamps `[B, T]`, frame mask `[B, T]` (None: all frames) and,
    `with_attention`, the attention `[B, T, N]` each token received in the encoder (else None), all on `device`: its
    cached `features` (with `frame_mask` and `attention` when there), or its `frames` encoded by `encoder`."""
    if "features" in batch:
        if with_attention and batch.get("attention") is None:
            raise ValueError(
                "the compressor needs batch['attention'] [B, T, N] beside cached features: extract them with an "
                "encoder whose config sets attention: true"
            )
        features, frame_mask = batch["features"], batch.get("frame_mask")
        timestamps = torch.as_tensor(batch["timestamps"], dtype=torch.float32)
        attention = batch["attention"] if with_attention else None
    else:
        if encoder is None:
            raise ValueError("this model has no encoder (feature_dim config): pass batch['features']")
        features, timestamps, frame_mask, *attended = encode_frames(
            encoder, batch["frames"], batch["timestamps"], with_attention
        )
        attention = attended[0] if attended else None
    frame_mask = None if frame_mask is None else frame_mask.to(device)
    attention = None if attention is None else attention.to(device)
    return features.to(device), timestamps.to(device), frame_mask, attention


def single_video_batch(
    clip_or_path: str | os.PathLike | VideoClip | Mapping[str, Any], num_frames: int
) -> tuple[dict[str, Any], float]:
    """One video as a batch of one (without `query`) and its duration in seconds.

    `clip_or_path` is a video file path (decoded with `num_frames` frames), a `VideoClip`, or a mapping with cached
    `features [T, N, D]`, `timestamps [T]`, `duration` and optionally `attention [T, N]`.
    """
    if isinstance(clip_or_path, (str, os.PathLike)):
        from vtc.video import load_video  # PyAV, only to decode a file

        clip_or_path = load_video(clip_or_path, num_frames=num_frames)
    if isinstance(clip_or_path, Mapping):
        keys = ("features", "timestamps", *(("attention",) if "attention" in clip_or_path else ()))
        batch = {key: torch.as_tensor(clip_or_path[key]).unsqueeze(0) for key in keys}
        return batch, float(clip_or_path["duration"])
    return {"frames": [clip_or_path.frames], "timestamps": [clip_or_path.timestamps]}, float(clip_or_path.duration)
