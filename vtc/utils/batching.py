"""Batching videos of different lengths."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def pad_frames(videos: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack per-video `[T_i, ...]` tensors into `[B, max T_i, ...]` (zeros after each video's last frame) and the
    `frame_mask [B, max T_i]`, True on real frames."""
    if not videos:
        raise ValueError("pad_frames needs at least one video, got none")
    lengths = torch.tensor([len(video) for video in videos], device=videos[0].device)
    frame_mask = torch.arange(int(lengths.max()), device=lengths.device) < lengths[:, None]
    return pad_sequence(list(videos), batch_first=True), frame_mask
