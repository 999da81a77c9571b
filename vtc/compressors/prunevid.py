"""`"prunevid"`: PruneVid's merging before the LLM (Huang et al., "PruneVid: Visual Token Pruning for Efficient Video
Large Language Models", arXiv 2412.16117, https://github.com/Visual-AI/PruneVid), and the segment-merging steps it
shares with HoliTom (`vtc.compressors.holitom`).

The paper's spatial-temporal token merging, as its reference code runs it: frames are clustered by their mean token
(DPC-kNN) into `segment_ratio * T` clusters made contiguous (each cluster keeps its longest run, the other runs join
their longer neighbour); in each segment a position whose tokens have a mean pairwise cosine similarity above `tau`
is static and its tokens are averaged over the segment's frames (temporal merging), the rest are dynamic; then the
static tokens of a segment, and the dynamic tokens of each frame, are merged spatially by DPC-kNN clustering. The
paper's clustering ratio (`cluster_ratio`) and its question-guided pruning inside the LLM are not used: `keep_tokens`
fixes the total instead, apportioned over the clusterings by their sizes (`merge_segments`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import compress_valid_frames, stack_outputs
from vtc.utils.checks import check_float, check_int

# A video's segments `[(start, stop)]` and, per segment, `static [S, N]` positions and their `redundancy [S, N]`.
SegmentPlan = tuple[list[tuple[int, int]], Tensor, Tensor]


def dpc_knn_centers(x: Tensor, count: int, knn: int) -> Tensor:
    """Indices of the `count` cluster centres of `x [M, D]` by density peaks clustering with k nearest neighbours
    (DPC-kNN, the spatial merging of PruneVid and HoliTom): density `exp(-mean d^2 to the k nearest)`, times the
    distance to the nearest denser token (ties: the earlier one is denser), highest first."""
    with torch.no_grad():
        points = x.detach().float()
        distance = torch.cdist(points, points) / math.sqrt(points.shape[1])
        nearest = distance.topk(min(knn, len(points)), dim=1, largest=False).values
        density = (-(nearest**2).mean(dim=1)).exp()
        index = torch.arange(len(points), device=x.device)
        denser = (density[None, :] > density[:, None]) | (
            (density[None, :] == density[:, None]) & (index[None, :] < index[:, None])
        )
        to_denser = distance.masked_fill(~denser, float("inf")).min(dim=1).values
        to_denser = torch.where(torch.isinf(to_denser), distance.max(), to_denser)  # the densest token
        return (to_denser * density).argsort(descending=True, stable=True)[:count]


def merge_to_centers(x: Tensor, centers: Tensor) -> tuple[Tensor, Tensor]:
    """Each token of `x [M, D]` joins its nearest centre; returns the cluster means `[C, D]` and sizes `[C]`."""
    with torch.no_grad():
        assigned = torch.cdist(x.detach().float(), x[centers].detach().float()).argmin(dim=1)
        assigned[centers] = torch.arange(len(centers), device=x.device)  # a centre is in its own cluster
    size = torch.bincount(assigned, minlength=len(centers))
    sums = x.new_zeros(len(centers), x.shape[1]).index_add(0, assigned, x)
    return sums / size[:, None].to(x.dtype), size


def apportion(total: int, sizes: list[int]) -> list[int]:
    """Split `total <= sum(sizes)` into integer shares proportional to `sizes` (largest remainders, ties: the
    earlier group), each at most its size."""
    whole = sum(sizes)
    shares = [total * size // whole for size in sizes]
    by_remainder = sorted(range(len(sizes)), key=lambda group: -(total * sizes[group] % whole))
    for group in by_remainder[: total - sum(shares)]:
        shares[group] += 1
    return shares


def temporal_merges(plan: SegmentPlan, frames: int, per_frame: int, keep: int) -> Tensor:
    """`[S, N]` static positions that are merged over time: the most redundant first, as long as the tokens left
    stay at least `keep` (so spatial merging can reach `keep` exactly)."""
    segments, static, redundancy = plan
    length = torch.tensor([stop - start for start, stop in segments], device=static.device)
    candidates = (static & (length[:, None] > 1)).flatten().nonzero().squeeze(1)
    order = redundancy.flatten()[candidates].argsort(descending=True, stable=True)
    candidates = candidates[order]
    saved = (length[candidates // per_frame] - 1).cumsum(dim=0)
    chosen = candidates[saved <= frames * per_frame - keep]
    return torch.zeros_like(static).flatten().index_fill(0, chosen, True).view_as(static)


def merge_segments(x: Tensor, plan: SegmentPlan, keep: int, knn: int) -> tuple[Tensor, Tensor, Tensor]:
    """Temporal, then spatial merging of one video `x [T, N, D]` to exactly `min(keep, T N)` tokens.

    Each segment's merged static tokens form one group (placed at its first frame), each frame's other tokens
    another; `keep` is apportioned over the groups by size and each group is clustered (DPC-kNN) to its share, a
    cluster token sitting at its centre's position.

    Returns:
        `(tokens [K, D], frame [K], size [K])` in time order, then raster order; `size` counts the input tokens
        each output token averages.
    """
    frames, per_frame, _ = x.shape
    keep = min(keep, frames * per_frame)
    static = temporal_merges(plan, frames, per_frame, keep)
    groups = []  # (tokens [M, D], frame, positions [M], input tokens per row)
    for (start, stop), merged in zip(plan[0], static, strict=True):
        if merged.any():
            groups.append((x[start:stop, merged].mean(dim=0), start, merged.nonzero().squeeze(1), stop - start))
        for frame in range(start, stop):
            groups.append((x[frame, ~merged], frame, (~merged).nonzero().squeeze(1), 1))
    parts = []
    for (tokens, frame, positions, weight), share in zip(
        groups, apportion(keep, [len(g[0]) for g in groups]), strict=True
    ):
        if share == 0:
            continue
        size = torch.ones(len(tokens), dtype=torch.long, device=x.device)
        if share < len(tokens):
            centers = dpc_knn_centers(tokens, share, knn)
            tokens, size = merge_to_centers(tokens, centers)
            positions = positions[centers]
        parts.append((tokens, frame * per_frame + positions, size * weight))
    order = torch.cat([key for _, key, _ in parts]).argsort()
    tokens = torch.cat([tokens for tokens, _, _ in parts])[order]
    key = torch.cat([key for _, key, _ in parts])[order]
    return tokens, key // per_frame, torch.cat([size for _, _, size in parts])[order]


def compress_segments(
    tokens: Tensor, timestamps: Tensor, frame_mask: Tensor, plan: Callable[[Tensor], SegmentPlan], keep: int, knn: int
) -> CompressedTokens:
    """Run `plan` and `merge_segments` on each video's valid frames (`[B, T, N, D]` -> `[B, min(keep, T N), D]`);
    `aux["size"]` `[B, L]` counts the input tokens each output token averages."""

    def compress_video(video_tokens: Tensor, video_times: Tensor) -> CompressedTokens:
        outputs = []
        for row in range(video_tokens.shape[0]):
            merged, frame, size = merge_segments(video_tokens[row], plan(video_tokens[row]), keep, knn)
            length = len(merged)
            mask = torch.ones(1, length, dtype=torch.bool, device=merged.device)
            times = video_times[row, frame][None]
            outputs.append(CompressedTokens(merged[None], mask, frame[None], times, aux={"size": size[None]}))
        return stack_outputs(outputs)

    return compress_valid_frames(compress_video, tokens, timestamps, frame_mask)


def contiguous_segments(labels: list[int]) -> list[tuple[int, int]]:
    """`[(start, stop)]` runs of frame cluster `labels` made contiguous as PruneVid's reference code does: a cluster
    keeps its longest runs (none if they are single frames); every other stretch takes the label of its longer
    neighbour run (ties: the left one; label 0 with no neighbour), left to right."""
    labels = list(labels)
    longest: dict[int, int] = {}
    for start, stop in label_runs(labels):
        longest[labels[start]] = max(longest.get(labels[start], 0), stop - start)
    for start, stop in label_runs(labels):
        if not stop - start == longest[labels[start]] > 1:
            labels[start:stop] = [-1] * (stop - start)
    for start, stop in label_runs(labels):
        if labels[start] == -1:
            left = run_length(labels, start - 1, -1)
            right = run_length(labels, stop, 1)
            new_label = 0 if left == right == 0 else labels[start - 1] if left >= right else labels[stop]
            labels[start:stop] = [new_label] * (stop - start)
    return label_runs(labels)


def run_length(labels: list[int], index: int, step: int) -> int:
    """How many labels equal `labels[index]` in a row from `index` in direction `step`; 0 outside the list."""
    if not 0 <= index < len(labels):
        return 0
    end = index
    while 0 <= end + step < len(labels) and labels[end + step] == labels[index]:
        end += step
    return abs(end - index) + 1


def label_runs(labels: list[int]) -> list[tuple[int, int]]:
    """`[(start, stop)]` maximal runs of equal labels."""
    starts = [i for i in range(len(labels)) if i == 0 or labels[i] != labels[i - 1]]
    return list(zip(starts, [*starts[1:], len(labels)], strict=True))


def prunevid_plan(x: Tensor, segment_ratio: float, tau: float, knn: int) -> SegmentPlan:
    """PruneVid's temporal segmentation and static test on one video `x [T, N, D]`: frame clusters made contiguous,
    then per segment the positions whose mean pairwise cosine similarity over its frames exceeds `tau` (static), and
    that similarity (their redundancy)."""
    frames = x.shape[0]
    frame_means = x.detach().float().mean(dim=1)
    centers = dpc_knn_centers(frame_means, max(1, int(frames * segment_ratio)), knn)
    labels = torch.cdist(frame_means, frame_means[centers]).argmin(dim=1)
    labels[centers] = torch.arange(len(centers), device=x.device)
    segments = contiguous_segments(labels.tolist())
    unit = F.normalize(x.detach().float(), dim=-1)
    similarity = torch.zeros(len(segments), x.shape[1], device=x.device)
    for row, (start, stop) in enumerate(segments):
        length = stop - start
        if length > 1:  # mean over frame pairs t != s of cos(x_t, x_s) = (|sum_t u_t|^2 - w) / (w (w - 1))
            similarity[row] = (unit[start:stop].sum(dim=0).square().sum(dim=-1) - length) / (length * (length - 1))
    return segments, similarity > tau, similarity


@register_compressor("prunevid")
class PruneVid(Compressor):
    """PruneVid's segment, static/dynamic and spatial merging to exactly `keep_tokens` per video, in time order; no
    parameters. A merged static token sits at its segment's first frame; `aux["size"]` counts what each token
    averages."""

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("keep_tokens", up_to_all_tokens),))

    def __init__(
        self, dim: int, keep_tokens: int = 64, tau: float = 0.8, segment_ratio: float = 0.25, knn: int = 7
    ) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.tau = check_float("tau", tau, 0.0, 1.0)
        self.segment_ratio = check_float("segment_ratio", segment_ratio, 0.0, 1.0, include_low=False)
        self.knn = check_int("knn", knn)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""

        def plan(video: Tensor) -> SegmentPlan:
            return prunevid_plan(video, self.segment_ratio, self.tau, self.knn)

        return compress_segments(tokens, timestamps, frame_mask, plan, self.keep_tokens, self.knn)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
