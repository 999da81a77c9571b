"""`"storm"`: STORM's temporal encoder (Jiang et al. 2025): bidirectional Mamba over all tokens, then pooling.

The seed (../shared/papers/004, STORM's abstract): the temporal encoder "leverages the Mamba State Space Model to
integrate temporal information into image tokens, generating enriched representations ... This enriched encoding not
only enhances video reasoning capabilities but also enables effective token reduction strategies, including test-time
sampling and training-based temporal and spatial pooling". So test-time sampling acts on the encoder's output by
default: every frame is encoded and the dropped frames still enrich the kept ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, frames_down, side_down
from vtc.compressors.grid import as_pair, ceil_div, from_grid, optional_grid, square_grid, to_grid
from vtc.compressors.ops import compress_valid_frames, per_frame_output
from vtc.ssm import MambaBlock
from vtc.utils.checks import check_choice, check_int

SAMPLING_PLACES = ("after_encoder", "before_encoder")


@register_compressor("storm")
class STORM(Compressor):
    """Bidirectional Mamba layers (residual) over the time-major `T * N` sequence, then temporal and spatial pools.

    Args:
        dim: token width D.
        num_layers: bidirectional Mamba blocks.
        temporal_pool: average each group of this many consecutive (valid) frames; the last group may be shorter.
        spatial_pool: average pooling window and stride on the patch grid (ceil mode: edges pooled over the cells
            they have).
        test_time_stride: in eval mode only, keep every this-many-th frame (STORM's test-time sampling); training
            always sees every frame.
        test_time_sampling: "after_encoder" (default, the seed's "enriched encoding ... enables ... test-time
            sampling": all frames are encoded, then the kept frames' enriched tokens are pooled) or "before_encoder"
            (the kept frames alone are encoded: cheaper, but the dropped frames never reach the kept ones).
        grid: `(height, width)` patch grid when N is not square.
        d_state, d_conv, expand: Mamba sizes.

    Output tokens carry their group's first frame index and mean timestamp. Bidirectional, so no streaming.
    """

    card = MethodCard(
        family=Family.STATE_SPACE,
        knobs=(Knob("temporal_pool", frames_down), Knob("spatial_pool", side_down)),
        paper_config={
            "dim": 1152,
            "num_layers": 1,
            "temporal_pool": 4,
            "spatial_pool": 2,
            "test_time_sampling": "after_encoder",
        },
        paper_source="STORM abstract (Mamba encoder, test-time sampling of the enriched encoding, temporal + spatial "
        "pooling); SigLIP width 1152, pools are ours",
    )

    def __init__(
        self,
        dim: int,
        num_layers: int = 1,
        temporal_pool: int = 4,
        spatial_pool: int | tuple[int, int] = 2,
        test_time_stride: int = 1,
        test_time_sampling: str = "after_encoder",
        grid: tuple[int, int] | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
    ) -> None:
        super().__init__(dim)
        check_int("num_layers", num_layers)
        self.temporal_pool = check_int("temporal_pool", temporal_pool)
        self.test_time_stride = check_int("test_time_stride", test_time_stride)
        self.sample_first = check_choice("test_time_sampling", test_time_sampling, SAMPLING_PLACES) == "before_encoder"
        self.spatial_pool, self.grid = as_pair("spatial_pool", spatial_pool), optional_grid("grid", grid)
        self.layers = nn.ModuleList(
            MambaBlock(dim, mixer="bimamba", d_state=d_state, d_conv=d_conv, expand=expand) for _ in range(num_layers)
        )

    def frame_stride(self) -> int:
        """Keep every this-many-th frame: `test_time_stride` in eval mode, 1 in training."""
        return 1 if self.training else self.test_time_stride

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, ceil(T' / temporal_pool) * ceil(H / p) * ceil(W / p), D]` with `T'` the valid
        frames (every `test_time_stride`-th of them in eval mode); padded frames are never encoded or averaged."""
        return compress_valid_frames(self._compress_videos, tokens, timestamps, frame_mask)

    def encode(self, tokens: Tensor) -> Tensor:
        """The temporal encoder over the time-major `T * N` sequence: `[B, T, N, D] -> [B, T, N, D]`."""
        hidden = tokens.flatten(1, 2)
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden.reshape(tokens.shape)

    def _compress_videos(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        frame_index = torch.arange(0, tokens.shape[1], self.frame_stride(), device=tokens.device)
        # STORM's test-time sampling of the enriched encoding, or (before_encoder) of the frames themselves
        encoded = self.encode(tokens[:, frame_index]) if self.sample_first else self.encode(tokens)[:, frame_index]
        return self.pool(encoded, timestamps[:, frame_index], frame_index)

    def pool(self, encoded: Tensor, timestamps: Tensor, frame_index: Tensor) -> CompressedTokens:
        """Temporal then spatial average pooling (STORM's training-based pooling) of the kept frames' encoding
        `[B, T', N, D]` at `timestamps [B, T']`, source frames `frame_index [T']` -> the output tokens."""
        batch, frames, per_frame, channels = encoded.shape
        groups = ceil_div(frames, self.temporal_pool)
        padding = groups * self.temporal_pool - frames
        counts = F.pad(torch.ones(frames, device=encoded.device), (0, padding)).view(groups, -1).sum(dim=1)
        grouped = F.pad(encoded.reshape(batch, frames, per_frame * channels), (0, 0, 0, padding))
        pooled = grouped.view(batch, groups, self.temporal_pool, -1).sum(dim=2) / counts.view(1, groups, 1)
        pooled = pooled.view(batch, groups, per_frame, channels)
        pooled = F.avg_pool2d(to_grid(pooled, self.grid), self.spatial_pool, self.spatial_pool, ceil_mode=True)
        pooled = from_grid(pooled, batch)  # [B, groups, cells, D]
        group_times = F.pad(timestamps, (0, padding)).view(batch, groups, -1).sum(dim=2) / counts
        group_frames = frame_index[:: self.temporal_pool].expand(batch, groups)
        out = per_frame_output(pooled, group_times, torch.ones_like(group_times, dtype=torch.bool))
        out.frame_index = group_frames.repeat_interleave(pooled.shape[2], dim=1)
        return out

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        height, width = square_grid(tokens_per_frame, self.grid)
        cells = ceil_div(height, self.spatial_pool[0]) * ceil_div(width, self.spatial_pool[1])
        return ceil_div(ceil_div(num_frames, self.frame_stride()), self.temporal_pool) * cells
