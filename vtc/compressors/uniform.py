"""`"uniform"`: VTC-Bench's downsampling baseline on video tokens: evenly spaced frames, each pooled to a smaller grid.

Liao et al., "Are We Using the Right Benchmark: An Evaluation Framework for Visual Token Compression Methods"
(VTC-Bench, arXiv 2510.07143, Sec. 1 and Fig. 1) found that plain image downsampling beats many token compression
methods. On encoded tokens the same baseline is frame subsampling plus average pooling of each frame's patch grid,
which is what this compressor does; pooling needs the patch grid (square N, or `grid=(height, width)`). Tokens
that form no grid (a Q-Former's queries) are downsampled in time only: kept frames stay whole (`size=None`). At a
budget, frames stay whole where a count can be reached either way (the size knob comes first), so this is the frame
subsampling row next to `avgpool2d`'s spatial one; it pools only when the budget is below whole frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, side_up_on_grid, up_to_frames
from vtc.compressors.grid import as_pair, from_grid, optional_grid, square_grid, to_grid
from vtc.compressors.ops import compress_valid_frames, evenly_spaced, per_frame_output
from vtc.utils.checks import check_int


@register_compressor("uniform")
class UniformDownsample(Compressor):
    """Keep `num_frames` evenly spaced valid frames (all when None) and average-pool each one's patch grid to `size`
    (frames kept whole, grid or not, when None); no parameters.

    Every output cell averages the patches of its adaptive-pooling window (`size` dividing the grid gives plain
    `H/size x W/size` blocks); a side larger than the grid's keeps the grid's (downsampling never upsamples). Padded
    frames are never kept: frames are spread over the valid ones only.
    """

    card = MethodCard(
        family=Family.TRAINING_FREE,
        knobs=(Knob("size", side_up_on_grid), Knob("num_frames", up_to_frames)),  # frames kept whole on ties
    )

    def __init__(
        self,
        dim: int,
        num_frames: int | None = None,
        size: int | tuple[int, int] | None = None,
        grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(dim)
        self.num_frames = None if num_frames is None else check_int("num_frames", num_frames)
        self.size = None if size is None else as_pair("size", size)
        self.grid = optional_grid("grid", grid)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, H*W, D]` -> `[B, min(num_frames, T) * h * w, D]`, `(h, w)` the pooled grid (fewer where frames
        are padded)."""
        return compress_valid_frames(self.downsample, tokens, timestamps, frame_mask)

    def downsample(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        """Downsample videos whose frames are all valid: `[B, T, H*W, D]` -> `[B, min(num_frames, T) * h * w, D]`."""
        batch, frames = tokens.shape[:2]
        kept = evenly_spaced(self.num_frames or frames, frames, tokens.device)
        frame_tokens = tokens[:, kept]
        if self.size is not None:
            pooled = F.adaptive_avg_pool2d(to_grid(frame_tokens, self.grid), self.pooled_grid(tokens.shape[2]))
            frame_tokens = from_grid(pooled, batch)
        frame_mask = torch.ones(batch, len(kept), dtype=torch.bool, device=tokens.device)
        out = per_frame_output(frame_tokens, timestamps[:, kept], frame_mask)
        out.frame_index = kept[out.frame_index]
        return out

    def pooled_grid(self, tokens_per_frame: int) -> tuple[int, int]:
        """The `(h, w)` grid a frame is pooled to: `size`, each side at most the patch grid's."""
        height, width = square_grid(tokens_per_frame, self.grid)
        if self.size is None:
            return height, width
        return min(self.size[0], height), min(self.size[1], width)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        height, width = (1, tokens_per_frame) if self.size is None else self.pooled_grid(tokens_per_frame)
        return min(self.num_frames or num_frames, num_frames) * height * width
