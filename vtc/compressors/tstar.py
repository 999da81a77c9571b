"""`"tstar"` and its preset `"mambamia"`: TSTAR query-token compression with MambaMia blocks (Kim & Seo 2025).

A learnable query token follows every `query_interval` patches of the flattened `T * N` sequence; `num_layers`
blocks mix the sequence; only the query positions are kept, then every `round(1 / frame_ratio)`-th frame's queries.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors.base import CompressedTokens, Compressor, register_compressor
from vtc.compressors.blocks import TSTARLayer
from vtc.compressors.card import Family, Knob, MethodCard, frames_down, tokens_down
from vtc.compressors.grid import ceil_div
from vtc.compressors.ops import compress_valid_frames, per_frame_output
from vtc.utils.checks import check_choice, check_float, check_int

BLOCKS = ("mambamia", "bimamba", "mamba", "transformer", "bitransformer")
MAMBA_VERSIONS = ("v1", "v2")
GPA_PLACEMENTS = ("post_mixer", "pre_mixer")


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
        mamba_version: "v1" (Mamba, Gu & Dao 2023; the paper's main results) or "v2" (Mamba-2, Dao & Gu 2024) for
            the Mamba blocks: Table 4 ablates the two ("both versions can be seamlessly integrated").
        gpa_placement: where `block="mambamia"` applies gated patch aggregation. "post_mixer" (default): on the
            block's output, so the query token carried on is Eq. 3's q_new = (1 - g) q + g a, the paper's "how much
            neighboring token information replaces the original query representation". "pre_mixer": on the block's
            RMS-normed input before its mixer, the residual carrying the original query (the authors' public code,
            naver-ai/mambamia's `MambaMia2Block`, there with `gpa_dropout=0.1`).
        gpa_dropout: dropout on the query entering the aggregation weights and gate (paper: none stated).
        num_heads: attention heads of the transformer blocks.
        d_state, d_conv, expand: Mamba sizes; head_dim: Mamba-2 head size (`expand * dim` must be a multiple).

    Streams (`init_state` / `step_frame`, memory constant in frames) with `block="mamba"` or `per_frame=True`.
    """

    card = MethodCard(
        family=Family.STATE_SPACE,
        knobs=(
            Knob("frame_ratio", frames_down, lambda stride, _: 1 / stride),  # keeps every stride-th frame's queries
            Knob("query_interval", tokens_down),
        ),
        presets={"mambamia": {"block": "mambamia", "query_interval": 10, "frame_ratio": 1 / 3}},
        paper_config={
            "dim": 1024,
            "query_interval": 10,
            "num_layers": 14,
            "frame_ratio": 1 / 3,
            "block": "mambamia",
            "mamba_version": "v1",
            "gpa_placement": "post_mixer",
        },
        paper_source="MambaMia Sec. 3.3.2 (Eqs. 2-3), Sec. 4 (k = 10, s = 1/3, 100 tokens a frame; V1, Table 4), "
        "supplement (~100M parameters: 14 layers)",
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
        mamba_version: str = "v1",
        gpa_placement: str = "post_mixer",
        gpa_dropout: float = 0.0,
        num_heads: int = 8,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        head_dim: int = 64,
    ) -> None:
        super().__init__(dim)
        check_choice("block", block, BLOCKS)
        check_int("query_interval", query_interval)
        check_int("num_layers", num_layers)
        check_float("frame_ratio", frame_ratio, 0, 1, include_low=False)
        check_choice("mamba_version", mamba_version, MAMBA_VERSIONS)
        check_choice("gpa_placement", gpa_placement, GPA_PLACEMENTS)
        check_float("gpa_dropout", gpa_dropout, 0, 1)
        check_int("num_heads", num_heads)
        check_int("head_dim", head_dim)
        self.query_interval, self.block, self.per_frame = query_interval, block, per_frame
        self.frame_stride = round(1 / frame_ratio)
        self.query = nn.Parameter(torch.randn(dim) * dim**-0.5)
        options = {
            "mamba_version": mamba_version,
            "num_heads": num_heads,
            "mamba_kwargs": {"d_state": d_state, "d_conv": d_conv, "expand": expand, "head_dim": head_dim},
            "gpa_placement": gpa_placement,
            "gpa_dropout": gpa_dropout,
        }
        self.layers = nn.ModuleList(TSTARLayer(dim, block, query_interval, options) for _ in range(num_layers))

    def interleave(self, tokens: Tensor) -> Tensor:
        """`[B, T, N, D]` -> `[B, T, N + G, D]`, a query after every k patches of each frame."""
        batch, frames, per_frame, _ = tokens.shape
        order, _, _ = query_layout(per_frame, self.query_interval)
        queries = self.query.to(tokens.dtype).expand(batch, frames, ceil_div(per_frame, self.query_interval), -1)
        return torch.cat([tokens, queries], dim=2)[:, :, order.to(tokens.device)]

    def mix(self, sequence: Tensor, per_frame: int, states: list | None = None) -> tuple[Tensor, list | None]:
        """Run the layers over `[B, T, N + G, D]` (time-major flattening, or per frame); returns the mixed
        sequence and, when `states` is given (causal Mamba streaming), the layers' new states."""
        _, query_positions, group_positions = query_layout(per_frame, self.query_interval)
        layout = (query_positions.to(sequence.device), group_positions.to(sequence.device))
        new_states = []
        for number, layer in enumerate(self.layers):
            sequence, state = layer(sequence, layout, self.per_frame, None if states is None else states[number])
            new_states.append(state)
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
