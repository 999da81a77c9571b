"""GPT-NeoX-style transformer blocks (pre-norm, rotary attention, parallel residual), causal or bidirectional.

TSTAR's transformer baselines (Kim & Seo 2025) use these in place of its Mamba blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rotary_embedding(x: Tensor, base: float = 10000.0) -> Tensor:
    """Rotate `x [B, heads, L, head_dim]` by its position (RoFormer, Su et al. 2021, eq. 34; NeoX half-split layout)."""
    length, head_dim = x.shape[-2], x.shape[-1]
    half = head_dim // 2
    frequencies = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angles = torch.arange(length, device=x.device, dtype=torch.float32).unsqueeze(1) * frequencies
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    first, second, rest = x[..., :half], x[..., half : 2 * half], x[..., 2 * half :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin, rest], dim=-1)


class RotaryAttention(nn.Module):
    """Multi-head self-attention with rotary position embedding on queries and keys."""

    def __init__(self, dim: int, num_heads: int, causal: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not a multiple of num_heads={num_heads}")
        self.num_heads, self.causal = num_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, L, D] -> [B, L, D]`."""
        batch, length, dim = x.shape
        query, key, value = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(
            rotary_embedding(query), rotary_embedding(key), value, is_causal=self.causal
        )
        return self.out(attended.transpose(1, 2).reshape(batch, length, dim))


class NeoXBlock(nn.Module):
    """`x + attention(norm1(x)) + mlp(norm2(x))`: GPT-NeoX's parallel pre-norm residual block."""

    def __init__(self, dim: int, num_heads: int = 8, mlp_ratio: float = 4.0, causal: bool = True) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.attention = RotaryAttention(dim, num_heads, causal)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """`[B, L, D] -> [B, L, D]`."""
        if x.dim() != 3 or x.shape[-1] != self.attention_norm.normalized_shape[0]:
            raise ValueError(f"expected [B, L, D={self.attention_norm.normalized_shape[0]}], got {tuple(x.shape)}")
        return x + self.attention(self.attention_norm(x)) + self.mlp(self.mlp_norm(x))
