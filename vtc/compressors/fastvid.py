"""`"fastvid"`: FastVID's dynamic temporal segmentation and density-based token merging, at a fixed token budget.

Shen et al., "FastVID: Dynamic Density Pruning for Fast Video Large Language Models" (arXiv 2503.11187), Sec. 3 and
the official code (LunarShen/FastVID, `modeling_qwen2.py` of its LLaVA-OneVision port):

1. DySeg: the cosine similarity of adjacent frames' global features; the video is cut after the `num_segments - 1`
   least similar transitions and after every transition below `threshold`.
2. STPrune's density-based token merging (DTM): in each segment, anchor frames every `anchor_step` frames counted
   back from the segment's last frame; in each anchor frame the density peaks (DPC-kNN: local density times the
   distance to the nearest denser token) are the anchor tokens; every token of the segment joins its most similar
   anchor token of that frame, and the anchor token becomes `w * anchor + (1 - w) * mean(joined)`,
   `w = max(1 / (joined + 1), merge_weight)`.

Budget: `keep_tokens` is split over segments by length, and a segment's share equally over its anchor frames; where
the share exceeds what the anchor frames hold, more anchor frames are spaced over the segment, so every budget up to
`T * N` is met exactly. A frame's global feature is its mean token, and ATS (the salient tokens picked by the vision
encoder's attention) is left out: the compressor sees tokens only, so every kept token comes from DTM.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.grid import ceil_div
from vtc.compressors.ops import compress_valid_frames, split_budget, stack_outputs
from vtc.utils.checks import check_float, check_int


def segment_lengths(frame_features: Tensor, num_segments: int, threshold: float) -> list[int]:
    """DySeg (FastVID Sec. 3): lengths of the segments of `frame_features [T, D]`, cut after the `num_segments - 1`
    lowest adjacent-frame cosine similarities and after every one below `threshold`."""
    frames = frame_features.shape[0]
    similarity = F.cosine_similarity(frame_features[:-1], frame_features[1:], dim=-1)
    lowest = similarity.topk(min(num_segments - 1, frames - 1), largest=False).indices
    cuts = torch.cat([lowest, (similarity < threshold).nonzero().squeeze(1)]).unique().tolist()
    bounds = [-1, *cuts, frames - 1]
    return [end - start for start, end in itertools.pairwise(bounds)]


def density_peak_scores(tokens: Tensor, neighbors: int) -> Tensor:
    """DPC-kNN score of each token of each frame `[F, N, D]` -> `[F, N]` (FastVID Sec. 3, DTM): density
    `exp(-mean squared distance to its k nearest tokens)` times the distance to the nearest denser token (the largest
    distance in the frame for the densest); distances are Euclidean over `sqrt(D)`, ties in density go to the earlier
    token."""
    per_frame, channels = tokens.shape[1], tokens.shape[2]
    distance = torch.cdist(tokens, tokens) / math.sqrt(channels)
    nearest = distance.topk(min(neighbors, per_frame), dim=-1, largest=False).values
    density = (-(nearest**2).mean(dim=-1)).exp()
    earlier = torch.ones(per_frame, per_frame, dtype=torch.bool, device=tokens.device).tril(-1)
    denser = (density[:, None, :] > density[:, :, None]) | ((density[:, None, :] == density[:, :, None]) & earlier)
    farthest = distance.flatten(1).max(dim=1).values.view(-1, 1, 1)
    to_denser = torch.where(denser, distance, farthest).min(dim=-1).values
    return to_denser * density


def anchor_frames(length: int, budget: int, per_frame: int, step: int) -> tuple[list[int], list[int]]:
    """The anchor frames of a segment of `length` frames and the tokens each keeps, `budget` in all.

    FastVID takes every `step`-th frame counting back from the segment's last; when the budget needs more frames than
    that (each holds at most `per_frame`), the anchors are spaced closer. The budget is split equally, the remainder
    one token each to the anchors nearest the segment's end.

    Returns:
        `(frames, counts)`: frames ascending within the segment, counts >= 1 (anchors that would get none dropped).
    """
    count = min(length, max(ceil_div(length, step), ceil_div(budget, per_frame)))
    spacing = step if count == 1 else min(step, (length - 1) // (count - 1))
    base, extra = divmod(budget, count)
    anchors = [(length - 1 - spacing * rank, base + (rank < extra)) for rank in range(count)]
    kept = sorted((frame, tokens) for frame, tokens in anchors if tokens > 0)
    return [frame for frame, _ in kept], [tokens for _, tokens in kept]


def merge_into_anchors(anchors: Tensor, sources: Tensor, merge_weight: float) -> Tensor:
    """DTM merge (FastVID Sec. 3): each source `[M, D]` joins its most similar anchor `[K, D]` (cosine); an anchor
    becomes `w * anchor + (1 - w) * mean(joined)`, `w = max(1 / (joined + 1), merge_weight)` -> `[K, D]`."""
    similarity = F.normalize(sources, dim=-1) @ F.normalize(anchors, dim=-1).T
    joined = F.one_hot(similarity.argmax(dim=1), anchors.shape[0]).to(sources.dtype)
    count = joined.sum(dim=0).unsqueeze(1)
    mean = joined.T @ sources / count.clamp_min(1)
    weight = (1 / (count + 1)).clamp_min(merge_weight)
    return weight * anchors + (1 - weight) * mean


@register_compressor("fastvid")
class FastVID(Compressor):
    """Keep `keep_tokens` merged tokens per video: DySeg segments, then density-peak anchor tokens of each segment's
    anchor frames, each merged with the segment tokens nearest to it; in time order, no parameters. Padded frames
    are removed first, so they are never segmented, merged or kept."""

    card = MethodCard(
        family=Family.TRAINING_FREE,
        knobs=(Knob("keep_tokens", up_to_all_tokens),),
        paper_config={
            "dim": 3584,
            "keep_tokens": 608,
            "num_segments": 8,
            "threshold": 0.9,
            "anchor_step": 4,
            "merge_weight": 0.6,
        },
        paper_source=(
            "FastVID scripts/eval.sh for LLaVA-OneVision: 32 frames x 196 tokens of 3584, retention 0.10 (19 a frame), "
            "DySeg c=8 tau=0.9, DTM p=4 beta=0.6"
        ),
    )

    def __init__(
        self,
        dim: int,
        keep_tokens: int = 64,
        num_segments: int = 8,
        threshold: float = 0.9,
        anchor_step: int = 4,
        merge_weight: float = 0.6,
        neighbors: int = 4,
    ) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.num_segments = check_int("num_segments", num_segments)
        self.threshold = check_float("threshold", threshold, low=-1.0, high=1.0, include_low=False)
        self.anchor_step = check_int("anchor_step", anchor_step)
        self.merge_weight = check_float("merge_weight", merge_weight, low=0.0, high=1.0)
        self.neighbors = check_int("neighbors", neighbors)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""
        return compress_valid_frames(self.prune, tokens, timestamps, frame_mask)

    def prune(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        """Compress videos whose frames are all valid, one at a time: `[B, T, N, D]` -> `[B, L, D]`,
        `L = min(keep_tokens, T * N)`."""
        return stack_outputs([self.prune_video(tokens[row], timestamps[row]) for row in range(tokens.shape[0])])

    def prune_video(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        """One video `[T, N, D]` at times `[T]` -> `CompressedTokens` `[1, min(keep_tokens, T * N), D]`."""
        per_frame, channels = tokens.shape[1:]
        work = tokens.to(torch.promote_types(tokens.dtype, torch.float32))
        lengths = segment_lengths(work.mean(dim=1), self.num_segments, self.threshold)
        lengths_tensor = torch.tensor(lengths)
        budgets = split_budget(lengths_tensor.double(), self.keep_tokens, lengths_tensor * per_frame).tolist()
        scores = density_peak_scores(work, self.neighbors)
        positions, merged, start = [], [], 0
        for length, budget in zip(lengths, budgets, strict=True):
            segment = work[start : start + length].reshape(length * per_frame, channels)
            for frame, count in zip(*anchor_frames(length, budget, per_frame, self.anchor_step), strict=True):
                peaks = scores[start + frame].topk(count).indices
                merged.append(merge_into_anchors(work[start + frame, peaks], segment, self.merge_weight))
                positions.append((start + frame) * per_frame + peaks)
            start += length
        position = torch.cat(positions)
        order = position.argsort()
        frame_index = (position[order] // per_frame).unsqueeze(0)
        kept = torch.cat(merged)[order].unsqueeze(0).to(tokens.dtype)
        mask = torch.ones_like(frame_index, dtype=torch.bool)
        return CompressedTokens(kept, mask, frame_index, timestamps[frame_index])

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
