"""`FrameQFormer`: BLIP-2's shape of visual tokens, learned queries per frame over that frame's patch tokens.

BLIP-2 (Li et al. 2023, Sec. 3.1) hands its language model 32 learned queries that cross-attend to the frozen ViT's
patches of one image; STAC's compressor reads those 32 per frame (STAC Sec. III.2, Fig. 2). Where the encoder gives
patch tokens and the model config names a `qformer`, this module sits between the encoder (or its cached
features) and the compressor, and trains with the model: each frame's `N` patch tokens are projected to `hidden`
channels and summarised by `num_queries` queries (a Perceiver resampler, `vtc.compressors.resampler`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from vtc.compressors.resampler import PerceiverResampler
from vtc.utils.checks import check_int

QFORMER_DEFAULTS: dict[str, Any] = {"num_queries": 32, "hidden": 64, "depth": 2, "num_heads": 4, "frozen": False}


class FrameQFormer(nn.Module):
    """`[B, T, N, D]` patch tokens -> `[B, T, num_queries, hidden]` query tokens, frame by frame."""

    def __init__(self, dim: int, num_queries: int = 32, hidden: int = 64, depth: int = 2, num_heads: int = 4) -> None:
        super().__init__()
        self.input = nn.Linear(check_int("dim", dim), check_int("qformer.hidden", hidden))
        self.resampler = PerceiverResampler(
            hidden, check_int("qformer.num_queries", num_queries), check_int("qformer.depth", depth), num_heads
        )
        self.num_queries, self.output_dim = num_queries, hidden

    def forward(self, tokens: Tensor) -> Tensor:
        """`[B, T, N, D]` -> `[B, T, num_queries, hidden]` (padded frames are computed too; the compressor's
        frame mask drops them)."""
        if tokens.dim() != 4 or tokens.shape[-1] != self.input.in_features:
            raise ValueError(
                f"the qformer expects patch tokens [B, T, N, D={self.input.in_features}], got {tuple(tokens.shape)}"
            )
        batch, frames, count, _ = tokens.shape
        queries, _ = self.resampler(self.input(tokens.reshape(batch * frames, count, -1)))
        return queries.reshape(batch, frames, self.num_queries, self.output_dim)


def build_qformer(config: dict[str, Any] | None, dim: int) -> FrameQFormer | None:
    """The `qformer` of a model config (`QFORMER_DEFAULTS` filled in) over `dim`-channel tokens, or None. With
    `frozen`, its weights do not train (a method adapting from a base keeps the base's Q-Former, as BLIP-2's)."""
    if config is None:
        return None
    unknown = set(config) - set(QFORMER_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown qformer keys {sorted(unknown)}; expected some of {sorted(QFORMER_DEFAULTS)}")
    options = {**QFORMER_DEFAULTS, **config}
    frozen = options.pop("frozen")
    return FrameQFormer(dim, **options).requires_grad_(not frozen)
