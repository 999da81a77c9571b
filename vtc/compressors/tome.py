"""`"tome"`: Token Merging (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023), in time order.

`merge_tokens` is bipartite soft matching (Sec. 3, Fig. 1 of the paper) with one change that moment retrieval
needs: the reference code returns `[unmerged A tokens, B tokens]`, i.e. similarity order; here every surviving
token keeps its position, so the output stays in time order. `proportional_attention` (Eq. 1) and
`merge_after_class_token` are the two steps ToMe adds to a ViT layer; `vtc.encoders.patch` applies them inside Hugging
Face vision towers (BLIP-2, CLIP, SigLIP), as STAC applied ToMe to BLIP-2.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard
from vtc.compressors.ops import gather_rows, per_frame_output
from vtc.utils.checks import check_choice, check_int


def merge_tokens(
    x: Tensor, r: int, metric: Tensor | None = None, size: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Merge `r` tokens of `x` by bipartite soft matching, keeping the survivors in their original order.

    Args:
        x: `[B, N, D]` tokens.
        r: how many tokens to remove; capped at `N // 2` (the size of set B).
        metric: `[B, N, C]` features compared by cosine similarity (ToMe: the attention keys); `x` when None.
        size: `[B, N, 1]` how many original tokens each row already stands for; ones when None.

    Returns:
        `(merged [B, N - r, D], size [B, N - r, 1], index [B, N])`: `index[b, n]` is the output row that input
        row n went into; sizes add up, merged rows are size-weighted averages.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, D], got shape {tuple(x.shape)}")
    batch, count, _ = x.shape
    metric = x if metric is None else metric
    if metric.shape[:2] != x.shape[:2] or metric.dim() != 3:
        raise ValueError(f"metric must be [B={batch}, N={count}, C], got shape {tuple(metric.shape)}")
    size = x.new_ones(batch, count, 1) if size is None else size
    if tuple(size.shape) != (batch, count, 1):
        raise ValueError(f"size must be [B={batch}, N={count}, 1], got shape {tuple(size.shape)}")
    r = max(0, min(r, count // 2))
    positions = torch.arange(count, device=x.device).expand(batch, count)
    if r == 0:
        return x, size, positions.clone()

    with torch.no_grad():
        # Sec. 3 "Bipartite Soft Matching": A = even positions, B = odd positions, cosine similarity.
        normalized = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scores = normalized[:, ::2] @ normalized[:, 1::2].transpose(1, 2)
        best_score, best_match = scores.max(dim=-1)
        merged_a = best_score.argsort(dim=-1, descending=True)[:, :r]
        source = 2 * merged_a
        target = 2 * best_match.gather(1, merged_a) + 1
        destination = positions.scatter(1, source, target)
        survives = torch.ones(batch, count, dtype=torch.bool, device=x.device).scatter(1, source, False)
        output_slot = survives.long().cumsum(dim=1) - 1
        index = output_slot.gather(1, destination)

    # Merge by size-weighted average ("sizes add"), Sec. 3 "Tracking size".
    merged_size = size.new_zeros(batch, count - r, 1).scatter_add(1, index.unsqueeze(-1), size)
    channel_index = index.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    weighted = x.new_zeros(batch, count - r, x.shape[-1]).scatter_add(1, channel_index, x * size.to(x.dtype))
    return weighted / merged_size.to(x.dtype), merged_size, index


def merge_steps(current: int, target: int) -> list[int]:
    """The `r` of each matching step taking `current` tokens down to `target` (each at most half of them)."""
    steps = []
    while current > target:
        r = min(current - target, current // 2)
        steps.append(r)
        current -= r
    return steps


def merge_to(x: Tensor, target: int) -> tuple[Tensor, Tensor, Tensor]:
    """Merge `x [B, N, D]` in steps down to `target` tokens.

    Returns `(merged [B, target', D], size [B, target', 1], index [B, N])`, `target' = min(target, N)`, with
    `index` mapping each input row to its output row through all steps.
    """
    size = None
    index = torch.arange(x.shape[1], device=x.device).expand(x.shape[0], -1)
    for r in merge_steps(x.shape[1], target):
        x, size, step_index = merge_tokens(x, r, size=size)
        index = step_index.gather(1, index)
    if size is None:
        size = x.new_ones(*x.shape[:2], 1)
    return x, size, index


# ToMe inside a ViT layer (`vtc.encoders.patch` applies these to Hugging Face towers).


def tokens_after_merging(count: int, r: int, steps: int) -> int:
    """How many of `count` tokens are left after `steps` merges of `r` each (capped at half, as in `merge_tokens`)."""
    for _ in range(steps):
        count -= max(0, min(r, count // 2))
    return count


def proportional_attention(
    query: Tensor, key: Tensor, value: Tensor, scale: float, size: Tensor | None = None, dropout: float = 0.0
) -> Tensor:
    """Multi-head attention with `log(size)` added to the logits (Eq. 1), so a merged key counts as its sources.

    Args:
        query, key, value: `[B, H, N, head_dim]`.
        scale: the logit scale, usually `head_dim ** -0.5`.
        size: `[B, N, 1]` how many original tokens each key stands for; plain attention when None.
        dropout: attention-weight dropout probability (0 in eval mode).

    Returns:
        `[B, N, H * head_dim]`, heads concatenated.
    """
    batch, _, count, _ = query.shape
    logits = (query @ key.transpose(-2, -1)) * scale
    if size is not None:
        logits = logits + size.log().reshape(batch, 1, 1, count).to(logits.dtype)
    weights = logits.softmax(dim=-1)
    if dropout > 0:
        weights = F.dropout(weights, p=dropout)
    return (weights @ value).transpose(1, 2).reshape(batch, count, -1)


def merge_after_class_token(
    x: Tensor, r: int, metric: Tensor, size: Tensor | None, class_token: bool
) -> tuple[Tensor, Tensor]:
    """ToMe's step between a ViT layer's attention and MLP: merge `r` tokens of `x [B, N, D]`.

    `metric [B, N, C]` is compared (ToMe: the keys, averaged over heads); `size [B, N, 1]` (ones when None) says how
    many patches each token stands for. With `class_token`, the leading token is never merged and never merged into.
    Returns `(merged [B, N - r', D], size [B, N - r', 1])`.
    """
    size = x.new_ones(*x.shape[:2], 1) if size is None else size
    start = int(class_token)
    merged, merged_size, _ = merge_tokens(x[:, start:], r, metric=metric[:, start:], size=size[:, start:])
    return torch.cat([x[:, :start], merged], dim=1), torch.cat([size[:, :start], merged_size], dim=1)


def num_tokens_settings(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Budget knob of `num_tokens`: per frame (`scope="frame"`) or per clip, fewest first."""
    return range(1, (tokens_per_frame if config["scope"] == "frame" else num_frames * tokens_per_frame) + 1)


