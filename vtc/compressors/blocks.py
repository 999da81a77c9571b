"""The blocks TSTAR / MambaMia (Kim & Seo 2025) stacks: its Mamba V1 / V2 blocks with gated patch aggregation, and
GPT-NeoX-style transformer blocks (pre-norm, rotary attention, parallel residual) for its transformer baselines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtc.ssm import Mamba2, MambaBlock, MambaState, MixerOutput, RMSNorm, ssd_scan

GATE_RANGE = (0.01, 0.99)  # MambaMia supplement: g constrained to [eps, 1 - eps], eps = 0.01
TRANSFORMER_BLOCKS = ("transformer", "bitransformer")


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


def _conv_silu(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """Depthwise causal conv then SiLU over time: `[B, L, C] -> [B, L, C]` (Mamba-2's conv on x, B and C)."""
    length = x.shape[1]
    return F.silu(conv(x.transpose(1, 2))[..., :length].transpose(1, 2))


class BiMamba2(Mamba2):
    """Bidirectional Mamba-2 (Dao & Gu 2024, Figure 6, run both ways): `in_proj` and `out_proj` shared, the reversed
    direction with its own conv1d, dt_bias, A, D and gated norm (`conv1d_b`, `dt_bias_b`, `A_b_log`, `D_b`, `norm_b`,
    the names of the MambaMia authors' "v2" mixer); the two directions' normed outputs are summed before `out_proj`.
    MambaMia's Table 4 ablates this V2 block against the V1 BiMamba. Not streamable (it sees the future).
    """

    def __init__(self, d_model: int, **kwargs) -> None:
        super().__init__(d_model, **kwargs)
        backward = Mamba2(d_model, **kwargs)  # a fresh draw of the per-direction parameters
        self.conv1d_b, self.dt_bias_b, self.A_b_log = backward.conv1d, backward.dt_bias, backward.A_log
        self.D_b, self.norm_b = backward.D, backward.norm

    def direction(self, gate: Tensor, xbc: Tensor, dt: Tensor, backward: bool) -> tuple[Tensor, Tensor]:
        """One direction's scan of the projected `gate [B, L, d_inner]`, `xbc [B, L, conv_dim]`, `dt [B, L, heads]`
        (already reversed for the backward direction) -> gated-normed `y [B, L, d_inner]` and delta `[B, L, heads]`."""
        conv, dt_bias, a_log, skip, norm = (
            (self.conv1d_b, self.dt_bias_b, self.A_b_log, self.D_b, self.norm_b)
            if backward
            else (self.conv1d, self.dt_bias, self.A_log, self.D, self.norm)
        )
        batch, length, _ = xbc.shape
        groups = self.n_groups * self.d_state
        x, b, c = _conv_silu(xbc, conv).split([self.d_inner, groups, groups], dim=-1)
        delta = F.softplus(dt + dt_bias).clamp(*self.dt_limit)
        y = ssd_scan(
            x.reshape(batch, length, self.num_heads, self.head_dim),
            delta,
            -torch.exp(a_log.float()),
            b.reshape(batch, length, self.n_groups, self.d_state),
            c.reshape(batch, length, self.n_groups, self.d_state),
            chunk_size=self.chunk_size,
            D=skip,
        )
        return norm(y.reshape(batch, length, self.d_inner), gate), delta

    def forward_with_state(self, hidden_states: Tensor, state: MambaState | None = None) -> MixerOutput:
        """`[B, L, d_model]` -> output `[B, L, d_model]`, no state, and the summed delta of both directions
        `[B, L, heads]`. `state` must be None."""
        if state is not None:
            raise ValueError("BiMamba2 sees the future of the sequence and cannot continue from a state")
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"expected [B, L, d_model={self.d_model}], got shape {tuple(hidden_states.shape)}")
        projected = self.in_proj(hidden_states).split([self.d_inner, self.conv_dim, self.num_heads], dim=-1)
        y, delta = self.direction(*projected, backward=False)
        y_b, delta_b = self.direction(*(part.flip(1) for part in projected), backward=True)
        hidden = self.out_proj((y + y_b.flip(1)).to(hidden_states.dtype))
        return MixerOutput(hidden, None, delta + delta_b.flip(1))

    def step(self, hidden_state: Tensor, state: MambaState) -> tuple[Tensor, MambaState]:
        raise ValueError("BiMamba2 sees the future of the sequence and cannot stream")


