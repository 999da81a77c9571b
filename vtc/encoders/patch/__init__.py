"""Token Merging inside Hugging Face vision towers, laid out as ToMe's own `tome/patch/<host>.py`.

`patch_vision_tower(model, r)` picks the host adapter by the tower's transformers family (its config's `model_type`)
and replaces every encoder layer's forward by ToMe's: proportional attention (ToMe Eq. 1), then `r` tokens merged
with the attention keys (mean over heads) as the metric, then the MLP. The algorithm is `vtc.compressors.tome`'s; a
host adapter (`clip`, `blip2`) only says how its attention module projects queries, keys and values.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from vtc.compressors.tome import merge_after_class_token
from vtc.encoders.patch import blip2, clip

Attend = Callable[[nn.Module, Tensor, Tensor | None], tuple[Tensor, Tensor]]
HOSTS: dict[str, Attend] = {model_type: host.attend for host in (blip2, clip) for model_type in host.MODEL_TYPES}
LAYER_PARTS = ("self_attn", "layer_norm1", "layer_norm2", "mlp")


@dataclass
class ToMeState:
    """Shared by the patched layers of one tower: merges per layer, the class token, the host's attention, and the
    sizes `[B, N, 1]` of the current forward pass (None before its first layer)."""

    r: int
    class_token: bool
    attend: Attend
    size: Tensor | None = None


def patch_vision_tower(model: nn.Module, r: int) -> nn.Module:
    """Apply ToMe to a Hugging Face vision tower in place; returns it.

    Supported: the vision towers of CLIP, SigLIP and BLIP-2 (`CLIPVisionModel`, `SiglipVisionModel`,
    `Blip2VisionModel`, ...). Each layer merges `r` tokens (at most half of them); the class token (CLIP, BLIP-2) is
    never merged and never merged into, so `last_hidden_state` has `r` fewer tokens per layer. Attention is computed
    eagerly in the patched layers, so the model's attention implementation no longer matters for them. Calling it
    again changes `r`.
    """
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in HOSTS:
        raise ValueError(
            f"ToMe cannot patch {type(model).__name__} (model_type {model_type!r}); "
            f"supported vision towers: {', '.join(sorted(HOSTS))}"
        )
    encoder = next(module for module in model.modules() if isinstance(getattr(module, "layers", None), nn.ModuleList))
    if isinstance(getattr(encoder, "_tome_state", None), ToMeState):
        encoder._tome_state.r = r
        return model
    class_token = any(hasattr(module, "class_embedding") for module in model.modules())
    state = ToMeState(r, class_token, HOSTS[model_type])
    encoder._tome_state = state
    encoder.register_forward_pre_hook(lambda module, args: setattr(state, "size", None))
    for layer in encoder.layers:
        missing = [part for part in LAYER_PARTS if not hasattr(layer, part)]
        if missing:
            raise ValueError(f"{type(layer).__name__} has no {', '.join(missing)}: not a pre-norm ViT layer")
        layer._tome_state = state
        layer.forward = types.MethodType(tome_layer_forward, layer)
    return model


def tome_layer_forward(
    layer: nn.Module, hidden_states: Tensor, attention_mask: Tensor | None = None, **kwargs: Any
) -> Tensor:
    """A pre-norm ViT layer with proportional attention and a ToMe merge between attention and MLP.

    `hidden_states [B, N, D]` -> `[B, N - r', D]`, `r' = min(r, mergeable tokens // 2)`.
    """
    if attention_mask is not None:
        raise ValueError("ToMe-patched vision layers take no attention_mask (their token count changes per layer)")
    state: ToMeState = layer._tome_state
    attended, keys = state.attend(layer.self_attn, layer.layer_norm1(hidden_states), state.size)
    hidden_states = hidden_states + attended
    hidden_states, state.size = merge_after_class_token(
        hidden_states, state.r, keys.mean(dim=1), state.size, state.class_token
    )
    return hidden_states + layer.mlp(layer.layer_norm2(hidden_states))
