"""Attention resamplers: `"resampler2d"` (a Perceiver resampler per frame, Flamingo, Alayrac et al. 2022, Sec.
2.1 and Fig. 5) and `"resampler3d"` (one set of learned queries for the whole clip over all `T * N` tokens
with a temporal position encoding, the Video-LLaMA / VideoChat2 style).

Each layer: the latents attend to `[tokens, latents]` (Flamingo concatenates the latents to the keys), then a
feed-forward block, both pre-norm and residual; a final LayerNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.card import Family, Knob, MethodCard, up_to_all_tokens, up_to_tokens
from vtc.compressors.ops import gather_rows, per_frame_output
from vtc.utils.checks import check_int
from vtc.utils.positions import sinusoidal_encoding


class ResamplerLayer(nn.Module):
    """Pre-norm cross-attention of the latents to `[inputs, latents]`, then a 4x feed-forward block."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm_inputs = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.feed_forward = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)
        )

    def forward(self, latents: Tensor, inputs: Tensor, input_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """`latents [B, Q, D]`, `inputs [B, M, D]`, `input_mask [B, M]` (True = attend) -> latents, attention
        weights on the inputs `[B, Q, M]` (head average, renormalised without the latent keys)."""
        normed = self.norm_latents(latents)
        keys = torch.cat([self.norm_inputs(inputs), normed], dim=1)
        padding = None
        if input_mask is not None:
            padding = torch.cat([~input_mask, input_mask.new_zeros(latents.shape[:2])], dim=1)
        attended, weights = self.attention(normed, keys, keys, key_padding_mask=padding, need_weights=True)
        latents = latents + attended
        latents = latents + self.feed_forward(latents)
        on_inputs = weights[..., : inputs.shape[1]]
        return latents, on_inputs / on_inputs.sum(dim=-1, keepdim=True).clamp_min(1e-12)


class PerceiverResampler(nn.Module):
    """`num_queries` learned latents refined by `depth` `ResamplerLayer`s."""

    def __init__(self, dim: int, num_queries: int, depth: int, num_heads: int) -> None:
        super().__init__()
        check_int("num_queries", num_queries)
        check_int("depth", depth)
        if dim % check_int("num_heads", num_heads):
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.latents = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        self.layers = nn.ModuleList(ResamplerLayer(dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: Tensor, input_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """`[B, M, D]` (+ `[B, M]` mask) -> `(latents [B, Q, D], last layer's input weights [B, Q, M])`."""
        latents = self.latents.expand(inputs.shape[0], -1, -1)
        for layer in self.layers:
            latents, weights = layer(latents, inputs, input_mask)
        return self.norm(latents), weights


@register_compressor("resampler2d")
class Resampler2d(Compressor):
    """Per-frame Perceiver resampler: `num_queries` learned queries attend to each frame's N tokens."""

    card = MethodCard(family=Family.ATTENTION, knobs=(Knob("num_queries", up_to_tokens),))

    def __init__(self, dim: int, num_queries: int = 10, depth: int = 2, num_heads: int = 8) -> None:
        super().__init__(dim)
        self.num_queries = num_queries
        self.resampler = PerceiverResampler(dim, num_queries, depth, num_heads)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, T * num_queries, D]`, frame-major; padded frames dropped."""
        batch, frames, per_frame, channels = tokens.shape
        latents, _ = self.resampler(tokens.reshape(batch * frames, per_frame, channels))
        return per_frame_output(latents.reshape(batch, frames, self.num_queries, channels), timestamps, frame_mask)

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return num_frames * self.num_queries


@register_compressor("resampler3d")
class Resampler3d(Compressor):
    """Clip-level resampler: `num_queries` learned queries attend to all valid `T * N` tokens.

    A sinusoidal encoding of each token's frame position (its index among the video's valid frames) is added
    to the tokens, so the queries can tell frames apart. Output tokens are not tied to a frame (frame_index
    -1); each carries the attention-weighted mean timestamp of its last layer (head average), and tokens are
    sorted by that timestamp.
    """

    card = MethodCard(family=Family.ATTENTION, knobs=(Knob("num_queries", up_to_all_tokens),))

    def __init__(self, dim: int, num_queries: int = 256, depth: int = 2, num_heads: int = 8) -> None:
        super().__init__(dim)
        self.num_queries = num_queries
        self.resampler = PerceiverResampler(dim, num_queries, depth, num_heads)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, num_queries, D]`."""
        batch, frames, per_frame, channels = tokens.shape
        frame_position = frame_mask.long().cumsum(dim=1) - 1
        encoded = tokens + sinusoidal_encoding(frame_position, channels).unsqueeze(2).to(tokens.dtype)
        token_mask = frame_mask.unsqueeze(-1).expand(batch, frames, per_frame).reshape(batch, -1)
        latents, weights = self.resampler(encoded.reshape(batch, frames * per_frame, channels), token_mask)
        token_times = timestamps.unsqueeze(-1).expand(batch, frames, per_frame).reshape(batch, 1, -1)
        query_times = (weights * token_times).sum(dim=-1).detach()
        order = query_times.argsort(dim=1, stable=True)
        return CompressedTokens(
            tokens=gather_rows(latents, order),
            mask=torch.ones(batch, self.num_queries, dtype=torch.bool, device=tokens.device),
            frame_index=torch.full((batch, self.num_queries), -1, dtype=torch.long, device=tokens.device),
            timestamps=query_times.gather(1, order),
        )

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return self.num_queries
