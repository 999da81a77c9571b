"""A `VideoLMM`'s batches: videos of different lengths encoded and padded, and one video as a batch of one.

A batch holds either `frames` (a list of uint8 `[T_i, H, W, 3]`, for the vision encoder) or cached `features
[B, T, N, D]` (with an optional `frame_mask [B, T]`), and `timestamps` (`[B, T]` or a list of `[T_i]` seconds);
then `query` (B strings), `duration` (B seconds, where time tokens or the saliency readout need it) and, to train,
`answer` (B strings) or `window` (B `(start, end)` seconds).
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
    encoder: VisionEncoder, frames: Sequence[Tensor], timestamps: Sequence[Any]
) -> tuple[Tensor, Tensor, Tensor]:
    """Encode each video's uint8 frames `[T_i, H, W, 3]` (with `[T_i]` timestamps) and pad them to features
    `[B, T, N, D]`, float32 timestamps `[B, T]` and the frame mask `[B, T]`."""
    encoded = [encoder.encode(video) for video in frames]
    times = [torch.as_tensor(t, dtype=torch.float32) for t in timestamps]
    if [len(t) for t in times] != [len(e) for e in encoded]:
        raise ValueError(
            f"timestamps must have one entry per frame: frames {[len(e) for e in encoded]}, "
            f"timestamps {[len(t) for t in times]}"
        )
    features, frame_mask = pad_frames(encoded)
    return features, pad_frames(times)[0], frame_mask


def single_video_batch(
    clip_or_path: str | os.PathLike | VideoClip | Mapping[str, Any], num_frames: int
) -> tuple[dict[str, Any], float]:
    """One video as a batch of one (without `query`) and its duration in seconds.

    `clip_or_path` is a video file path (decoded with `num_frames` frames), a `VideoClip`, or a mapping with cached
    `features [T, N, D]`, `timestamps [T]` and `duration`.
    """
    if isinstance(clip_or_path, (str, os.PathLike)):
        from vtc.video import load_video  # PyAV, only to decode a file

        clip_or_path = load_video(clip_or_path, num_frames=num_frames)
    if isinstance(clip_or_path, Mapping):
        batch = {
            "features": torch.as_tensor(clip_or_path["features"]).unsqueeze(0),
            "timestamps": torch.as_tensor(clip_or_path["timestamps"]).unsqueeze(0),
        }
        return batch, float(clip_or_path["duration"])
    return {"frames": [clip_or_path.frames], "timestamps": [clip_or_path.timestamps]}, float(clip_or_path.duration)