@register_compressor("tome")
class ToMe(Compressor):
    """Token Merging of a clip's tokens (or each frame's), with no parameters.

    `scope="clip"` merges the `T * N` tokens of each video's valid frames down to `num_tokens`; a merged
    token's `frame_index` and timestamp are those of its earliest source frame, and the output is ordered by
    each token's earliest source position (merging across frames can pull a token's earliest source before its
    neighbours'), so `frame_index` never decreases. `scope="frame"` merges each frame's `N` tokens down to
    `num_tokens`. `aux["size"]` holds how many input tokens each output token averages.
    """

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("num_tokens", num_tokens_settings),))

    def __init__(self, dim: int, num_tokens: int = 64, scope: Literal["clip", "frame"] = "clip") -> None:
        super().__init__(dim)
        self.num_tokens = check_int("num_tokens", num_tokens)
        self.scope = check_choice("scope", scope, ("clip", "frame"))

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`; L = min(num_tokens, T*N) (clip) or T*min(num_tokens, N) (frame)."""
        batch, frames, per_frame, channels = tokens.shape
        if self.scope == "frame":
            merged, size, _ = merge_to(tokens.reshape(batch * frames, per_frame, channels), self.num_tokens)
            kept = merged.shape[1]
            size = size.reshape(batch, frames, kept)
            output = per_frame_output(merged.reshape(batch, frames, kept, channels), timestamps, frame_mask)
            output.aux["size"] = per_frame_output(size.unsqueeze(-1), timestamps, frame_mask).tokens.squeeze(-1)
            return output
        return self._compress_clip(tokens, timestamps, frame_mask)

    def _compress_clip(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        batch, _, per_frame, channels = tokens.shape
        length = self.num_output_tokens(int(frame_mask.sum(dim=1).max()), per_frame)
        out_tokens = tokens.new_zeros(batch, length, channels)
        out_size = tokens.new_zeros(batch, length)
        out_frame = torch.full((batch, length), -1, dtype=torch.long, device=tokens.device)
        out_time = timestamps.new_zeros(batch, length)
        mask = torch.zeros(batch, length, dtype=torch.bool, device=tokens.device)
        for row in range(batch):
            valid_frames = frame_mask[row].nonzero().squeeze(1)
            flat = tokens[row, valid_frames].reshape(1, -1, channels)
            merged, size, index = merge_to(flat, self.num_tokens)
            kept = merged.shape[1]
            earliest = torch.full((1, kept), flat.shape[1], dtype=torch.long, device=tokens.device)
            earliest = earliest.scatter_reduce(
                1, index, torch.arange(flat.shape[1], device=tokens.device)[None], "amin"
            )
            order = earliest.argsort(dim=1)
            source_frame = valid_frames[earliest.gather(1, order)[0] // per_frame]
            out_tokens[row, :kept] = gather_rows(merged, order)[0]
            out_size[row, :kept] = gather_rows(size, order)[0, :, 0]
            out_frame[row, :kept] = source_frame
            out_time[row, :kept] = timestamps[row, source_frame]
            mask[row, :kept] = True
        return CompressedTokens(out_tokens, mask, out_frame, out_time, aux={"size": out_size})

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        if self.scope == "frame":
            return num_frames * min(self.num_tokens, tokens_per_frame)
        return min(self.num_tokens, num_frames * tokens_per_frame)
