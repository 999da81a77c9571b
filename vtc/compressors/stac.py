"""`"stac"`: State-space Temporal Adaptive Compression (Kwon & Kang, JBE 2025).

Each Q-Former query slot is a time series; a Mamba layer along time, learnable attention queries and an MLP give
one saliency score per slot, and the Top-`keep` slots are kept for every frame (or, with `axis="frames"`, the
Top-`keep` frames with all their slots).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard
from vtc.compressors.ops import (
    compress_valid_frames,
    gather_rows,
    per_frame_output,
    topk_in_order,
)
from vtc.ssm import MambaBlock
from vtc.utils.checks import check_choice, check_float, check_int
from vtc.utils.positions import sinusoidal_encoding

SELECTIONS = ("scaled", "straight_through", "hard")


def keep_settings(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Budget knob of `keep`: slots kept per frame (`axis="slots"`) or frames kept (`axis="frames"`), fewest first."""
    return range(1, (tokens_per_frame if config["axis"] == "slots" else num_frames) + 1)


def selection_weights(scores: Tensor, index: Tensor, selection: str) -> Tensor:
    """Multipliers `[B, K]` for the kept positions `index [B, K]` of `scores [B, M]`, letting the task loss reach
    the scorer.

    `"scaled"`: `M * softmax(scores)` at the kept positions (1 for uniform scores); the softmax runs over all M
    positions, so raising a kept token's weight lowers every other position's score, the unkept ones included, which
    is what teaches the ranking. `"straight_through"`: 1 in the forward pass, the gradient of `"scaled"` backward.
    `"hard"`: 1, no gradient (the paper's hard Top-K; the scorer then cannot learn from the task loss).
    """
    if selection == "hard":
        return torch.ones_like(index, dtype=scores.dtype)
    soft = scores.shape[1] * torch.softmax(scores, dim=1).gather(1, index)
    if selection == "scaled":
        return soft
    return 1 + soft - soft.detach()


@register_compressor("stac")
class STAC(Compressor):
    """Mamba-based saliency over time for Q-Former tokens; keeps the Top-`keep` query slots (or frames).

    Args:
        dim: token width D.
        keep: slots kept per frame (`axis="slots"`, paper: 16 of 32) or frames kept (`axis="frames"`).
        num_heads: learnable attention queries of the scorer (paper: 4).
        d_state, d_conv, expand: the Mamba layer's sizes.
        mlp_ratio: hidden width of the score MLP is `mlp_ratio * D`.
        selection: "scaled" | "straight_through" | "hard" (see `selection_weights`). The paper gathers with hard
            indices, which gives its Mamba, queries and MLP no gradient; "scaled" is the default so they learn.
        output: "original" (gather the input tokens, as the paper) or "mixed" (gather the Mamba outputs).
        axis: "slots" (paper) or "frames" (temporal variant: queries attend over each frame's slots, one score per
            frame, Top-`keep` frames kept whole).

    The temporal position encoding is sinusoidal, so any number of frames works (no 16-frame cap). Selection needs
    the whole video, so STAC does not stream.
    """

    card = MethodCard(
        family=Family.STATE_SPACE,
        knobs=(Knob("keep", keep_settings),),
        paper_config={"dim": 768, "keep": 16, "num_heads": 4},
        paper_source="STAC Sec. III.2 (4 queries, Top-K over time), Table 3 (K = 16 best): 32 Q-Former slots of 768",
    )

    def __init__(
        self,
        dim: int,
        keep: int = 16,
        num_heads: int = 4,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        mlp_ratio: float = 1.0,
        selection: str = "scaled",
        output: str = "original",
        axis: str = "slots",
    ) -> None:
        super().__init__(dim)
        self.keep, self.selection = check_int("keep", keep), check_choice("selection", selection, SELECTIONS)
        self.output = check_choice("output", output, ("original", "mixed"))
        self.axis = check_choice("axis", axis, ("slots", "frames"))
        check_int("num_heads", num_heads)
        check_float("mlp_ratio", mlp_ratio, low=0, include_low=False)
        self.temporal = MambaBlock(dim, mixer="mamba", norm="layernorm", d_state=d_state, d_conv=d_conv, expand=expand)
        self.norm = nn.LayerNorm(dim)
        self.key_proj = nn.Linear(dim, dim)
        self.queries = nn.Parameter(torch.randn(num_heads, dim) * dim**-0.5)
        hidden = max(1, int(mlp_ratio * dim))
        # no output bias: scores are only compared (Top-K, softmax), a shared offset would never get a gradient
        self.score_mlp = nn.Sequential(nn.Linear(num_heads * dim, hidden), nn.GELU(), nn.Linear(hidden, 1, bias=False))

    def score(self, mixed: Tensor) -> Tensor:
        """Attention pooling + MLP: `[M, S, D]` sequences -> `[M]` scores (softmax over the S positions)."""
        keys = self.key_proj(mixed)
        attention = torch.softmax(self.queries @ keys.transpose(1, 2) / math.sqrt(mixed.shape[-1]), dim=-1)
        pooled = attention @ mixed  # [M, heads, D]
        return self.score_mlp(pooled.flatten(1)).squeeze(-1)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, Q, D]` -> slots: `[B, T * min(keep, Q), D]`; frames: `[B, min(keep, T) * Q, D]`, frame-major."""
        return compress_valid_frames(self._compress_videos, tokens, timestamps, frame_mask)

    def _compress_videos(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        batch, frames, slots, channels = tokens.shape
        series = tokens.permute(0, 2, 1, 3).reshape(batch * slots, frames, channels)
        position = sinusoidal_encoding(torch.arange(frames, device=tokens.device), channels).to(tokens.dtype)
        mixed = self.temporal(self.norm(series + position))  # Mamba along time per slot
        mixed = mixed.reshape(batch, slots, frames, channels).transpose(1, 2)  # [B, T, Q, D]
        source = tokens if self.output == "original" else mixed
        all_frames = torch.ones(batch, frames, dtype=torch.bool, device=tokens.device)
        if self.axis == "slots":
            scores = self.score(mixed.transpose(1, 2).reshape(batch * slots, frames, channels)).view(batch, slots)
            index, _ = topk_in_order(scores, self.keep)
            kept_scores = scores.gather(1, index)
            kept = source.gather(2, index.view(batch, 1, -1, 1).expand(batch, frames, -1, channels))
            kept = kept * selection_weights(scores, index, self.selection).view(batch, 1, -1, 1)
            token_scores = kept_scores.unsqueeze(1).expand(batch, frames, -1)
            aux = {"kept_slots": index, "slot_scores": scores}
            return per_frame_output(kept, timestamps, all_frames, token_scores.detach(), aux)
        scores = self.score(mixed.reshape(batch * frames, slots, channels)).view(batch, frames)
        index, _ = topk_in_order(scores, self.keep)
        kept_scores = scores.gather(1, index)
        kept = gather_rows(source, index) * selection_weights(scores, index, self.selection).view(batch, -1, 1, 1)
        out = per_frame_output(
            kept,
            timestamps.gather(1, index),
            all_frames[:, : index.shape[1]],
            kept_scores.detach().unsqueeze(-1).expand(-1, -1, slots),
            {"frame_scores": scores},
        )
        out.frame_index = index.repeat_interleave(slots, dim=1)
        return out

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        if self.axis == "slots":
            return num_frames * min(self.keep, tokens_per_frame)
        return min(self.keep, num_frames) * tokens_per_frame
