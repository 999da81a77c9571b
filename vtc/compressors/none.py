"""`"none"`: the identity compressor, every token passed through (the uncompressed upper bound)."""

from __future__ import annotations

from torch import Tensor

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, MethodCard
from vtc.compressors.ops import per_frame_output


@register_compressor("none")
class NoCompression(Compressor):
    """Pass all `T * N` tokens through, frame-major; padded frames are dropped."""

    card = MethodCard(family=Family.TRAINING_FREE, streaming=True)  # no knobs: always T * N tokens

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, T*N, D]` (fewer valid tokens where frames are masked)."""
        return per_frame_output(tokens, timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return num_frames * tokens_per_frame

    def init_state(self, batch_size: int, device=None) -> None:
        return None

    def step_frame(self, frame_tokens: Tensor, timestamp: Tensor, state: None) -> tuple[CompressedTokens, None]:
        """`[B, N, D]` -> that frame's `N` tokens."""
        frame_mask = timestamp.new_ones(timestamp.shape[0], 1, dtype=bool)
        return per_frame_output(frame_tokens.unsqueeze(1), timestamp.unsqueeze(1), frame_mask), None