class BiMamba2Block(nn.Module):
    """Pre-norm residual block `x + BiMamba2(norm(x))`, laid out as `vtc.ssm.MambaBlock` (`norm`, `mixer`)."""

    def __init__(self, dim: int, **mamba2_kwargs) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mixer = BiMamba2(dim, **mamba2_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """`[B, L, D] -> [B, L, D]`."""
        return x + self.mixer(self.norm(x))


class GatedAggregation(nn.Module):
    """MambaMia's gated patch aggregation (paper Eqs. 2-3), applied to each query and its k preceding patches.

    alpha = softmax(W_a q + b_a) over the k patches, a = sum_i alpha_i x_i, g = sigmoid(W_g q + b_g) squeezed into
    [0.01, 0.99] (one scalar gate per query), q <- (1 - g) q + g a. W_a, W_g start small so alpha starts near
    uniform and g near 0.5. `dropout` acts on the q that enters W_a and W_g only (the authors' public code: 0.1).
    """

    def __init__(self, dim: int, query_interval: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.weights = nn.Linear(dim, query_interval)
        self.gate = nn.Linear(dim, 1)
        self.dropout = nn.Dropout(dropout)
        for linear in (self.weights, self.gate):
            nn.init.normal_(linear.weight, std=1e-3)
            nn.init.zeros_(linear.bias)

    def forward(self, queries: Tensor, patches: Tensor, patch_valid: Tensor) -> Tensor:
        """`queries [..., G, D]`, `patches [..., G, k, D]`, `patch_valid [G, k]` -> updated queries `[..., G, D]`."""
        dropped = self.dropout(queries)
        logits = self.weights(dropped).masked_fill(~patch_valid, float("-inf"))
        aggregate = (torch.softmax(logits, dim=-1).unsqueeze(-1) * patches).sum(dim=-2)  # Eq. 2
        low, high = GATE_RANGE
        gate = low + (high - low) * torch.sigmoid(self.gate(dropped))
        return (1 - gate) * queries + gate * aggregate  # Eq. 3


def mixing_block(dim: int, block: str, mamba_version: str, num_heads: int, mamba_kwargs: dict) -> nn.Module:
    """The residual block a TSTAR layer mixes with: NeoX for the transformer baselines, else a Mamba V1 (`Mamba`,
    `BiMamba`) or V2 (`Mamba2`, `BiMamba2`) block, causal for `block="mamba"` (MambaMia Table 4: V1 vs V2)."""
    if block in TRANSFORMER_BLOCKS:
        return NeoXBlock(dim, num_heads=num_heads, causal=block == "transformer")
    if mamba_version == "v1":
        mamba_kwargs = {key: value for key, value in mamba_kwargs.items() if key != "head_dim"}
        return MambaBlock(dim, mixer="mamba" if block == "mamba" else "bimamba", **mamba_kwargs)
    return MambaBlock(dim, mixer="mamba2", **mamba_kwargs) if block == "mamba" else BiMamba2Block(dim, **mamba_kwargs)


class TSTARLayer(nn.Module):
    """One TSTAR layer: a mixing block, and for `block="mambamia"` gated aggregation into the queries, either after
    the block on its output (`"post_mixer"`) or on the block's normed input before its mixer (`"pre_mixer"`, the
    authors' public code), the residual then carrying the un-aggregated input."""

    def __init__(self, dim: int, block: str, query_interval: int, options: dict) -> None:
        """`options`: `mamba_version`, `num_heads`, `mamba_kwargs` (see `mixing_block`), `gpa_placement`,
        `gpa_dropout`."""
        super().__init__()
        self.mixer = mixing_block(dim, block, options["mamba_version"], options["num_heads"], options["mamba_kwargs"])
        self.placement = options["gpa_placement"]
        self.aggregation = (
            GatedAggregation(dim, query_interval, options["gpa_dropout"]) if block == "mambamia" else None
        )

    def aggregate(self, sequence: Tensor, query_positions: Tensor, group_positions: Tensor) -> Tensor:
        """`[B, T, N + G, D]` with each query replaced by its gated aggregate (out of place)."""
        patches = sequence[:, :, group_positions.clamp_min(0)]
        queries = self.aggregation(sequence[:, :, query_positions], patches, group_positions >= 0)
        return sequence.index_copy(2, query_positions, queries)

    def forward(
        self, sequence: Tensor, layout: tuple[Tensor, Tensor], per_frame: bool, state: MambaState | None = None
    ) -> tuple[Tensor, MambaState | None]:
        """`sequence [B, T, N + G, D]`, `layout` = (query positions `[G]`, group positions `[G, k]`), mixed over the
        time-major flattening (or per frame), continuing from `state` when given (causal Mamba streaming) ->
        `([B, T, N + G, D], new state or None)`. Gated aggregation: MambaMia Sec. 3.3.2, Eqs. 2-3."""
        batch, frames, length, channels = sequence.shape

        def flat(x: Tensor) -> Tensor:
            return x.reshape(batch * frames, length, channels) if per_frame else x.flatten(1, 2)

        if self.aggregation is not None and self.placement == "pre_mixer":
            normed = self.aggregate(self.mixer.norm(sequence), *layout)
            return sequence + self.mixer.mixer(flat(normed)).reshape(sequence.shape), None
        if state is None:
            mixed = self.mixer(flat(sequence))
        else:
            out = self.mixer.forward_with_state(flat(sequence), state)
            mixed, state = out.hidden, out.state
        mixed = mixed.reshape(sequence.shape)
        return (mixed if self.aggregation is None else self.aggregate(mixed, *layout)), state
