"""Projector from compressed visual tokens to the language model's embedding space."""

from __future__ import annotations

from torch import Tensor, nn

PROJECTORS = ("linear", "mlp")


class Projector(nn.Module):
    """`"linear"` (BLIP-2 / STAC) or `"mlp"`: Linear -> GELU -> Linear (LLaVA-1.5 / MambaMia)."""

    def __init__(self, in_dim: int, out_dim: int, kind: str = "linear") -> None:
        super().__init__()
        if kind not in PROJECTORS:
            raise ValueError(f"projector kind must be one of {PROJECTORS}, got {kind!r}")
        self.kind = kind
        if kind == "linear":
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim))
        else:
            self.layers = nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, tokens: Tensor) -> Tensor:
        """`[..., in_dim]` -> `[..., out_dim]`."""
        return self.layers(tokens)
