"""`"taa"`: MambaMia's time-axis aggregator for hour-long video: adaptive frame keeping driven by Mamba's delta-time.

The paper's model (../shared/papers/002, TL;DR) is "a two-stage hierarchy: a Spatiotemporal Compression Layer with
Gated Patch Aggregation (GPA) to produce compact anchor tokens, and a Time Axis Aggregator (TAA) that models temporal
dynamics and performs adaptive frame selection via delta-time signals"; Fig. 2: "(a) Periodic query tokens aggregate
local context ... (b) Frame-wise queries are extracted and reorganized into temporal sequences. (c) The time-axis
aggregator ...". `spatial="mambamia"` is that first stage (its `paper_config`); average pooling stays selectable.
Per-frame anchor tokens run along time through a Mamba layer; its delta-time `delta_t = softplus(dt_proj(.) +
dt_bias)` (averaged over anchors and channels) says how much each frame moves the state. The paper
(../shared/papers/002: Fig. 2(c), "uses delta-time values for adaptive frame sampling"; Fig. 5, peaks at scene
transitions) gives no rule, so two are offered. With `keep_ratio`, k = ceil(keep_ratio * T) frames are sampled where
the cumulative delta_t crosses k evenly spaced levels (each kept frame stands for an equal share of the video's
delta-time: sampling density follows delta_t, exactly k frames). With a fixed `threshold` (causal, streams), a frame
is emitted whenever the running sum of delta_t reaches it, and the sum restarts from zero.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_frames
from vtc.compressors.grid import as_pair, ceil_div, from_grid, optional_grid, square_grid, to_grid
from vtc.compressors.ops import compress_valid_frames, per_frame_output
from vtc.compressors.tstar import TSTAR  # the "mambamia" first stage is a TSTAR that keeps every frame's queries
from vtc.ssm import MambaBlock
from vtc.utils.checks import check_choice, check_float, check_int

SPATIAL_STAGES = ("pool", "mambamia", "mambamia-per-frame")
THRESHOLD_TOLERANCE = 1e-6
RATIO_TOLERANCE = 1e-9  # keep_ratio = k / T times T is k, not k + 1, whatever the rounding


def frames_to_keep(keep_ratio: float, num_frames: int) -> int:
    """`ceil(keep_ratio * T)`, at least 1, with the product's rounding error ignored (7 / 25 * 25 keeps 7 frames)."""
    return max(1, math.ceil(keep_ratio * num_frames - RATIO_TOLERANCE))


def crossing_frames(delta_time: Tensor, count: int) -> Tensor:
    """Exactly `count` frames where the cumulative delta-time crosses evenly spaced levels: `delta_time [B, T]` -> kept
    `[B, T]` bool, `count` True per row (1 <= count <= T).

    Level j (j = 1..count) sits at `(j - 1/2) / count` of the row's total, the middle of the j-th equal share; its frame
    is the first whose cumulative sum reaches it. A frame that crosses several levels (a delta-time above one share)
    passes the extra ones to the next frames, and levels are pulled back so the last lands on frame T - 1 at the
    latest, keeping `count` distinct frames in time order.
    """
    frames = delta_time.shape[1]
    cumulative = delta_time.cumsum(dim=1)
    shares = (torch.arange(count, device=delta_time.device, dtype=delta_time.dtype) + 0.5) / count
    levels = cumulative[:, -1:] * shares
    first = torch.searchsorted(cumulative.contiguous(), levels.contiguous(), side="left").clamp_max(frames - 1)
    rank = torch.arange(count, device=delta_time.device)
    index = (first - rank).cummax(dim=1).values.clamp_max(frames - count) + rank
    return torch.zeros_like(delta_time, dtype=torch.bool).scatter(1, index, True)


def emit_frames(delta_time: Tensor, threshold: Tensor) -> Tensor:
    """Adaptive keeping: `delta_time [B, T]`, `threshold [B]` -> kept `[B, T]` bool.

    The running sum of delta_t is compared with the threshold after each frame; on reaching it (up to a relative
    1e-6, so that rounding never loses the last crossing) the frame is kept and the sum restarts from zero.
    """
    running = torch.zeros_like(delta_time[:, 0])
    kept = []
    for step in range(delta_time.shape[1]):
        running = running + delta_time[:, step]
        emit = running >= threshold * (1 - THRESHOLD_TOLERANCE)
        kept.append(emit)
        running = torch.where(emit, torch.zeros_like(running), running)
    return torch.stack(kept, dim=1)


