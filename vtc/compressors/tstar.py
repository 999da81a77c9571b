"""`"tstar"` and its preset `"mambamia"`: TSTAR query-token compression with MambaMia blocks (Kim & Seo 2025).

A learnable query token follows every `query_interval` patches of the flattened `T * N` sequence; `num_layers`
blocks mix the sequence; only the query positions are kept, then every `round(1 / frame_ratio)`-th frame's queries.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.blocks import NeoXBlock
from vtc.compressors.card import Family, Knob, MethodCard, frames_down, tokens_down
from vtc.compressors.grid import ceil_div
from vtc.compressors.ops import compress_valid_frames, per_frame_output
from vtc.ssm import MambaBlock
from vtc.utils.checks import check_choice, check_float, check_int

BLOCKS = ("mambamia", "bimamba", "mamba", "transformer", "bitransformer")
GATE_RANGE = (0.01, 0.99)


def query_layout(tokens_per_frame: int, query_interval: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where patches and queries sit in one frame's sequence of `N + G` positions, `G = ceil(N / k)`.

    Returns:
        `order [N + G]`: index into `cat(patches [N], queries [G])` giving the frame's sequence;
        `query_positions [G]`: the queries' positions in that sequence;
        `group_positions [G, k]`: the positions of each query's preceding patches, -1 where the last group is short.
    """
    groups = ceil_div(tokens_per_frame, query_interval)
    order, query_positions, group_positions = [], [], []
    for group in range(groups):
        patches = list(range(group * query_interval, min((group + 1) * query_interval, tokens_per_frame)))
        start = len(order)
        order += [*patches, tokens_per_frame + group]
        query_positions.append(len(order) - 1)
        group_positions.append(list(range(start, start + len(patches))) + [-1] * (query_interval - len(patches)))
    return torch.tensor(order), torch.tensor(query_positions), torch.tensor(group_positions)


class GatedAggregation(nn.Module):
    """MambaMia's gated patch aggregation (paper eqs. 2-3), applied to each query and its k preceding patches.

    alpha = softmax(W_a q + b_a) over the k patches, a = sum_i alpha_i x_i, g = sigmoid(W_g q + b_g) squeezed into
    [0.01, 0.99] (one scalar gate per query), q <- (1 - g) q + g a. W_a, W_g start small so alpha starts near
    uniform and g near 0.5.
    """

    def __init__(self, dim: int, query_interval: int) -> None:
        super().__init__()
        self.weights = nn.Linear(dim, query_interval)
        self.gate = nn.Linear(dim, 1)
        for linear in (self.weights, self.gate):
            nn.init.normal_(linear.weight, std=1e-3)
            nn.init.zeros_(linear.bias)

    def forward(self, queries: Tensor, patches: Tensor, patch_valid: Tensor) -> Tensor:
        """`queries [..., G, D]`, `patches [..., G, k, D]`, `patch_valid [G, k]` -> updated queries `[..., G, D]`."""
        logits = self.weights(queries).masked_fill(~patch_valid, float("-inf"))
        aggregate = (torch.softmax(logits, dim=-1).unsqueeze(-1) * patches).sum(dim=-2)
        low, high = GATE_RANGE
        gate = low + (high - low) * torch.sigmoid(self.gate(queries))
        return (1 - gate) * queries + gate * aggregate


class TSTARLayer(nn.Module):
    """One mixing block (Mamba, BiMamba or NeoX transformer), followed by gated aggregation for `"mambamia"`."""

    def __init__(self, dim: int, block: str, query_interval: int, num_heads: int, mamba_kwargs: dict) -> None:
        super().__init__()
        if block in ("transformer", "bitransformer"):
            self.mixer = NeoXBlock(dim, num_heads=num_heads, causal=block == "transformer")
        else:
            self.mixer = MambaBlock(dim, mixer="mamba" if block == "mamba" else "bimamba", **mamba_kwargs)
        self.aggregation = GatedAggregation(dim, query_interval) if block == "mambamia" else None


