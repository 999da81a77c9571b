"""A patch-grid perception encoder for the synthetic benchmark: what a CLIP / SigLIP patch token is to a video LLM.

The papers' compressors read a grid of patch tokens per frame (MambaMia: 100 from a 10 x 10 grid of CLIP-ConvNeXt)
or a Q-Former's queries over that grid (BLIP-2, STAC's input). `PatchEncoder` gives the synthetic world that shape:
the frozen segmenter pre-trained on the renderer's labels (`SceneSegmenter`, shared with the `scene` encoder and its
cache) labels every pixel with its object class, and each cell of a `grid` becomes one token describing what lies in
it. Token `[(row, col)]` of frame t, row-major as every grid compressor expects (`vtc.compressors.grid`):

- `shares` (25): the share of the cell's pixels given to background and to each colour x shape class;
- `offset` (2): where the cell's object pixels sit inside it, x and y in [-1, 1] (0 for an empty cell);
- the change of those 27 from frame t - 1 (0 for the first frame): the temporal context a video tower adds;
- `position` (4): sin and cos of the row and column as angles around a circle, the cell's fixed grid position (a
  ViT's position embedding; points on a circle are linearly separable, so a linear probe reads the cell).

These raw channels differ in scale by a factor of 20 or more (deviation 0.015 to 0.045 for a class's share in a 5 x 5
cell, 0.4 for an offset, 0.7 for a position), so what tells one object from another is small beside where a cell
is. With `standardize`, every channel is shifted and scaled to zero mean and unit deviation over a fixed sample of
the default world (`channel_statistics`), as a real encoder's output features are of one scale. A language model
reading the raw tokens through a projector (no Q-Former) did not learn the benchmark; on standardized ones it does
(docs/experiments.md, "A base of patch tokens").
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import check_frames
from vtc.utils.checks import check_int
from vtc.world.raster import NUM_OBJECT_CLASSES
from vtc.world.scene_encoder import DEFAULT_WIDTH, SceneSegmenter, hard_assignment

DEFAULT_GRID = 10  # MambaMia's 10 x 10 = 100 tokens per frame
STATISTICS_VIDEOS = 32  # default-world videos (8 frames each) whose tokens fix the channel statistics
MIN_DEVIATION = 1e-3  # a channel that hardly varies (a class's offset in a rare cell) is not blown up
CONTENT = NUM_OBJECT_CLASSES + 2  # class shares + object offset
POSITION = 4


def cell_contents(assignment: Tensor, grid: tuple[int, int]) -> Tensor:
    """Per-pixel class assignment `[T, C, H, W]` (each pixel's weights summing to 1; class 0 = background) ->
    `[T, rows * cols, C + 2]`: each cell's class shares and the offset of its object pixels from the cell's centre
    (x, y in [-1, 1] of the cell's half size; 0 where the cell holds no object)."""
    height, width = assignment.shape[-2:]
    pool = nn.functional.adaptive_avg_pool2d
    shares = pool(assignment, grid)  # [T, C, rows, cols]
    objects = assignment[:, 1:].sum(dim=1, keepdim=True)  # [T, 1, H, W]
    ys = torch.arange(height, dtype=assignment.dtype, device=assignment.device).view(1, 1, height, 1)
    xs = torch.arange(width, dtype=assignment.dtype, device=assignment.device).view(1, 1, 1, width)
    ones = torch.ones_like(objects)
    mass = pool(objects, grid)
    offsets = []
    for coordinate, size, cells in ((xs, width, grid[1]), (ys, height, grid[0])):
        centre = pool(ones * coordinate, grid)  # each cell's mean pixel coordinate
        mean = pool(objects * coordinate, grid) / mass.clamp_min(1e-6)
        offset = ((mean - centre) / (size / cells / 2)).clamp(-1, 1)
        offsets.append(torch.where(mass > 0, offset, torch.zeros_like(offset)))
    cells = torch.cat([shares, *offsets], dim=1)  # [T, C + 2, rows, cols]
    return cells.flatten(2).transpose(1, 2)


def cell_classes(labels: np.ndarray, grid: tuple[int, int], min_share: float) -> Tensor:
    """The renderer's per-pixel classes `[T, H, W]` -> each cell's object class `[T, rows * cols]`: the class
    covering most of the cell's pixels where it covers at least `min_share` of them, else 0 (background). The
    targets of a linear probe of the patch tokens (`benchmarks/patch_probe.py`)."""
    classes = torch.from_numpy(labels)
    one_hot = nn.functional.one_hot(classes).permute(0, 3, 1, 2).float()
    shares = nn.functional.adaptive_avg_pool2d(one_hot, grid).flatten(2)  # [T, C, cells]
    objects = shares[:, 1:]
    best_share, best = objects.max(dim=1)
    return torch.where(best_share >= min_share, best + 1, torch.zeros_like(best))


def previous_frame_change(contents: Tensor) -> Tensor:
    """`[T, N, S]` -> `[T, N, S]`: each token's change from the same cell in the previous frame (0 for frame 0)."""
    return torch.cat([torch.zeros_like(contents[:1]), contents[1:] - contents[:-1]])


def grid_position_code(grid: tuple[int, int]) -> Tensor:
    """`[rows * cols, 4]`: sin and cos of `2 pi row / rows` and of `2 pi col / cols`, row-major."""
    rows, cols = grid
    row_angle = 2 * math.pi * torch.arange(rows).repeat_interleave(cols) / rows
    col_angle = 2 * math.pi * torch.arange(cols).repeat(rows) / cols
    return torch.stack([row_angle.sin(), row_angle.cos(), col_angle.sin(), col_angle.cos()], dim=-1)


class PatchEncoder(VisionEncoder):
    """uint8 frames `[T, H, W, 3]` -> `[T, rows * cols, 58]` patch tokens (see the module docstring); frozen.

    Args:
        grid: cells per side (`k` or `(rows, cols)`); 10 x 10 by default.
        width: the segmenter's width (must match its weights).
        path: the segmenter's weights (`vtc.world.pretrain.cached_scene_encoder` trains and caches them; the
            `synthetic` data source fills it in when a config leaves it out). None builds random weights for a
            checkpoint to load into (a model checkpoint stores this encoder's weights).
        standardize: each channel to zero mean and unit deviation (`channel_statistics` of these weights and grid,
            computed on construction when `path` is given; a checkpoint stores them).
    """

    stores_weights_in_checkpoint = True

    def __init__(
        self,
        grid: int | tuple[int, int] | list[int] = DEFAULT_GRID,
        width: int = DEFAULT_WIDTH,
        path: str | None = None,
        standardize: bool = False,
    ) -> None:
        super().__init__()
        rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
        self.grid = (check_int("grid rows", rows), check_int("grid cols", cols))
        self.segmenter = SceneSegmenter(width)
        if path is not None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"patch encoder weights {path} not found (see cached_scene_encoder)")
            self.segmenter.load_state_dict(load_file(path), strict=True)
        self.requires_grad_(False)
        self.register_buffer("position", grid_position_code(self.grid), persistent=False)
        self.tokens_per_frame = self.grid[0] * self.grid[1]
        self.output_dim = 2 * CONTENT + POSITION
        self.standardize = standardize
        if standardize:
            mean, deviation = (
                channel_statistics(str(path), self.grid, width)
                if path is not None
                else (torch.zeros(self.output_dim), torch.ones(self.output_dim))
            )
            self.register_buffer("channel_mean", mean.clone())
            self.register_buffer("channel_deviation", deviation.clone())

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> `[T, rows * cols, 58]`: shares and offset, their change, the grid position."""
        check_frames(frames)
        height, width = frames.shape[1:3]
        if height < self.grid[0] or width < self.grid[1]:
            raise ValueError(f"frames of {height} x {width} pixels cannot fill a {self.grid} grid of cells")
        pixels = frames.to(self.position.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        assignment = hard_assignment(self.segmenter(pixels)).detach()
        assignment[:, 0] += 1 - assignment.sum(dim=1)  # pixels of a dropped (too small) class are background
        contents = cell_contents(assignment, self.grid)
        position = self.position.expand(len(frames), -1, -1)
        tokens = torch.cat([contents, previous_frame_change(contents), position], dim=-1)
        return (tokens - self.channel_mean) / self.channel_deviation if self.standardize else tokens


@functools.lru_cache(maxsize=8)
def channel_statistics(path: str, grid: tuple[int, int], width: int = DEFAULT_WIDTH) -> tuple[Tensor, Tensor]:
    """Each channel's mean and deviation `([58], [58])` over the raw tokens of `PatchEncoder(grid, width, path)` on
    the first `STATISTICS_VIDEOS` videos of the default synthetic world, 8 evenly spaced frames each (deterministic;
    computed once per process). The deviation is at least `MIN_DEVIATION`."""
    from vtc.world.source import uniform_frame_indices
    from vtc.world.synthetic import SyntheticMoments

    encoder = PatchEncoder(grid, width, path)
    moments = SyntheticMoments(num_videos=STATISTICS_VIDEOS)
    indices = uniform_frame_indices(moments.num_frames, 8)
    with torch.no_grad():
        tokens = torch.cat(
            [
                encoder.encode(torch.from_numpy(moments.render(index, indices).frames)).flatten(0, 1)
                for index in range(len(moments))
            ]
        )
    return tokens.mean(dim=0), tokens.std(dim=0).clamp_min(MIN_DEVIATION)
