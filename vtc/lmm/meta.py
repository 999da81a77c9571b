"""A full-size dry run: a `VideoLMM` built on the meta device from config folders, with no weights and no memory.

`build_meta_model(config)` runs the ordinary `VideoLMM` constructor while `weightless_loading` makes every Hugging
Face `from_pretrained` build its model from the folder's `config.json` alone (`from_config`) on the meta device: a
folder needs its `config.json` and, for the language model, its tokenizer files, never its weights. 4-bit loading is
turned off (bitsandbytes needs a GPU and real weights; parameter counts are those of the full-precision model).
`parameter_counts` and `visual_tokens` then give what the configured model would train and hand its LLM.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from vtc.lmm.config import load_config
from vtc.lmm.model import VideoLMM

PARTS = ("encoder", "qformer", "compressor", "projector", "saliency_head", "llm")


def from_config_on_meta(cls: type, path: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """What `cls.from_pretrained(path, ...)` builds, from `path/config.json` alone, on the meta device (the loading
    options `args` and `kwargs` concern weights and are ignored)."""
    from transformers import AutoConfig

    with torch.device("meta"):
        if hasattr(cls, "_model_mapping"):  # an Auto class: the concrete class comes from the config
            return cls.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
        return cls._from_config(cls.config_class.from_pretrained(path, local_files_only=True))


@contextlib.contextmanager
def weightless_loading() -> Iterator[None]:
    """Within the block, `from_pretrained` of every transformers model class (and Auto class) is
    `from_config_on_meta`; the original methods are put back on exit."""
    from transformers import PreTrainedModel
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    originals = {owner: owner.__dict__["from_pretrained"] for owner in (PreTrainedModel, _BaseAutoModelClass)}
    try:
        for owner in originals:
            owner.from_pretrained = classmethod(from_config_on_meta)
        yield
    finally:
        for owner, method in originals.items():
            owner.from_pretrained = method


def without_4bit(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a model config with 4-bit loading off for the language model and the encoder."""
    plain = copy.deepcopy(dict(config))
    if isinstance(plain.get("llm"), Mapping):
        plain["llm"] = {**plain["llm"], "load_in_4bit": False}
    if isinstance(plain.get("encoder"), Mapping) and "load_in_4bit" in plain["encoder"]:
        plain["encoder"] = {**plain["encoder"], "load_in_4bit": False}
    return plain


def build_meta_model(config: Mapping[str, Any]) -> VideoLMM:
    """The `VideoLMM` of a model config (see `vtc.lmm.config.DEFAULTS`) on the meta device, without weights."""
    with weightless_loading(), torch.device("meta"):
        return VideoLMM(load_config(without_4bit(config)))


def unique_parameters(module: nn.Module | None) -> list[nn.Parameter]:
    """`module`'s parameters, each once (none for None)."""
    return [] if module is None else list(module.parameters())


def parameter_counts(model: VideoLMM) -> dict[str, dict[str, int]]:
    """`{part: {"total", "trainable"}}` for each part of `model` (`PARTS`) and `"all"`, each parameter counted once
    (BLIP-2's encoder shares no weights with its language model, so the parts add up to the whole)."""
    counts = {}
    for part in PARTS:
        parameters = unique_parameters(getattr(model, part))
        counts[part] = {
            "total": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
        }
    every = list(model.parameters())
    counts["all"] = {
        "total": sum(p.numel() for p in every),
        "trainable": sum(p.numel() for p in every if p.requires_grad),
    }
    return counts


def tokens_per_frame(model: VideoLMM) -> int:
    """Tokens per frame the compressor reads: the qformer's queries, else the encoder's `tokens_per_frame` (after
    any in-ViT ToMe or TokenLearner); `ValueError` for a model on cached features, whose count only the data knows."""
    if model.qformer is not None:
        return model.qformer.num_queries
    if model.encoder is None:
        raise ValueError("a model on cached features (feature_dim) has no encoder to count tokens per frame from")
    return model.encoder.tokens_per_frame


def visual_tokens(model: VideoLMM, num_frames: int | None = None) -> int:
    """Visual tokens the language model reads for one video of `num_frames` frames (the config's when None)."""
    frames = int(model.config["num_frames"] if num_frames is None else num_frames)
    return model.compressor.num_output_tokens(frames, tokens_per_frame(model))
