"""A frame's patch grid: its `(height, width)`, reshaping tokens to and from it, and integer sizes on it.

Every compressor that pools, resizes or convolves a frame's patches takes these from here.
"""

from __future__ import annotations

import math

from torch import Tensor

from vtc.utils.checks import check_int


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling division."""
    return -(-numerator // denominator)


def square_grid(tokens_per_frame: int, grid: tuple[int, int] | None = None) -> tuple[int, int]:
    """The `(height, width)` patch grid of a frame: `grid` when given, else the square root of N."""
    if grid is not None:
        height, width = grid
        if height * width != tokens_per_frame:
            raise ValueError(f"grid {grid} has {height * width} cells but frames have N={tokens_per_frame} tokens")
        return height, width
    side = math.isqrt(tokens_per_frame)
    if side * side != tokens_per_frame:
        raise ValueError(f"N={tokens_per_frame} tokens per frame is not a square grid; pass grid=(height, width)")
    return side, side


def as_pair(name: str, value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """The argument `name`: `k` -> `(k, k)`; pairs of positive ints pass through (JSON lists become tuples)."""
    if not isinstance(value, (tuple, list)):
        value = (check_int(name, value), check_int(name, value))
    if len(value) != 2:
        raise ValueError(f"{name} must be a positive int or a (height, width) pair, got {value!r}")
    return check_int(f"{name}[0]", value[0]), check_int(f"{name}[1]", value[1])


def optional_grid(name: str, grid: tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """The argument `name`: a `(height, width)` pair, or None (the grid is then the square root of N)."""
    return None if grid is None else as_pair(name, grid)


def to_grid(tokens: Tensor, grid: tuple[int, int] | None) -> Tensor:
    """`[B, T, N, D]` -> `[B * T, D, H, W]` (row-major patch order)."""
    batch, frames, count, channels = tokens.shape
    height, width = square_grid(count, grid)
    return tokens.reshape(batch * frames, height, width, channels).permute(0, 3, 1, 2)


def from_grid(grid: Tensor, batch: int) -> Tensor:
    """`[B * T, D, H, W]` -> `[B, T, H * W, D]`."""
    return grid.flatten(2).transpose(1, 2).reshape(batch, -1, grid.shape[2] * grid.shape[3], grid.shape[1])
