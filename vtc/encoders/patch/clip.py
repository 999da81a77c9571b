"""ToMe host adapter for CLIP and SigLIP vision towers: separate `q_proj`, `k_proj`, `v_proj`, then `out_proj`."""

from __future__ import annotations

from torch import Tensor, nn

from vtc.compressors.tome import proportional_attention

MODEL_TYPES = ("clip_vision_model", "siglip_vision_model")


def attend(attention: nn.Module, x: Tensor, size: Tensor | None) -> tuple[Tensor, Tensor]:
    """`CLIPAttention` / `SiglipAttention` on `x [B, N, D]` with proportional attention for token sizes
    `size [B, N, 1]`; returns `(output [B, N, D], keys [B, H, N, head_dim])`."""
    batch, count, _ = x.shape
    query, key, value = (
        projection(x).reshape(batch, count, attention.num_heads, -1).transpose(1, 2)
        for projection in (attention.q_proj, attention.k_proj, attention.v_proj)
    )
    dropout = float(attention.dropout) if attention.training else 0.0
    return attention.out_proj(proportional_attention(query, key, value, attention.scale, size, dropout)), key
