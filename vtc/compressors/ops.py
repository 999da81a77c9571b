"""Shared token operations: ordered Top-K, gathers, packing of variable-length outputs, masked means.

Every compressor that selects, packs or averages tokens uses these, so that "padding never leaks" and
"tokens stay in time order" are implemented (and tested) once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vtc.compressors.base import CompressedTokens


def topk_in_order(scores: Tensor, k: int, valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Indices of the `k` highest scores per row, returned in ascending (time) order.

    Args:
        scores: `[B, M]`.
        k: how many to keep, `1 <= k`; capped at M.
        valid: optional `[B, M]` bool; invalid positions are never chosen before valid ones.

    Returns:
        `(index [B, k'], chosen_valid [B, k'])` with `k' = min(k, M)`; `chosen_valid` is False where a row had
        fewer than k valid positions (those slots point at invalid positions and must be masked out).
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, M], got shape {tuple(scores.shape)}")
    k = min(k, scores.shape[1])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranked = scores.detach().float()
    if valid is not None:
        ranked = ranked.masked_fill(~valid, float("-inf"))
    index = ranked.topk(k, dim=1).indices.sort(dim=1).values
    chosen_valid = torch.ones_like(index, dtype=torch.bool) if valid is None else valid.gather(1, index)
    return index, chosen_valid


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """`x [B, M, *rest]` gathered along dim 1 at `index [B, K]` -> `[B, K, *rest]`."""
    expanded = index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, expanded)


def pack_kept(keep: Tensor, *values: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Move the kept positions of each row to the front, in order, and right-pad to the longest row.

    Args:
        keep: `[B, M]` bool.
        values: tensors `[B, M, *rest]` to pack the same way.

    Returns:
        `(mask [B, L], packed values [B, L, *rest])` with `L = max kept per row` (at least 1).
    """
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    length = max(int(keep.sum(dim=1).max()), 1)
    index = order[:, :length]
    mask = keep.gather(1, index)
    packed = tuple(
        gather_rows(value, index).masked_fill(~mask.reshape(*mask.shape, *([1] * (value.dim() - 2))), 0)
        for value in values
    )
    return mask, packed


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of `x` over `dim`, counting only positions where `mask` (broadcastable to x) is True; 0 when none."""
    weights = mask.to(x.dtype)
    total = (x * weights).sum(dim=dim)
    count = weights.expand_as(x).sum(dim=dim).clamp_min(1)
    return total / count


def per_frame_output(
    tokens: Tensor,
    timestamps: Tensor,
    frame_mask: Tensor,
    scores: Tensor | None = None,
    aux: dict | None = None,
) -> CompressedTokens:
    """Flatten `[B, T, K, D]` per-frame tokens frame-major into `CompressedTokens` (invalid frames dropped).

    Valid frames keep their order; rows with fewer valid frames are right-padded and masked.
    """
    batch, frames, per_frame, _ = tokens.shape
    frame_index = torch.arange(frames, device=tokens.device).view(1, frames, 1).expand(batch, frames, per_frame)
    token_times = timestamps.unsqueeze(-1).expand(batch, frames, per_frame)
    keep = frame_mask.unsqueeze(-1).expand(batch, frames, per_frame).reshape(batch, -1)
    flat = [
        tokens.reshape(batch, frames * per_frame, -1),
        frame_index.reshape(batch, -1),
        token_times.reshape(batch, -1),
    ]
    if scores is not None:
        flat.append(scores.reshape(batch, -1))
    if bool(keep.all()):
        mask, packed = keep, tuple(flat)
    else:
        mask, packed = pack_kept(keep, *flat)
    frame_index = packed[1].masked_fill(~mask, -1)
    return CompressedTokens(
        tokens=packed[0],
        mask=mask,
        frame_index=frame_index,
        timestamps=packed[2],
        scores=packed[3] if scores is not None else None,
        aux=aux or {},
    )
