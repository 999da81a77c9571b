"""`"visionzip"`: VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
CVPR 2025, https://github.com/dvlab-research/VisionZip), per frame.

Each frame keeps its dominant tokens, those that receive the most attention in the vision encoder (Sec. 3.2,
"Dominant Token Selection": the [CLS] attention to each patch for CLIP, the mean attention each patch receives for
encoders without [CLS] such as SigLIP), plus contextual tokens: the remaining tokens are merged into targets taken at
a uniform stride among them, each token joining its most similar target (Sec. 3.2, "Contextual Tokens Merging").
The attention comes from the encoder through `forward(..., attention=[B, T, N])`; without it `forward` raises.

The total `keep_tokens` is spread evenly over a video's valid frames (frame sizes differ by at most one), and each
frame's share is split into `round(share * contextual_ratio)` contextual and the rest dominant tokens (the paper's
54 + 10 of 64 is `contextual_ratio = 10 / 64`). Differences from the reference code: similarity is the cosine of
the tokens themselves (the reference uses the attention keys of the encoder's second-to-last layer), and a
contextual token is the mean of its target and the tokens merged into it (the reference adds the mean of the merged
tokens to the target).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import pack_kept
from vtc.utils.checks import check_float, check_int


def frame_budgets(total: int, frame_mask: Tensor, per_frame: int) -> Tensor:
    """`[B, T]` tokens per frame: `min(total, T_valid * N)` spread evenly over each video's valid frames, the j-th
    valid frame getting `floor((j + 1) K / T_valid) - floor(j K / T_valid)` (so at most N); 0 for padded frames."""
    valid_frames = frame_mask.sum(dim=1, keepdim=True)
    budget = (valid_frames * per_frame).clamp(max=total)
    order = frame_mask.long().cumsum(dim=1) - 1
    share = ((order + 1) * budget).div(valid_frames, rounding_mode="floor")
    share = share - (order * budget).div(valid_frames, rounding_mode="floor")
    return share.masked_fill(~frame_mask, 0)


def dominant_mask(attention: Tensor, dominant: Tensor) -> Tensor:
    """`[F, N]` True for the `dominant [F]` most attended tokens of each frame `attention [F, N]` (Sec. 3.2,
    Dominant Token Selection; ties: the earlier token)."""
    order = attention.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )
    return rank < dominant[:, None]


def contextual_targets(rest: Tensor, contextual: Tensor) -> Tensor:
    """`[F, N]` True for the `contextual [F]` targets of each frame: every `step`-th of its remaining tokens `rest`
    in raster order, `step = max(1, R // contextual)` with R remaining (Sec. 3.2, Contextual Tokens Merging)."""
    position = rest.long().cumsum(dim=1) - 1
    step = (rest.sum(dim=1) // contextual.clamp_min(1)).clamp_min(1)[:, None]
    return rest & (position % step == 0) & (position // step < contextual[:, None])


def merge_into_targets(tokens: Tensor, rest: Tensor, target: Tensor) -> Tensor:
    """`[F, N, D]` where every target of `target [F, N]` holds the mean of itself and the remaining tokens (`rest`)
    whose most cosine-similar target it is (Sec. 3.2, Contextual Tokens Merging); other rows are left unchanged."""
    unit = F.normalize(tokens.detach().float(), dim=-1)
    similarity = (unit @ unit.transpose(1, 2)).masked_fill(~target[:, None, :], float("-inf"))
    positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(target)
    assigned = torch.where(target, positions, similarity.argmax(dim=2))  # a target joins itself
    members = rest & target.any(dim=1, keepdim=True)  # frames with no target drop their remaining tokens
    weights = members.to(tokens.dtype)[..., None]
    index = assigned[..., None].expand_as(tokens)
    sums = torch.zeros_like(tokens).scatter_add(1, index, tokens * weights)
    counts = torch.zeros_like(weights).scatter_add(1, assigned[..., None], weights)
    return torch.where(target[..., None], sums / counts.clamp_min(1), tokens)


@register_compressor("visionzip")
class VisionZip(Compressor):
    """Dominant (most attended) plus contextual (merged) tokens of each frame, `keep_tokens` per video in all, in time
    order and raster order within a frame; no parameters. Needs `forward(..., attention=[B, T, N])`.

    `aux["dominant"]` `[B, L]` marks the dominant tokens; a contextual token sits at its target's position.
    """

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("keep_tokens", up_to_all_tokens),))
    uses_attention = True

    def __init__(self, dim: int, keep_tokens: int = 64, contextual_ratio: float = 10 / 64) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.contextual_ratio = check_float("contextual_ratio", contextual_ratio, 0.0, 1.0)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor, attention: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` tokens, `[B, T, N]` attention -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid
        where frames are padded)."""
        batch, frames, per_frame, channels = tokens.shape
        share = frame_budgets(self.keep_tokens, frame_mask, per_frame).reshape(-1)
        contextual = torch.floor(share.double() * self.contextual_ratio + 0.5).long()
        flat = tokens.reshape(batch * frames, per_frame, channels)
        dominant = dominant_mask(attention.reshape(batch * frames, per_frame), share - contextual)
        target = contextual_targets(~dominant, contextual)
        merged = merge_into_targets(flat, ~dominant, target)
        frame_index = torch.arange(frames, device=tokens.device).repeat_interleave(per_frame).expand(batch, -1)
        mask, (kept, kept_frames, kept_times, kept_dominant) = pack_kept(
            (dominant | target).reshape(batch, -1),
            merged.reshape(batch, -1, channels),
            frame_index,
            timestamps.gather(1, frame_index),
            dominant.reshape(batch, -1),
        )
        return CompressedTokens(
            kept, mask, kept_frames.masked_fill(~mask, -1), kept_times, aux={"dominant": kept_dominant}
        )

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
