"""Input checks of the compressor interface: a video's tokens, timestamps, frame mask and attention, and one streamed
frame; each raises `ValueError` naming what was expected and what came."""

from __future__ import annotations

import torch
from torch import Tensor


def validate_inputs(
    tokens: Tensor, dim: int, timestamps: Tensor | None, frame_mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Check `tokens [B, T, N, D]`, `timestamps [B, T]`, `frame_mask [B, T]`; fill the defaults.

    Raises `ValueError` naming the expected and received shapes for any wrong rank or size, an empty video,
    non-finite values, a `frame_mask` that is neither bool nor exactly 0 / 1, or timestamps that decrease along a
    video's valid frames (`check_time_order`).
    """
    if not isinstance(tokens, Tensor):
        raise TypeError(f"tokens must be a torch.Tensor [B, T, N, D], got {type(tokens).__name__}")
    if tokens.dim() != 4:
        raise ValueError(f"tokens must be [B, T, N, D={dim}], got shape {tuple(tokens.shape)}")
    batch, frames, per_frame, channels = tokens.shape
    if channels != dim:
        raise ValueError(f"tokens must be [B, T, N, D={dim}], got D={channels} (shape {tuple(tokens.shape)})")
    if batch == 0 or frames == 0 or per_frame == 0:
        raise ValueError(f"tokens must be non-empty [B>0, T>0, N>0, D], got shape {tuple(tokens.shape)}")
    if not tokens.is_floating_point():
        raise ValueError(f"tokens must be a floating-point tensor, got {tokens.dtype}")
    if not torch.isfinite(tokens).all():
        raise ValueError("tokens contain NaN or Inf")
    if timestamps is None:
        timestamps = torch.arange(frames, device=tokens.device, dtype=torch.float32).expand(batch, frames)
    else:
        if tuple(timestamps.shape) != (batch, frames):
            raise ValueError(f"timestamps must be [B={batch}, T={frames}], got shape {tuple(timestamps.shape)}")
        if not torch.isfinite(timestamps).all():
            raise ValueError("timestamps contain NaN or Inf")
        timestamps = timestamps.to(device=tokens.device, dtype=torch.float32)
    if frame_mask is None:
        frame_mask = torch.ones(batch, frames, dtype=torch.bool, device=tokens.device)
    else:
        if tuple(frame_mask.shape) != (batch, frames):
            raise ValueError(f"frame_mask must be [B={batch}, T={frames}], got shape {tuple(frame_mask.shape)}")
        other = frame_mask[(frame_mask != 0) & (frame_mask != 1)]
        if other.numel():
            raise ValueError(f"frame_mask must be bool or exactly 0 / 1, got {other[0].item()} ({frame_mask.dtype})")
        frame_mask = frame_mask.to(device=tokens.device, dtype=torch.bool)
        if not frame_mask.any(dim=1).all():
            raise ValueError("every video needs at least one valid frame (a frame_mask row is all False)")
    check_time_order(timestamps, frame_mask)
    return timestamps, frame_mask


def validate_attention(attention: Tensor | None, tokens: Tensor, needed_by: str | None) -> Tensor | None:
    """Check `attention [B, T, N]` against `tokens [B, T, N, D]` (floating, finite, >= 0) and return it as float32;
    None stays None unless the compressor `needed_by` (its name) uses it."""
    if attention is None and needed_by is not None:
        raise ValueError(f"{needed_by} needs the encoder's attention: pass attention=[B, T, N] (received per patch)")
    if attention is None:
        return None
    if not isinstance(attention, Tensor) or attention.shape != tokens.shape[:3]:
        got = tuple(attention.shape) if isinstance(attention, Tensor) else type(attention).__name__
        raise ValueError(f"attention must be [B, T, N] = {tuple(tokens.shape[:3])} like the tokens, got {got}")
    if not attention.is_floating_point() or not torch.isfinite(attention).all() or (attention < 0).any():
        raise ValueError(
            f"attention must hold finite floating-point weights >= 0, got {attention.dtype}, min {attention.min()}"
        )
    return attention.to(device=tokens.device, dtype=torch.float32)


def check_time_order(timestamps: Tensor, frame_mask: Tensor) -> None:
    """Raise `ValueError` if a video's timestamps `[B, T]` decrease from one valid frame to the next."""
    valid_times = timestamps.masked_fill(~frame_mask, float("-inf")).cummax(dim=1).values
    going_back = frame_mask[:, 1:] & (timestamps[:, 1:] < valid_times[:, :-1])
    if going_back.any():
        video, frame = (int(index) for index in going_back.nonzero()[0])
        raise ValueError(
            f"timestamps must not decrease along a video's valid frames; video {video} goes back from "
            f"{float(valid_times[video, frame])} s to {float(timestamps[video, frame + 1])} s at frame {frame + 1}"
        )


def validate_frame(frame_tokens: Tensor, dim: int, timestamp: Tensor) -> None:
    """Check one streamed frame `[B, N, D]` and its `timestamp [B]` as `validate_inputs` checks a video."""
    if not isinstance(frame_tokens, Tensor) or frame_tokens.dim() != 3 or frame_tokens.shape[-1] != dim:
        shape = tuple(frame_tokens.shape) if isinstance(frame_tokens, Tensor) else type(frame_tokens).__name__
        raise ValueError(f"frame_tokens must be a tensor [B, N, D={dim}], got {shape}")
    if not isinstance(timestamp, Tensor) or tuple(timestamp.shape) != frame_tokens.shape[:1]:
        raise ValueError(f"timestamp must be a tensor [B={frame_tokens.shape[0]}], got {timestamp!r}")
    validate_inputs(frame_tokens.unsqueeze(1), dim, timestamp.unsqueeze(1), None)
