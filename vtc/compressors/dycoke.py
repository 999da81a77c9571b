"""`"dycoke"`: DyCoke's temporal token merging (TTM) at a fixed token budget.

Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast Video Large Language Models" (CVPR 2025), Sec. 3
(temporal token merging, TTM) and the official `dycole_ttm` (KD-TAO/DyCoke, `llava/model/llava_arch.py`): frames go in
windows of four; in each window frames 1 and 3 are compared with the frame before them and frame 2 with the window's
first frame (its anchor), token by token at the same grid position (cosine similarity), and the tokens most similar to
their reference are pruned. The paper prunes a fixed share K of every compared frame; here one budget `keep_tokens` is
kept for the whole video by dropping the most similar tokens first. Anchors are kept until every compared token is
gone; below that budget the same window rule runs again on the anchors (frames 0, 4, 8, ...), then on theirs, and so
on, and the video's first frame goes last, evenly spaced over its grid. The second stage (dynamic KV-cache pruning) is
out of scope.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import compress_valid_frames, evenly_spaced, gather_rows, topk_in_order
from vtc.utils.checks import check_int

WINDOW = 4  # DyCoke Sec. 3, TTM: frames are merged in windows of four


def reference_frames(num_frames: int, window: int = WINDOW) -> tuple[list[int], list[int]]:
    """Each frame's reference frame and level under DyCoke's window rule, applied again on each level's anchors.

    At level `l` the frames are those at multiples of `u = window**l`; frame `t` is at level `l` when `u` is the largest
    such power dividing it. In its window (positions 0..3 in steps of `u`) position 2 refers to the window's anchor
    (`t - 2u`) and positions 1 and 3 to the frame before them (`t - u`) (DyCoke Sec. 3, temporal token merging;
    level 0 is the paper's rule). Frame 0 has no reference (-1) and the level above all others.

    Returns:
        `(reference, level)`, two lists of `num_frames` ints.
    """
    reference, level = [-1] * num_frames, [0] * num_frames
    for frame in range(1, num_frames):
        unit, depth = 1, 0
        while frame % (unit * window) == 0:
            unit, depth = unit * window, depth + 1
        position = (frame // unit) % window
        reference[frame] = frame - (2 * unit if position == 2 else unit)
        level[frame] = depth
    level[0] = max(level) + 1
    return reference, level


def keep_scores(tokens: Tensor, keep_tokens: int) -> Tensor:
    """`[B, T * N]` scores whose top `keep_tokens` are the tokens DyCoke keeps (higher = kept first).

    A compared token scores `4 * level - cos(token, same position in its reference frame)`: levels never mix (a
    cosine lies in [-1, 1]) and within a level the most similar token goes first. The first frame scores above every
    level, the `min(keep_tokens, N)` evenly spaced positions of its grid highest.

    Args:
        tokens: `[B, T, N, D]`, every frame valid.
        keep_tokens: the budget.
    """
    batch, frames, per_frame, _ = tokens.shape
    reference, level = reference_frames(frames)
    reference_index = torch.tensor([max(ref, 0) for ref in reference], device=tokens.device)
    similarity = F.cosine_similarity(tokens.float(), tokens[:, reference_index].float(), dim=-1)
    level_offset = 4.0 * torch.tensor(level, device=tokens.device, dtype=torch.float32)
    scores = level_offset.view(1, frames, 1) - similarity
    first = torch.zeros(per_frame, device=tokens.device)
    first[evenly_spaced(keep_tokens, per_frame, tokens.device)] = 1.0
    scores[:, 0] = level_offset[0] + first
    return scores.reshape(batch, frames * per_frame)


@register_compressor("dycoke")
class DyCoke(Compressor):
    """Keep `keep_tokens` of each video's valid `T * N` tokens by DyCoke's temporal token merging, in time order; no
    parameters. Padded frames are removed before the windows are formed, so they are never compared nor kept."""

    card = MethodCard(
        family=Family.TRAINING_FREE,
        knobs=(Knob("keep_tokens", up_to_all_tokens),),
        paper_config={"dim": 3584, "keep_tokens": 2960},
        paper_source=(
            "DyCoke README (LLaVA-OV-7B, K=0.7): 32 frames x 196 projected tokens of 3584, 3 of every 4 frames keep 58 "
            "(8 x 196 + 24 x 58)"
        ),
    )

    def __init__(self, dim: int, keep_tokens: int = 64) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""
        return compress_valid_frames(self.merge, tokens, timestamps, frame_mask)

    def merge(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        """Prune videos whose frames are all valid: `[B, T, N, D]` -> `[B, min(keep_tokens, T * N), D]`."""
        batch, frames, per_frame, channels = tokens.shape
        scores = keep_scores(tokens, self.keep_tokens)
        index, mask = topk_in_order(scores, self.keep_tokens)
        frame_index = index // per_frame
        kept = gather_rows(tokens.reshape(batch, frames * per_frame, channels), index)
        return CompressedTokens(kept, mask, frame_index, timestamps.gather(1, frame_index), scores.gather(1, index))

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
