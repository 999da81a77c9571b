"""The host-independent part of running a compressor inside a Hugging Face video LLM, as small pure functions and
one module: which uncompressed token each output token stands at (`nearest_source`), the compressed placeholder count
(`compressed_count`), the frame grid a grid-reading compressor sees (`on_grid`), the uncompressed layout that the
host's own 3-D rotary index reads (`expand_video_runs`), and `VideoTokenCompression`, the compressor as a submodule
of the host that records the sources of its latest call.

Position rule (Qwen-VL's 3-D rotary ids): every output token takes the position of the nearest uncompressed token
(Euclidean distance) of its source frame, of the whole video when its `frame_index` is -1. A kept token (a copy of an
input token) is its own nearest at distance 0, so it keeps exactly the ids it had uncompressed; a merged, pooled or
learned token sits at the input token it is closest to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from vtc.compressors import CompressedTokens, Compressor

VIDEO_TYPE = 2  # Qwen-VL's `mm_token_type_ids` value of a video token (text 0, image 1)


def nearest_source(video: Tensor, compressed: CompressedTokens) -> Tensor:
    """The flat index `t * N + n` of the uncompressed token nearest to each output token, within its source frame.

    Args:
        video: `[T, N, D]` one video's uncompressed tokens.
        compressed: the compressor's output for that video alone (batch of one), all `L` tokens valid.

    Returns:
        `[L]` long indices into the `T * N` tokens; a copied (kept) token gets its own index.
    """
    frames, per_frame, channels = video.shape
    flat = video.detach().reshape(frames * per_frame, channels).float()
    tokens, frame_index = compressed.tokens[0].detach().float(), compressed.frame_index[0]
    distance = torch.cdist(tokens, flat, compute_mode="donot_use_mm_for_euclid_dist")  # exact 0 for a copy
    token_frame = torch.arange(frames * per_frame, device=video.device) // per_frame
    other_frame = (frame_index[:, None] >= 0) & (token_frame[None, :] != frame_index[:, None])
    return distance.masked_fill(other_frame, float("inf")).argmin(dim=1)


@contextlib.contextmanager
def on_grid(compressor: Compressor, grid: tuple[int, int]) -> Iterator[Compressor]:
    """Within the block, a compressor that reads the frame grid (a `grid` attribute its config leaves None) sees
    `grid = (rows, cols)`; any other compressor is left as it is."""
    sets_grid = hasattr(compressor, "grid") and compressor.config.get("grid") is None
    saved = getattr(compressor, "grid", None)
    if sets_grid:
        compressor.grid = tuple(grid)
    try:
        yield compressor
    finally:
        if sets_grid:
            compressor.grid = saved


def compressed_count(compressor: Compressor, frames: int, grid: tuple[int, int]) -> int:
    """How many tokens `compressor` makes of a video of `frames` frames on a `grid = (rows, cols)` patch grid."""
    with on_grid(compressor, grid):
        return compressor.num_output_tokens(frames, grid[0] * grid[1])


def frame_runs(sources: Tensor, frames: int, per_frame: int) -> list[Tensor]:
    """A video's sources `[L]` split into its frames' placeholder runs (Qwen3-VL writes each temporal patch as its own
    run), each relative to its frame's first token; the tokens must come frame by frame."""
    frame = sources // per_frame
    if (frame[1:] < frame[:-1]).any():
        raise ValueError("a host with a placeholder run per frame needs the compressed tokens frame by frame")
    return [sources[frame == index] - index * per_frame for index in range(frames)]


def video_runs(token_type: Tensor, valid: Tensor) -> list[tuple[int, int, bool]]:
    """`(start, end, is_video)` of the runs of one row `[S]` of token types, padding (`valid` False) apart."""
    kinds = torch.where(valid, token_type == VIDEO_TYPE, torch.full_like(valid, False)).tolist()
    keys = list(zip(kinds, valid.tolist(), strict=True))
    runs, start = [], 0
    for position in range(1, len(keys) + 1):
        if position == len(keys) or keys[position] != keys[start]:
            runs.append((start, position, bool(kinds[start])))
            start = position
    return runs