@register_compressor("taa")
class TimeAxisAggregator(Compressor):
    """Anchors (first stage) -> Mamba along time per anchor -> delta-time -> adaptive frame keeping.

    Args:
        dim: token width D.
        spatial: the first stage that makes each frame's anchor tokens. "pool" (default; average pooling with
            `anchor_pool`, ceil mode: the aggregator used alone); "mambamia" (the paper's spatiotemporal compression
            layer: a `tstar` with the MambaMia block, i.e. BiMamba + gated patch aggregation, over the whole
            time-major `T * N` sequence, one query per `query_interval` patches, every frame's queries kept as its
            anchors); "mambamia-per-frame" (the same block run on each frame alone, so the aggregator streams).
        anchor_pool: pooling window of `spatial="pool"`.
        query_interval, spatial_layers: the MambaMia first stage's k and number of blocks.
        keep_ratio: fraction of frames kept: exactly `ceil(keep_ratio * T)` per video (T its valid frames), where
            the cumulative delta_t crosses evenly spaced levels (`crossing_frames`).
        threshold: a fixed threshold instead (then `keep_ratio` must be None); this makes keeping causal, so the
            aggregator streams with memory constant in frames. 0 keeps every frame.
        grid: `(height, width)` patch grid when N is not square.
        d_state, d_conv, expand: Mamba sizes.

    Kept frames output their Mamba-mixed anchors multiplied by `delta_t / stopgrad(delta_t)` (value 1), so the
    selection's gradient reaches dt_proj and dt_bias. With a threshold the count varies per video; rows are
    right-padded and masked.
    `aux["delta_time"] [B, T']` and `aux["kept_frames"] [B, T']` bool are over each video's valid frames.
    """

    card = MethodCard(
        family=Family.STATE_SPACE,
        knobs=(Knob("keep_ratio", up_to_frames, lambda kept, frames: kept / frames),),  # frames kept / T
        paper_config={
            "dim": 1024,
            "spatial": "mambamia",
            "query_interval": 10,
            "spatial_layers": 14,
            "keep_ratio": 0.5,
        },
        paper_source="Hierarchical MambaMia TL;DR, Figs. 1-2 (spatiotemporal GPA layer, then delta-time frame "
        "selection); k = 10 and 14 layers (~100M) from MambaMia Sec. 4 / supplement; keep ratio is ours",
        streaming=lambda config: config["threshold"] is not None and config["spatial"] != "mambamia",
    )

    def __init__(
        self,
        dim: int,
        spatial: str = "pool",
        anchor_pool: int | tuple[int, int] = 2,
        query_interval: int = 10,
        spatial_layers: int = 1,
        keep_ratio: float | None = 0.5,
        threshold: float | None = None,
        grid: tuple[int, int] | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
    ) -> None:
        super().__init__(dim)
        if (keep_ratio is None) == (threshold is None):
            raise ValueError(f"give exactly one of keep_ratio and threshold, got {keep_ratio=} and {threshold=}")
        if keep_ratio is not None:
            check_float("keep_ratio", keep_ratio, 0, 1, include_low=False)
        if threshold is not None:
            check_float("threshold", threshold, 0)
        check_choice("spatial", spatial, SPATIAL_STAGES)
        check_int("query_interval", query_interval)
        check_int("spatial_layers", spatial_layers)
        self.keep_ratio, self.threshold = keep_ratio, threshold
        self.anchor_pool, self.grid = as_pair("anchor_pool", anchor_pool), optional_grid("grid", grid)
        self.spatial_stage = (
            TSTAR(
                dim,
                query_interval,
                spatial_layers,
                frame_ratio=1.0,
                block="mambamia",
                per_frame=spatial == "mambamia-per-frame",
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
            )
            if spatial != "pool"
            else None
        )
        self.temporal = MambaBlock(dim, mixer="mamba", d_state=d_state, d_conv=d_conv, expand=expand)

    def anchors(self, tokens: Tensor) -> Tensor:
        """`[B, T, N, D]` -> per-frame anchors `[B, T, A, D]`."""
        if self.spatial_stage is not None:
            batch, frames = tokens.shape[:2]
            return self.spatial_stage(tokens).tokens.reshape(batch, frames, -1, self.dim)
        pooled = F.avg_pool2d(to_grid(tokens, self.grid), self.anchor_pool, self.anchor_pool, ceil_mode=True)
        return from_grid(pooled, tokens.shape[0])

    def mix(self, anchors: Tensor, state: Any = None) -> tuple[Tensor, Tensor, Any]:
        """`[B, T, A, D]` -> mixed anchors `[B, T, A, D]`, delta_t `[B, T]`, Mamba state (one sequence per anchor)."""
        batch, frames, count, channels = anchors.shape
        series = anchors.transpose(1, 2).reshape(batch * count, frames, channels)
        out = self.temporal.forward_with_state(series, state)
        mixed = out.hidden.reshape(batch, count, frames, channels).transpose(1, 2)
        delta_time = out.delta.reshape(batch, count, frames, -1).mean(dim=(1, 3))
        return mixed, delta_time, out.state

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, the kept frames' anchors frame-major; `L == num_output_tokens` with
        `keep_ratio` and no padded frame, `L <= num_output_tokens` otherwise."""
        return compress_valid_frames(self._compress_videos, tokens, timestamps, frame_mask)

    def _compress_videos(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        mixed, delta_time, _ = self.mix(self.anchors(tokens))
        if self.threshold is None:
            kept = crossing_frames(delta_time.detach(), frames_to_keep(self.keep_ratio, tokens.shape[1]))
        else:
            kept = emit_frames(delta_time.detach(), torch.full_like(delta_time[:, 0], self.threshold))
        weighted = mixed * (delta_time / delta_time.detach()).unsqueeze(-1).unsqueeze(-1)
        out = per_frame_output(weighted, timestamps, kept)
        out.aux = {"delta_time": delta_time.detach(), "kept_frames": kept}
        return out

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        if self.spatial_stage is not None:
            anchors = self.spatial_stage.num_output_tokens(1, tokens_per_frame)
        else:
            height, width = square_grid(tokens_per_frame, self.grid)
            anchors = ceil_div(height, self.anchor_pool[0]) * ceil_div(width, self.anchor_pool[1])
        frames = num_frames if self.threshold is not None else frames_to_keep(self.keep_ratio, num_frames)
        return frames * anchors

    def init_state(self, batch_size: int, device: torch.device | None = None) -> dict[str, Any]:
        """Mamba state per anchor (created on the first frame, when A is known), running delta sum, frames seen."""
        if self.threshold is None:
            raise NotImplementedError("keep_ratio needs the whole video's delta-time; stream with a fixed threshold")
        if not self.supports_streaming:
            raise NotImplementedError(
                "spatial='mambamia' mixes all frames both ways; stream with 'pool' or 'mambamia-per-frame'"
            )
        return {"mamba": None, "running": torch.zeros(batch_size, device=device), "frames_seen": 0}

    def step_frame(self, frame_tokens: Tensor, timestamp: Tensor, state: dict) -> tuple[CompressedTokens, dict]:
        """`[B, N, D]` at `timestamp [B]` -> the frame's anchors where it is emitted (masked elsewhere), new state."""
        mixed, delta_time, mamba = self.mix(self.anchors(frame_tokens.unsqueeze(1)), state["mamba"])
        running = state["running"] + delta_time[:, 0].detach()
        emit = running >= self.threshold * (1 - THRESHOLD_TOLERANCE)
        weighted = mixed * (delta_time / delta_time.detach()).unsqueeze(-1).unsqueeze(-1)
        out = per_frame_output(weighted, timestamp.float().unsqueeze(1), emit.unsqueeze(1))
        out.frame_index = torch.where(out.mask, state["frames_seen"], -1)
        new_state = {
            "mamba": mamba,
            "running": torch.where(emit, torch.zeros_like(running), running),
            "frames_seen": state["frames_seen"] + 1,
        }
        return out, new_state