@register_compressor("tstar")
class TSTAR(Compressor):
    """TSTAR: learnable queries interleaved with patches, sequence mixing, keep the queries of sampled frames.

    Args:
        dim: token width D.
        query_interval: k, patches per query (paper: 10). When N is not a multiple of k, each frame's last group
            is shorter (its query follows the frame's last patch); no pad token enters the sequence, so a frame
            gives `ceil(N / k)` queries.
        num_layers: mixing blocks.
        frame_ratio: secondary frame-level sampling keeps every `round(1 / frame_ratio)`-th frame's queries,
            starting with the first (paper: 1/3, so 128 x 100 -> 430 and 256 x 100 -> 860 tokens).
        block: "mambamia" (BiMamba + gated aggregation, the paper's method), "bimamba", "mamba" (causal),
            "transformer" (causal) or "bitransformer" (GPT-NeoX-style baselines).
        per_frame: compress each frame independently (the paper's per-frame baselines).
        num_heads: attention heads of the transformer blocks.
        d_state, d_conv, expand: Mamba sizes.

    Streams (`init_state` / `step_frame`, memory constant in frames) with `block="mamba"` or `per_frame=True`.
    """

    card = MethodCard(
        family=Family.STATE_SPACE,
        knobs=(
            Knob("frame_ratio", frames_down, lambda stride, _: 1 / stride),  # keeps every stride-th frame's queries
            Knob("query_interval", tokens_down),
        ),
        presets={"mambamia": {"block": "mambamia", "query_interval": 10, "frame_ratio": 1 / 3}},
        paper_config={"dim": 1024, "query_interval": 10, "num_layers": 14, "frame_ratio": 1 / 3, "block": "mambamia"},
        paper_source="MambaMia Sec. 4 (k = 10, s = 1/3, 100 tokens a frame), supplement (~100M parameters: 14 layers)",
        streaming=lambda config: config["per_frame"] or config["block"] == "mamba",
    )

    def __init__(
        self,
        dim: int,
        query_interval: int = 10,
        num_layers: int = 2,
        frame_ratio: float = 1 / 3,
        block: str = "mambamia",
        per_frame: bool = False,
        num_heads: int = 8,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
    ) -> None:
        super().__init__(dim)
        check_choice("block", block, BLOCKS)
        check_int("query_interval", query_interval)
        check_int("num_layers", num_layers)
        check_float("frame_ratio", frame_ratio, 0, 1, include_low=False)
        check_int("num_heads", num_heads)
        self.query_interval, self.block, self.per_frame = query_interval, block, per_frame
        self.frame_stride = round(1 / frame_ratio)
        self.query = nn.Parameter(torch.randn(dim) * dim**-0.5)
        mamba_kwargs = {"d_state": d_state, "d_conv": d_conv, "expand": expand}
        self.layers = nn.ModuleList(
            TSTARLayer(dim, block, query_interval, num_heads, mamba_kwargs) for _ in range(num_layers)
        )

    def interleave(self, tokens: Tensor) -> Tensor:
        """`[B, T, N, D]` -> `[B, T, N + G, D]`, a query after every k patches of each frame."""
        batch, frames, per_frame, _ = tokens.shape
        order, _, _ = query_layout(per_frame, self.query_interval)
        queries = self.query.to(tokens.dtype).expand(batch, frames, ceil_div(per_frame, self.query_interval), -1)
        return torch.cat([tokens, queries], dim=2)[:, :, order.to(tokens.device)]

    def mix(self, sequence: Tensor, per_frame: int, states: list | None = None) -> tuple[Tensor, list | None]:
        """Run the layers over `[B, T, N + G, D]` (time-major flattening, or per frame); returns the mixed
        sequence and, when `states` is given (causal Mamba streaming), the layers' new states."""
        batch, frames, length, channels = sequence.shape
        _, query_positions, group_positions = query_layout(per_frame, self.query_interval)
        query_positions, group_positions = query_positions.to(sequence.device), group_positions.to(sequence.device)
        new_states = []
        for number, layer in enumerate(self.layers):
            flat = sequence.reshape(batch * frames, length, channels) if self.per_frame else sequence.flatten(1, 2)
            if states is None:
                flat = layer.mixer(flat)
            else:
                out = layer.mixer.forward_with_state(flat, states[number])
                flat = out.hidden
                new_states.append(out.state)
            sequence = flat.reshape(batch, frames, length, channels)
            if layer.aggregation is not None:
                patches = sequence[:, :, group_positions.clamp_min(0)]
                queries = layer.aggregation(sequence[:, :, query_positions], patches, group_positions >= 0)
                sequence = sequence.clone()
                sequence[:, :, query_positions] = queries
        return sequence, (new_states if states is not None else None)

    def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
        """`[B, T, N, D]` -> `[B, ceil(T / stride) * ceil(N / k), D]`, frame-major; padded frames never enter."""
        return compress_valid_frames(self._compress_videos, tokens, timestamps, frame_mask)

    def _compress_videos(self, tokens: Tensor, timestamps: Tensor) -> CompressedTokens:
        per_frame = tokens.shape[2]
        _, query_positions, _ = query_layout(per_frame, self.query_interval)
        mixed, _ = self.mix(self.interleave(tokens), per_frame)
        sampled = torch.arange(0, tokens.shape[1], self.frame_stride, device=tokens.device)
        queries = mixed[:, sampled][:, :, query_positions.to(tokens.device)]
        out = per_frame_output(queries, timestamps[:, sampled], torch.ones_like(timestamps[:, sampled], dtype=bool))
        out.frame_index = sampled.repeat_interleave(queries.shape[2]).expand(tokens.shape[0], -1)
        return out

    def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
        return ceil_div(num_frames, self.frame_stride) * ceil_div(tokens_per_frame, self.query_interval)

    def init_state(self, batch_size: int, device: torch.device | None = None) -> dict[str, Any]:
        """Per-layer Mamba states (none when `per_frame`) and the number of frames seen."""
        if not self.supports_streaming:
            raise NotImplementedError(f"block={self.block!r} looks at future frames; stream with 'mamba' or per_frame")
        layers = None if self.per_frame else [layer.mixer.init_state(batch_size, device) for layer in self.layers]
        return {"layers": layers, "frames_seen": 0}

    def step_frame(self, frame_tokens: Tensor, timestamp: Tensor, state: dict) -> tuple[CompressedTokens, dict]:
        """`[B, N, D]` at `timestamp [B]` -> that frame's `ceil(N / k)` queries if it is a sampled frame (else no
        tokens), and the new state."""
        frame = frame_tokens.unsqueeze(1)
        timestamps = timestamp.float().unsqueeze(1)
        _, query_positions, _ = query_layout(frame.shape[2], self.query_interval)
        mixed, layers = self.mix(self.interleave(frame), frame.shape[2], state["layers"])
        index = state["frames_seen"]
        sampled = index % self.frame_stride == 0
        queries = mixed[:, :, query_positions.to(frame.device)]
        out = per_frame_output(queries, timestamps, torch.full_like(timestamps, sampled, dtype=torch.bool))
        if not sampled:
            out = CompressedTokens(out.tokens[:, :0], out.mask[:, :0], out.frame_index[:, :0], out.timestamps[:, :0])
        out.frame_index = torch.full_like(out.frame_index, index)
        return out, {"layers": layers, "frames_seen": index + 1}
