"""Projector from compressed visual tokens to the language model's embedding space."""

from __future__ import annotations

from torch import Tensor, nn

from vtc.utils.positions import sinusoidal_encoding

PROJECTORS = ("linear", "mlp", "norm_mlp")


class Projector(nn.Module):
    """`"linear"` (BLIP-2 / STAC), `"mlp"`: Linear -> GELU -> Linear (LLaVA-1.5 / MambaMia), or `"norm_mlp"`:
    LayerNorm -> Linear -> GELU -> Linear (Qwen2-VL's patch merger normalises each token before its MLP). The norm
    puts tokens that are not of unit scale on the language model's scale: a CLIP / SigLIP patch token leaves its
    encoder through a final LayerNorm, the embedded world's patch tokens (shares of a cell, most of them 0) do not.

    With `time_embedding`, a sinusoidal encoding of each token's time in seconds, through a zero-initialised linear
    layer, is added to the projected token. A language model whose only position signal is relative (T5's bucketed
    bias, exact to 8 tokens and blind beyond 128) otherwise cannot tell which frame of a long visual sequence a token
    came from; zero initialisation leaves a pretrained model's start unchanged.
    """

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear", time_embedding: bool = False) -> None:
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"projector kind must be one of {PROJECTORS}, got {kind!r}")
        self.kind = kind
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim))
        else:
            norm = [nn.LayerNorm(in_dim)] if kind == "norm_mlp" else []
            self.layers = nn.Sequential(*norm, nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
        self.time = nn.Linear(out_dim, out_dim) if time_embedding else None
        if self.time is not None:
            nn.init.zeros_(self.time.weight)
            nn.init.zeros_(self.time.bias)

    def forward(self, tokens: Tensor, timestamps: Tensor | None = None) -> Tensor:
        """`tokens [..., L, in_dim]` (+ `timestamps [..., L]` seconds, needed with `time_embedding`) ->
        `[..., L, out_dim]`."""
        projected = self.layers(tokens)
        if self.time is None:
            return projected
        if timestamps is None or timestamps.shape != tokens.shape[:-1]:
            shape = None if timestamps is None else tuple(timestamps.shape)
            raise ValueError(f"time_embedding needs timestamps of shape {tuple(tokens.shape[:-1])}, got {shape}")
        encoding = sinusoidal_encoding(timestamps, projected.shape[-1])
        return projected + self.time(encoding.to(projected.dtype))
