"""MambaMia's pooling baselines: `"avgpool2d"`, `"bilinear"`, `"avgpool3d"`, and `"frame-mean"`.

All are parameter-free. Spatial ones need the frame's patch grid: square N, or `grid=(height, width)`.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, frames_down, side_down, side_up
from vtc.compressors.grid import as_pair, ceil_div, from_grid, optional_grid, square_grid, to_grid
from vtc.compressors.ops import gather_rows, kept_first, per_frame_output
from vtc.utils.checks import check_int


@register_compressor("avgpool2d")
class AvgPool2d(Compressor):
    """Per-frame average pooling with a `pool x pool` window and stride on the patch grid.

    Edges that do not fill a window are pooled over the cells they have (ceil mode), so no patch is dropped.
    """

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("pool", side_down),))

    def __init__(self, dim: int, pool: int | tuple[int, int] = 2, grid: tuple[int, int] | None = None) -> None:
        super().__init__(dim)
        self.pool = as_pair("pool", pool)
        self.grid = optional_grid("grid", grid)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, H*W, D]` -> `[B, T * ceil(H/p) * ceil(W/p), D]`."""
        pooled = F.avg_pool2d(to_grid(tokens, self.grid), self.pool, self.pool, ceil_mode=True)
        return per_frame_output(from_grid(pooled, tokens.shape[0]), timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        height, width = square_grid(tokens_per_frame, self.grid)
        return num_frames * ceil_div(height, self.pool[0]) * ceil_div(width, self.pool[1])


@register_compressor("bilinear")
class Bilinear(Compressor):
    """Per-frame bilinear resize of the patch grid to `size` (half-pixel centres, no anti-aliasing)."""

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("size", side_up),))

    def __init__(self, dim: int, size: int | tuple[int, int] = 4, grid: tuple[int, int] | None = None) -> None:
        super().__init__(dim)
        self.size = as_pair("size", size)
        self.grid = optional_grid("grid", grid)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, H*W, D]` -> `[B, T * size_h * size_w, D]`."""
        resized = F.interpolate(to_grid(tokens, self.grid), size=self.size, mode="bilinear", align_corners=False)
        return per_frame_output(from_grid(resized, tokens.shape[0]), timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        square_grid(tokens_per_frame, self.grid)
        return num_frames * self.size[0] * self.size[1]


@register_compressor("avgpool3d")
class AvgPool3d(Compressor):
    """Average pooling over `temporal_pool` consecutive valid frames and a `pool x pool` spatial window.

    Padded frames are removed before pooling (valid frames move to the front, in order), so a window never
    averages padding; the last window may hold fewer frames. A pooled token's `frame_index` is the first frame
    of its window and its timestamp the mean time of the window's frames.
    """

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("temporal_pool", frames_down), Knob("pool", side_down)))

    def __init__(
        self,
        dim: int,
        temporal_pool: int = 2,
        pool: int | tuple[int, int] = 2,
        grid: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(dim)
        self.temporal_pool = check_int("temporal_pool", temporal_pool)
        self.pool = as_pair("pool", pool)
        self.grid = optional_grid("grid", grid)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, H*W, D]` -> `[B, ceil(T/tp) * ceil(H/p) * ceil(W/p), D]`."""
        batch, frames, _, _ = tokens.shape
        order = kept_first(frame_mask)  # valid frames first, so padding never shares a window with them
        valid = frame_mask.gather(1, order)
        windows = ceil_div(frames, self.temporal_pool)
        padded_frames = windows * self.temporal_pool - frames
        weights = F.pad(valid.to(tokens.dtype), (0, padded_frames)).reshape(batch, windows, self.temporal_pool)
        packed = F.pad(gather_rows(tokens, order), (0, 0, 0, 0, 0, padded_frames))
        packed = packed.reshape(batch, windows, self.temporal_pool, *tokens.shape[2:])
        frame_sum = (packed * weights[..., None, None]).sum(dim=2)
        count = weights.sum(dim=2)
        window_mean = frame_sum / count.clamp_min(1)[..., None, None]
        pooled = F.avg_pool2d(to_grid(window_mean, self.grid), self.pool, self.pool, ceil_mode=True)
        window_times = F.pad(timestamps.gather(1, order), (0, padded_frames)).reshape(weights.shape) * weights
        window_times = window_times.sum(dim=2) / count.clamp_min(1)
        output = per_frame_output(from_grid(pooled, batch), window_times, count > 0)
        first_frame = order[:, :: self.temporal_pool]
        output.frame_index = first_frame.gather(1, output.frame_index.clamp_min(0)).masked_fill(~output.mask, -1)
        return output

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        height, width = square_grid(tokens_per_frame, self.grid)
        spatial = ceil_div(height, self.pool[0]) * ceil_div(width, self.pool[1])
        return ceil_div(num_frames, self.temporal_pool) * spatial


@register_compressor("frame-mean")
class FrameMean(Compressor):
    """One token per frame, the mean of its N tokens (Mr. BLIP's frame aggregation)."""

    card = MethodCard(family=Family.TRAINING_FREE)  # no knobs: always T tokens

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, T, D]`."""
        return per_frame_output(tokens.mean(dim=2, keepdim=True), timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return num_frames
