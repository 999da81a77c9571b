"""Registered compressors inside loaded Hugging Face video LLMs: `compress_video_llm(model, compressor, processor)`.

The compressor runs after the host's vision tower and projector and before its language model, so that the model's
own `generate(**processor(videos=..., text=...))` answers from the compressed tokens. Hosts (dispatched on the model
class; one module each, with the algorithm in `vtc.integrations.tokens`):

| model class | module | what changes |
|---|---|---|
| `LlavaOnevisionForConditionalGeneration` | `llava_onevision` | `get_video_features`; placeholders |
| `Qwen2_5_VLForConditionalGeneration` | `qwen_vl` | `get_video_features`, `get_rope_index`, `generate`; placeholders |
| `Qwen3VLForConditionalGeneration` | `qwen_vl` | the same, with deepstack features; per-frame compressors only |

Every patch is on the instance (the class and other instances are untouched). Around it: `inputs` (the prompts and
placeholders of a compressed video), `predictor` (`Predictor`, `vtc predict`: encode once, answer many) and
`training` (`HFVideoLLM`: a compressor with LoRA trained inside a host by `vtc train`). docs/integrations.md has the
details.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vtc.compressors import Compressor
from vtc.integrations import llava_onevision, qwen_vl
from vtc.integrations.tokens import VideoTokenCompression
from vtc.lmm.model import build_compressor

__all__ = ["HOSTS", "VideoTokenCompression", "compress_video_llm", "host_of"]

HOSTS = {
    "LlavaOnevisionForConditionalGeneration": "llava_onevision",
    "Qwen2_5_VLForConditionalGeneration": "qwen2_5_vl",
    "Qwen3VLForConditionalGeneration": "qwen3_vl",
}


def host_of(model: nn.Module) -> str:
    """The host name of a loaded model (`HOSTS`); `TypeError` naming the supported classes for any other."""
    name = type(model).__name__
    if name not in HOSTS:
        raise TypeError(f"vtc.integrations supports {', '.join(HOSTS)}; got a {name}")
    return HOSTS[name]


def compress_video_llm(
    model: nn.Module, compressor: Compressor | str, processor: Any | None = None, pooling: bool = True, **config: Any
) -> VideoTokenCompression:
    """Run `compressor` inside `model` between its projector and its language model; returns the attached module.

    Args:
        model: a loaded model of a class in `HOSTS`.
        compressor: a built compressor over the language model's width, or a registered name, built with `config`
            over that width (one that takes a `grid` gets LLaVA-OneVision's fixed grid when built, and any whose
            `grid` is left None reads each Qwen video's grid when it runs).
        processor: the model's processor; when given, it writes the compressed number of video placeholders.
        pooling: LLaVA-OneVision only: keep the model's own 2 x 2 pooling before the compressor (True) or not.

    Raises:
        TypeError: an unsupported model class.
        ValueError: a compressor of another width, one that needs the encoder's attention, `pooling=False` on a
            host without pooling, or a model that already has one.
    """
    host = host_of(model)
    if not pooling and host != "llava_onevision":
        raise ValueError(f"pooling=False is a LLaVA-OneVision option; {type(model).__name__} has no pooling to skip")
    width = model.config.text_config.hidden_size
    if isinstance(compressor, str):
        fixed_grid = llava_onevision.frame_grid(model, pooling) if host == "llava_onevision" else None
        compressor = build_compressor({"name": compressor, **config}, width, fixed_grid)
    elif config:
        raise ValueError(f"config {sorted(config)} is for a compressor name; {compressor.registry_name} is built")
    if compressor.dim != width:
        raise ValueError(f"the compressor reads dim={compressor.dim} tokens; this model's projector gives {width}")
    if compressor.uses_attention:
        raise ValueError(f"{compressor.registry_name} needs the vision encoder's attention, which hosts do not expose")
    if hasattr(model.model, "video_token_compression"):
        raise ValueError("this model already runs a compressor: load it again to use another")
    compressor.to(device=model.device).train(model.training)
    if host == "llava_onevision":
        return llava_onevision.attach(model, compressor, processor, pooling)
    return qwen_vl.attach(model, compressor, processor, per_frame=host == "qwen3_vl")
