"""`"random"`: uniform random token dropping at the budget.

The training-free baseline that two 2025 benchmarks (UniPruneBench, VTC-Bench) found many published video token
reduction methods fail to beat; every comparison should carry it. Seeded: the same `seed`, input shape and frame
mask keep the same tokens, in training and at inference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import gather_rows, pack_kept, topk_in_order
from vtc.utils.checks import check_int


def random_scores(batch: int, count: int, seed: int, device: torch.device) -> Tensor:
    """`[batch, count]` uniform scores from a generator seeded with `seed` (drawn on the CPU, so every device
    keeps the same tokens)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, count, generator=generator).to(device)


@register_compressor("random")
class RandomDrop(Compressor):
    """Keep `keep_tokens` of each video's valid `T * N` tokens, drawn uniformly without replacement, in time order;
    no parameters. Padded frames are never drawn."""

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("keep_tokens", up_to_all_tokens),))

    def __init__(self, dim: int, keep_tokens: int = 64, seed: int = 0) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.seed = check_int("seed", seed, minimum=0)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""
        batch, frames, per_frame, channels = tokens.shape
        valid = frame_mask.repeat_interleave(per_frame, dim=1)
        scores = random_scores(batch, frames * per_frame, self.seed, tokens.device)
        index, chosen_valid = topk_in_order(scores, self.keep_tokens, valid)
        frame_index = index // per_frame
        mask, (kept, kept_frames, kept_times) = pack_kept(
            chosen_valid,
            gather_rows(tokens.reshape(batch, frames * per_frame, channels), index),
            frame_index,
            timestamps.gather(1, frame_index),
        )
        return CompressedTokens(kept, mask, kept_frames.masked_fill(~mask, -1), kept_times)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
