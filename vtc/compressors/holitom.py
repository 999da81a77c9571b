"""`"holitom"`: HoliTom's merging before the LLM (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large
Language Models", NeurIPS 2025, arXiv 2505.21334, https://github.com/cokeshao/HoliTom).

Global redundancy-aware temporal segmentation: a token is redundant over a stretch of frames when its cosine
similarity to the same position in the next frame stays above `tau` all along; the video is cut into segments of at
most `max_window` frames so that the tokens temporal merging removes, summed over segments, is largest (dynamic
programming over the whole video, not fixed windows). In each segment the redundant (static) positions are averaged
over its frames, the rest stay per frame; then each segment's static tokens and each frame's dynamic tokens are merged
spatially by DPC-kNN clustering, a cluster token being the mean of its members (the reference's default, without
`BETA`). The steps after the segmentation are PruneVid's (`vtc.compressors.prunevid.merge_segments`), with the total
fixed at `keep_tokens`. Left out: the reference's default for dynamic tokens (`D = 0`: keep the most attended ones,
which needs the encoder's attention; this is its clustering, `D = 1`) and HoliTom's merging inside the LLM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.prunevid import SegmentPlan, compress_segments
from vtc.utils.checks import check_float, check_int


def window_savings(similar: Tensor, max_window: int) -> list[list[int]]:
    """`savings[start][length]`: tokens that temporal merging removes from frames `[start, start + length)`, the
    positions similar across all its consecutive frames times `length - 1`, from `similar [T - 1, N]` bool."""
    frames = similar.shape[0] + 1
    savings = []
    for start in range(frames):
        steps = similar[start : start + max_window - 1].long()
        static = steps.cumprod(dim=0).sum(dim=1)  # static positions of the windows of length 2, 3, ...
        lengths = torch.arange(2, len(static) + 2, device=similar.device)
        savings.append([0, 0, *(static * (lengths - 1)).tolist()])
    return savings


def redundancy_segments(similar: Tensor, max_window: int) -> list[tuple[int, int]]:
    """`[(start, stop)]` segments of at most `max_window` frames that maximise the total temporal saving
    (`window_savings`), by dynamic programming over the frames (ties: the shorter last segment)."""
    frames = similar.shape[0] + 1
    savings = window_savings(similar, max_window)
    best, cut = [0] * (frames + 1), [0] * (frames + 1)
    for stop in range(1, frames + 1):
        best[stop], cut[stop] = best[stop - 1], stop - 1  # the last frame alone
        for length in range(2, min(stop, max_window) + 1):
            start = stop - length
            if best[start] + savings[start][length] > best[stop]:
                best[stop], cut[stop] = best[start] + savings[start][length], start
    segments, stop = [], frames
    while stop > 0:
        segments.append((cut[stop], stop))
        stop = cut[stop]
    return segments[::-1]


def holitom_plan(x: Tensor, tau: float, max_window: int | None) -> SegmentPlan:
    """HoliTom's segmentation of one video `x [T, N, D]`: the segments, their static positions (similar to the next
    frame above `tau` across the whole segment) and their redundancy (the smallest such similarity)."""
    frames, per_frame, _ = x.shape
    unit = F.normalize(x.detach().float(), dim=-1)
    consecutive = (unit[:-1] * unit[1:]).sum(dim=-1)  # [T - 1, N]
    segments = redundancy_segments(consecutive > tau, frames if max_window is None else max_window)
    static = torch.zeros(len(segments), per_frame, dtype=torch.bool, device=x.device)
    redundancy = torch.zeros(len(segments), per_frame, device=x.device)
    for row, (start, stop) in enumerate(segments):
        if stop - start > 1:
            redundancy[row] = consecutive[start : stop - 1].min(dim=0).values
            static[row] = redundancy[row] > tau
    return segments, static, redundancy


@register_compressor("holitom")
class HoliTom(Compressor):
    """HoliTom's global temporal segmentation, temporal and spatial merging to exactly `keep_tokens` per video, in
    time order; no parameters. A merged static token sits at its segment's first frame; `aux["size"]` counts the
    input tokens each output token averages. `max_window=None` lets a segment span the whole video."""

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("keep_tokens", up_to_all_tokens),))

    def __init__(
        self, dim: int, keep_tokens: int = 64, tau: float = 0.8, max_window: int | None = None, knn: int = 7
    ) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.tau = check_float("tau", tau, 0.0, 1.0)
        self.max_window = None if max_window is None else check_int("max_window", max_window)
        self.knn = check_int("knn", knn)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""

        def plan(video: Tensor) -> SegmentPlan:
            return holitom_plan(video, self.tau, self.max_window)

        return compress_segments(tokens, timestamps, frame_mask, plan, self.keep_tokens, self.knn)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
