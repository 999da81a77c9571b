"""`"divprune"`: DivPrune (Alvar et al., "DivPrune: Diversity-based Visual Token Pruning for Large Multimodal
Models", CVPR 2025, https://github.com/vbdi/divprune).

Pruning as a Max-Min Diversity Problem (Sec. 3): keep the `keep_tokens` tokens of the whole video whose smallest
pairwise cosine distance is as large as possible, by the paper's greedy solver (Algorithm 1): the first token is
the one farthest from its nearest neighbour, every next one the token farthest from the tokens kept so far. The kept
tokens are returned in time order. The paper prunes the LLM's input embeddings (after the projector); here it runs on
whatever tokens the compressor receives. Like the reference code it computes every pairwise similarity once (one
matrix product) and reads a row per kept token, while that `(T N)^2` matrix fits in `FULL_MATRIX_BYTES`; beyond it the
similarities of each kept token are recomputed (memory `O(T N)`, but every step reads all the tokens: 1,600 steps over
12,800 tokens of width 1,024 take several times the matrix product).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import gather_rows, pack_kept
from vtc.utils.checks import check_int

ROWS_PER_CHUNK = 1024  # query rows per block of the nearest-neighbour search: memory O(chunk x T N)
FULL_MATRIX_BYTES = 1 << 30  # the most memory the all-pairs similarity matrix may take (12,800 tokens: 655 MB)


def nearest_neighbour_distance(unit: Tensor, valid: Tensor, full: Tensor | None = None) -> Tensor:
    """`[B, M]` cosine distance of each unit-norm token `unit [B, M, D]` to its nearest other valid token
    (Algorithm 1, step 1); 2 (the largest cosine distance) where a row has no other valid token. In row blocks,
    copied from `full` (`[B, M, M]`, every pairwise similarity) when given."""
    count = unit.shape[1]
    blocks = []
    for start in range(0, count, ROWS_PER_CHUNK):
        stop = start + ROWS_PER_CHUNK
        similarity = unit[:, start:stop] @ unit.transpose(1, 2) if full is None else full[:, start:stop].clone()
        similarity[:, :, start:stop].diagonal(dim1=1, dim2=2).fill_(-1.0)  # not its own
        if not bool(valid.all()):
            similarity.masked_fill_(~valid[:, None, :], -1.0)
        blocks.append(similarity.max(dim=2).values)
    return 1 - torch.cat(blocks, dim=1).clamp(-1, 1)


def max_min_diverse(tokens: Tensor, keep: int, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy max-min diversity selection of `keep` of the `M` tokens `tokens [B, M, D]` (cosine distance).

    Step 1 takes the valid token farthest from its nearest neighbour; each next step the unchosen valid token whose
    distance to the closest chosen one is largest (ties: the earliest). Invalid tokens come only after every valid
    one is taken.

    Returns:
        `(index [B, keep'], chosen_valid [B, keep'])`, `keep' = min(keep, M)`, indices in the order chosen;
        `chosen_valid` is False for the slots filled by invalid tokens.
    """
    batch, count, _ = tokens.shape
    unit = F.normalize(tokens.detach().float(), dim=-1)
    rows = torch.arange(batch, device=tokens.device)
    full = unit @ unit.transpose(1, 2) if batch * count * count * unit.element_size() <= FULL_MATRIX_BYTES else None
    pick = nearest_neighbour_distance(unit, valid, full).masked_fill(~valid, -1.0).argmax(dim=1)  # first of maxima
    # The similarity of each token to its closest chosen one; 2 (beyond any cosine) for invalid tokens, so they come
    # last, and inf for chosen ones. The next token is the least similar (Algorithm 1, step 2; ties: the earliest).
    closest = torch.full((batch, count), -1.0, device=tokens.device).masked_fill(~valid, 2.0)
    chosen = []
    for _ in range(min(keep, count)):
        chosen.append(pick)
        kept_similarity = (unit @ unit[rows, pick].unsqueeze(-1)).squeeze(-1) if full is None else full[rows, pick]
        closest = torch.maximum(closest, kept_similarity)
        closest[rows, pick] = float("inf")
        pick = closest.argmin(dim=1)
    index = torch.stack(chosen, dim=1)
    return index, valid.gather(1, index)


@register_compressor("divprune")
class DivPrune(Compressor):
    """Keep the `keep_tokens` most mutually diverse tokens of each video (greedy max-min cosine distance), in time
    order; no parameters. Padded frames are never chosen."""

    card = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("keep_tokens", up_to_all_tokens),))

    def __init__(self, dim: int, keep_tokens: int = 64) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""
        batch, frames, per_frame, channels = tokens.shape
        flat = tokens.reshape(batch, frames * per_frame, channels)
        valid = frame_mask.repeat_interleave(per_frame, dim=1)
        index, chosen_valid = max_min_diverse(flat, self.keep_tokens, valid)
        order = index.argsort(dim=1)  # time order
        index, chosen_valid = index.gather(1, order), chosen_valid.gather(1, order)
        frame_index = index // per_frame
        mask, (kept, kept_frames, kept_times) = pack_kept(
            chosen_valid, gather_rows(flat, index), frame_index, timestamps.gather(1, frame_index)
        )
        return CompressedTokens(kept, mask, kept_frames.masked_fill(~mask, -1), kept_times)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
