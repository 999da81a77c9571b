"""`"vidcom2"`: VidCom2, the Video Compression Commander, at a fixed token budget.

Liu et al., "Video Compression Commander: Plug-and-Play Inference Acceleration for Video Large Language Models"
(EMNLP 2025, arXiv 2505.14454), Sec. 3 (method) and the official `token_compressor/vidcom2/vidcom2.py`
(xuyang-liu16/VidCom2).
Stage 1, frame compression adjustment: a frame's uniqueness is minus the mean similarity of its tokens to the video's
mean token; a softmax at temperature `temperature` over frames turns uniqueness into a share `sigma_t`, and frame `t`
keeps `r * (1 + sigma_t - 1/T)` of its tokens. Stage 2, adaptive token compression: within each frame the tokens least
similar to both the frame's and the video's mean token are kept. Here the shares split `keep_tokens` exactly
(`split_budget`), so the total is the budget rather than `r * T * N` up to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens
from vtc.compressors.ops import compress_valid_frames, gather_rows, kept_first, split_budget
from vtc.utils.checks import check_float, check_int


def frame_budgets(similarity_to_video: Tensor, keep_tokens: int, temperature: float) -> Tensor:
    """`[B, T]` tokens each frame keeps, from its tokens' similarity to the video mean `[B, T, N]` (VidCom2 Sec. 3,
    frame compression adjustment): uniqueness `u_t = -mean_n sim`, `sigma = softmax(u / temperature)`, frame `t` gets
    a share `1 + sigma_t - 1/T` of `keep_tokens` (shares average 1)."""
    frames, per_frame = similarity_to_video.shape[1:]
    uniqueness = -similarity_to_video.mean(dim=2)
    sigma = torch.softmax(uniqueness / temperature, dim=1)
    weights = 1 + sigma - 1 / frames
    capacity = torch.full((frames,), per_frame, device=weights.device)
    return torch.stack([split_budget(row, keep_tokens, capacity) for row in weights]).to(weights.device)


def token_similarities(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarity of each token `[B, T, N, D]` to the video's and to its frame's mean unit token, each
    `[B, T, N]` (the centres are means of the L2-normalised tokens, as in the official code)."""
    unit = F.normalize(tokens.float(), dim=-1)
    video_mean = unit.mean(dim=(1, 2), keepdim=True)
    frame_mean = unit.mean(dim=2, keepdim=True)
    return F.cosine_similarity(unit, video_mean, dim=-1), F.cosine_similarity(unit, frame_mean, dim=-1)


@register_compressor("vidcom2")
class VidCom2(Compressor):
    """Keep `keep_tokens` of each video's valid `T * N` tokens, split over frames by frame uniqueness and chosen within
    each frame by token uniqueness, in time order; no parameters. Padded frames are removed first: they take no
    share, and the video mean is over valid frames only."""

    card = MethodCard(
        family=Family.TRAINING_FREE,
        knobs=(Knob("keep_tokens", up_to_all_tokens),),
        paper_config={"dim": 3584, "keep_tokens": 1568, "temperature": 0.01},
        paper_source="VidCom2 abstract (LLaVA-OV-7B: 25% of 32 frames x 196 tokens of 3584); official code temperature",
    )

    def __init__(self, dim: int, keep_tokens: int = 64, temperature: float = 0.01) -> None:
        super().__init__(dim)
        self.keep_tokens = check_int("keep_tokens", keep_tokens)
        self.temperature = check_float("temperature", temperature, low=0.0, include_low=False)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, L, D]`, `L = min(keep_tokens, T * N)` (fewer valid where frames are padded)."""
        return compress_valid_frames(self.select, tokens, timestamps, frame_mask)

    def select(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        """Compress videos whose frames are all valid: `[B, T, N, D]` -> `[B, min(keep_tokens, T * N), D]`."""
        batch, frames, per_frame, channels = tokens.shape
        to_video, to_frame = token_similarities(tokens)
        budgets = frame_budgets(to_video, self.keep_tokens, self.temperature)
        redundancy = to_video + to_frame  # Sec. 3, adaptive token compression: keep the least similar
        rank = redundancy.argsort(dim=2, stable=True).argsort(dim=2)
        keep = (rank < budgets.unsqueeze(-1)).reshape(batch, frames * per_frame)
        index = kept_first(keep)[:, : self.num_output_tokens(frames, per_frame)]  # every row keeps exactly that many
        frame_index = index // per_frame
        kept = gather_rows(tokens.reshape(batch, frames * per_frame, channels), index)
        scores = -redundancy.reshape(batch, frames * per_frame).gather(1, index)
        mask = torch.ones_like(index, dtype=torch.bool)
        return CompressedTokens(kept, mask, frame_index, timestamps.gather(1, frame_index), scores)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return min(self.keep_tokens, num_frames * tokens_per_frame)
