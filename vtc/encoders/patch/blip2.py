"""ToMe host adapter for BLIP-2 vision towers: one fused `qkv` projection, then `projection`."""

from __future__ import annotations

from torch import Tensor, nn

from vtc.compressors.tome import proportional_attention

MODEL_TYPES = ("blip_2_vision_model",)


def attend(attention: nn.Module, x: Tensor, size: Tensor | None) -> tuple[Tensor, Tensor]:
    """`Blip2Attention` on `x [B, N, D]` with proportional attention for token sizes `size [B, N, 1]`; returns
    `(output [B, N, D], keys [B, H, N, head_dim])`."""
    batch, count, _ = x.shape
    query, key, value = attention.qkv(x).reshape(batch, count, 3, attention.num_heads, -1).permute(2, 0, 3, 1, 4)
    dropout = float(attention.attention_dropout) if attention.training else 0.0
    return attention.projection(proportional_attention(query, key, value, attention.scale, size, dropout)), key
