"""Shared token operations: ordered Top-K, gathers, packing of variable-length outputs, masked means.

Every compressor that selects, packs or averages tokens uses these, so that "padding never leaks" and
"tokens stay in time order" are implemented (and tested) once.
"""

from __future__ import annotations

from collections.abc import Callable

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


def kept_first(keep: Tensor) -> Tensor:
    """`[B, M]` permutation putting each row's kept (True) positions first, both groups in their original order."""
    return torch.argsort((~keep).to(torch.int8), dim=1, stable=True)


def pack_kept(keep: Tensor, *values: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Move the kept positions of each row to the front, in order, and right-pad to the longest row.

    Args:
        keep: `[B, M]` bool.
        values: tensors `[B, M, *rest]` to pack the same way.

    Returns:
        `(mask [B, L], packed values [B, L, *rest])` with `L = max kept per row` (at least 1).
    """
    order = kept_first(keep)
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


def compress_valid_frames(
    compress_video: Callable[[Tensor, Tensor], CompressedTokens],
    tokens: Tensor,
    timestamps: Tensor,
    frame_mask: Tensor,
) -> CompressedTokens:
    """Run `compress_video(tokens [B, T, N, D], timestamps [B, T])`, a compressor that assumes every frame is valid,
    so that padded frames can never leak (for sequence models that mix frames, such as bidirectional scans).

    With no padded frame the whole batch runs at once; otherwise each video runs alone on its valid frames, its
    `frame_index` is mapped back to the original frame numbers and rows are right-padded (mask False, frame_index -1).
    `scores` and `aux` tensors with a leading batch dim are padded along dim 1 and stacked the same way.
    """
    if bool(frame_mask.all()):
        return compress_video(tokens, timestamps)
    outputs = []
    for row in range(tokens.shape[0]):
        valid = frame_mask[row].nonzero().squeeze(1)
        out = compress_video(tokens[row : row + 1, valid], timestamps[row : row + 1, valid])
        out.frame_index = torch.where(out.frame_index >= 0, valid[out.frame_index.clamp_min(0)], -1)
        outputs.append(out)
    return stack_outputs(outputs)


def _pad_stack(rows: list[Tensor], value: float | bool) -> Tensor:
    """`[1, L_i, *rest]` tensors right-padded with `value` along dim 1 and concatenated -> `[B, max L_i, *rest]`."""
    length = max(row.shape[1] for row in rows)
    padded = [torch.cat([row, row.new_full((1, length - row.shape[1], *row.shape[2:]), value)], dim=1) for row in rows]
    return torch.cat(padded, dim=0)


def stack_outputs(outputs: list[CompressedTokens]) -> CompressedTokens:
    """Single-video outputs (batch 1, lengths L_i) -> one batch right-padded to the longest row."""
    first = outputs[0]
    aux = {
        key: _pad_stack([out.aux[key] for out in outputs], 0) if isinstance(value, Tensor) else value
        for key, value in first.aux.items()
    }
    return CompressedTokens(
        tokens=_pad_stack([out.tokens for out in outputs], 0),
        mask=_pad_stack([out.mask for out in outputs], False),
        frame_index=_pad_stack([out.frame_index for out in outputs], -1),
        timestamps=_pad_stack([out.timestamps for out in outputs], 0),
        scores=None if first.scores is None else _pad_stack([out.scores for out in outputs], 0),
        aux=aux,
    )


def evenly_spaced(count: int, total: int, device: torch.device | None = None) -> Tensor:
    """`[min(count, total)]` frame indices spread evenly over `total` frames, first and last included (the
    `np.linspace(0, T - 1, k, dtype=int)` frame sampling of LLaVA-style video models, in exact integer arithmetic)."""
    count = min(count, total)
    if count == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    return torch.arange(count, device=device) * (total - 1) // (count - 1)


def split_budget(weights: Tensor, total: int, capacity: Tensor) -> Tensor:
    """Integers proportional to `weights [K]`, none above its `capacity [K]`, summing to `min(total, capacity.sum())`.

    Shares above their capacity are clamped and the rest re-split among the others until none is (water filling);
    the integer parts then go to each item, and what is left one by one to the largest remainders.
    """
    weights, capacity = weights.double(), capacity.double()
    total = min(total, int(capacity.sum()))
    share = torch.zeros_like(weights)
    free = torch.ones_like(weights, dtype=torch.bool)
    while True:
        left = total - float(capacity[~free].sum())
        share[free] = left * weights[free] / weights[free].sum().clamp_min(1e-12)
        over = free & (share > capacity)
        if not over.any():
            break
        share[over] = capacity[over]
        free &= ~over
    whole = torch.minimum(share.floor(), capacity)
    remainder = (share - whole).masked_fill(whole >= capacity, -1.0)
    order = remainder.argsort(descending=True, stable=True)
    whole[order[: total - int(whole.sum())]] += 1
    return whole.long()
