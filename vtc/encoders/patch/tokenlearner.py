"""TokenLearner inside a Hugging Face vision tower, after a chosen layer (STAC's in-ViT baseline protocol).

TokenLearner (Ryoo et al., NeurIPS 2021, Sec. 3.1, its ViT architectures) is inserted after layer `layer` of the ViT:
that layer's patch tokens are replaced by `num_tokens` learned tokens and the remaining layers run on those only.
The class token (CLIP, BLIP-2) is kept in front and passed on unchanged, so a Q-Former still cross-attends to
`[CLS] + learned tokens`. The learner is `vtc.compressors.tokenlearner`'s module; it is the only part of the tower
that trains (`learners` finds it, `tokens_per_layer` gives the token count after every layer).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from vtc.compressors.tokenlearner import TokenLearnerV10, TokenLearnerV11
from vtc.compressors.tome import tokens_after_merging
from vtc.utils.checks import check_choice, check_int

OPTION_DEFAULTS: dict[str, Any] = {"layer": 6, "num_tokens": 8, "version": "1.1", "bottleneck": 64}


def tokenlearner_options(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The encoder config's `tokenlearner` entry with `OPTION_DEFAULTS` filled in and checked; None stays None."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValueError(f"tokenlearner must be a mapping such as {{layer: 6, num_tokens: 8}}, got {options!r}")
    unknown = set(options) - set(OPTION_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown tokenlearner keys {sorted(unknown)}; expected some of {sorted(OPTION_DEFAULTS)}")
    merged = {**OPTION_DEFAULTS, **options}
    for key in ("layer", "num_tokens", "bottleneck"):
        check_int(f"tokenlearner.{key}", merged[key])
    check_choice("tokenlearner.version", merged["version"], ("1.0", "1.1"))
    return merged


def tokens_per_layer(
    patches: int, num_layers: int, tome_r: int = 0, tokenlearner: dict[str, Any] | None = None
) -> list[int]:
    """Patch tokens per frame (class token not counted) after each of `num_layers` layers, index 0 the embeddings.

    ToMe merges `min(r, tokens // 2)` in every layer (ToMe Sec. 3); a TokenLearner after layer `layer` leaves
    `num_tokens` from there on (TokenLearner Sec. 3.1).
    """
    counts = [patches]
    for index in range(1, num_layers + 1):
        count = tokens_after_merging(counts[-1], tome_r, 1)
        counts.append(tokenlearner["num_tokens"] if tokenlearner and index == tokenlearner["layer"] else count)
    return counts


class ViTTokenLearner(nn.Module):
    """`[B, C + N, D]` -> `[B, C + S, D]` (C = 1 with a class token, else 0): S learned tokens from the N patches."""

    def __init__(
        self, dim: int, num_tokens: int, class_token: bool, grid: tuple[int, int], version: str, bottleneck: int
    ) -> None:
        super().__init__()
        self.class_token = class_token
        if version == "1.1":
            self.learner: nn.Module = TokenLearnerV11(dim, num_tokens, bottleneck)
        else:
            self.learner = TokenLearnerV10(dim, num_tokens, grid)

    def forward(self, hidden: Tensor) -> Tensor:
        """`[B, C + N, D]` hidden states of a ViT layer -> `[B, C + S, D]`, computed in the learner's dtype."""
        start = int(self.class_token)
        dtype = next(self.parameters()).dtype
        learned = self.learner(hidden[:, start:].to(dtype)).to(hidden.dtype)
        return torch.cat([hidden[:, :start], learned], dim=1)


def encoder_layers(tower: nn.Module) -> nn.ModuleList:
    """The transformer layers of a Hugging Face vision tower (its encoder's `layers`)."""
    encoder = next(module for module in tower.modules() if isinstance(getattr(module, "layers", None), nn.ModuleList))
    return encoder.layers


def replace_output(layer: nn.Module, args: Any, output: Tensor) -> Tensor:
    """Forward hook of the layer a TokenLearner follows: its output `[B, C + N, D]` becomes `[B, C + S, D]`."""
    return layer.tokenlearner(output)


def insert_tokenlearner(
    tower: nn.Module, grid: tuple[int, int], layer: int, num_tokens: int, version: str, bottleneck: int
) -> ViTTokenLearner:
    """Insert a trainable TokenLearner after layer `layer` (1-based) of `tower`, in place; returns it.

    `grid` is the `(rows, cols)` patch grid (version 1.0's convolutions need it). The learner is registered on that
    layer as `tokenlearner` and applied by a forward hook, so the later layers see `C + num_tokens` tokens.
    """
    layers = encoder_layers(tower)
    if layer > len(layers):
        raise ValueError(f"tokenlearner.layer must be in 1..{len(layers)} (the tower's layers), got {layer}")
    if num_tokens > grid[0] * grid[1]:
        raise ValueError(f"tokenlearner.num_tokens must be <= {grid[0] * grid[1]} patches, got {num_tokens}")
    host = layers[layer - 1]
    if hasattr(host, "tokenlearner"):
        raise ValueError(f"layer {layer} of this tower already has a TokenLearner")
    class_token = any(hasattr(module, "class_embedding") for module in tower.modules())
    learner = ViTTokenLearner(tower.config.hidden_size, num_tokens, class_token, grid, version, bottleneck)
    host.tokenlearner = learner.to(next(host.parameters()).device)
    host.register_forward_hook(replace_output)
    return host.tokenlearner


def learners(module: nn.Module) -> list[ViTTokenLearner]:
    """The TokenLearners inserted anywhere in `module`."""
    return [child for child in module.modules() if isinstance(child, ViTTokenLearner)]