def expand_video_runs(
    token_type: Tensor, attention_mask: Tensor | None, full_lengths: Sequence[int], sources: Sequence[Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """The uncompressed layout of a compressed batch, and where each compressed token sits in it.

    Args:
        token_type: `[B, S]` token types of the compressed sequence (video = 2); the i-th run of video tokens (rows
            in order) is run i: a video (a frame on Qwen3-VL, `frame_runs`).
        attention_mask: `[B, S]` 1 for tokens, 0 for padding; all ones when None.
        full_lengths: per run, its uncompressed token count.
        sources: per run, `[L_i]` the uncompressed index of each of its compressed tokens (`nearest_source`).

    Returns:
        `(columns [B, S], expanded_type [B, S'], expanded_mask [B, S'])`: `columns[b, s]` is the column of compressed
        token s in row b of the expanded layout, where every video run is back at its full length (rows right-padded
        with mask 0).
    """
    valid = torch.ones_like(token_type, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    columns = torch.zeros(token_type.shape, dtype=torch.long, device=token_type.device)
    rows, video = [], 0
    for row in range(token_type.shape[0]):
        types, masks, column = [], [], 0
        for start, end, is_video in video_runs(token_type[row], valid[row]):
            if is_video:
                if video >= len(sources) or len(sources[video]) != end - start:
                    expected = "none" if video >= len(sources) else len(sources[video])
                    raise ValueError(
                        f"video {video} has {end - start} placeholder tokens, the compressor made {expected}"
                    )
                columns[row, start:end] = column + sources[video].to(columns.device)
                length, video = int(full_lengths[video]), video + 1
                types.append(token_type.new_full((length,), VIDEO_TYPE))
                masks.append(valid.new_ones(length))
            else:
                length = end - start
                columns[row, start:end] = column + torch.arange(length, device=columns.device)
                types.append(token_type[row, start:end])
                masks.append(valid[row, start:end])
            column += length
        rows.append((torch.cat(types), torch.cat(masks)))
    width = max(len(types) for types, _ in rows)
    expanded_type = torch.stack([nn.functional.pad(types, (0, width - len(types))) for types, _ in rows])
    expanded_mask = torch.stack([nn.functional.pad(masks, (0, width - len(masks))) for _, masks in rows])
    return columns, expanded_type, expanded_mask.long()


def rope_deltas(positions: Tensor, attention_mask: Tensor | None) -> Tensor:
    """`[B, 1]` Qwen-VL's rope delta of each row: its largest position + 1 - its number of tokens
    (`positions [3, B, S]`)."""
    valid = torch.ones_like(positions[0], dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    largest = positions.masked_fill(~valid[None], torch.iinfo(positions.dtype).min).amax(dim=(0, 2))
    return (largest + 1 - valid.sum(dim=1)).unsqueeze(1)


class VideoTokenCompression(nn.Module):
    """A compressor between a host's projector and its language model.

    Attributes:
        compressor: the compressor (a submodule: it moves, trains and saves with the host).
        grid: the host's fixed `(rows, cols)` frame grid, or None where it changes with the video (Qwen-VL).
        extra_tokens: placeholders a video has beside its tokens (LLaVA-OneVision's trailing newline: 1).
        sources: per video of the latest call, the uncompressed index each output token stands at
            (`nearest_source`); a host with 3-D positions reads them.
    """

    def __init__(self, compressor: Compressor, grid: tuple[int, int] | None = None, extra_tokens: int = 0) -> None:
        super().__init__()
        self.compressor = compressor
        self.grid = grid
        self.extra_tokens = extra_tokens
        self.sources: list[Tensor] = []

    def placeholder_count(self, frames: int, grid: tuple[int, int] | None = None) -> int:
        """How many video placeholders a video of `frames` frames (temporal patches on Qwen-VL) on `grid` (default:
        the host's) needs in the text."""
        grid = grid or self.grid
        if grid is None:
            raise ValueError("this host's grid changes with the video: pass grid=(rows, cols) of the merged tokens")
        return compressed_count(self.compressor, frames, grid) + self.extra_tokens

    def forward(self, videos: Sequence[Tensor], grids: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Compress each video `[T_i, N_i, D]` on its `(rows, cols)` grid (`rows * cols = N_i`) to `[L_i, D]`,
        `L_i = compressed_count(...)`; records the sources."""
        outputs, self.sources = [], []
        for video, grid in zip(videos, grids, strict=True):
            if grid[0] * grid[1] != video.shape[1]:
                raise ValueError(f"a {grid} grid has {grid[0] * grid[1]} cells, frames have {video.shape[1]} tokens")
            with on_grid(self.compressor, grid):
                compressed = self.compressor(video.unsqueeze(0))
            if not compressed.mask.all():
                raise ValueError(
                    f"{self.compressor.registry_name} kept {int(compressed.mask.sum())} of its "
                    f"{compressed.mask.shape[1]} tokens: a host's placeholder count needs a data-independent count"
                )
            self.sources.append(nearest_source(video, compressed))
            outputs.append(compressed.tokens[0])
        return outputs
