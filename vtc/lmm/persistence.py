"""A `VideoLMM` checkpoint: its config and only the weights it trained, written atomically, read back on its base.

A checkpoint folder holds `config.json`, the qformer (when configured), the compressor's own folder, the projector
(and saliency head), the LoRA adapters or the full language model's weights, and the encoder's weights when it
trains or when its class `stores_weights_in_checkpoint` (built from its config alone). The pretrained weights stay
in their Hugging Face folders, named by the config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.compressors import Compressor
from vtc.compressors.base import WEIGHTS_NAME
from vtc.encoders import ENCODERS, VisionEncoder
from vtc.utils.io import atomic_save_safetensors, atomic_write_text

CONFIG_NAME = "config.json"
COMPRESSOR_FOLDER = "compressor"
PROJECTOR_NAME = "projector.safetensors"
ADAPTER_NAME = "adapter.safetensors"
LLM_WEIGHTS_NAME = "llm.safetensors"
ENCODER_WEIGHTS_NAME = "encoder.safetensors"
SALIENCY_NAME = "saliency_head.safetensors"
QFORMER_NAME = "qformer.safetensors"


class CheckpointedModel(Protocol):
    """The parts of a `VideoLMM` that a checkpoint writes and reads."""

    config: dict[str, Any]
    encoder: VisionEncoder | None
    qformer: nn.Module | None
    compressor: Compressor
    projector: nn.Module
    saliency_head: nn.Module | None
    llm: nn.Module

    @property
    def language_model(self) -> nn.Module:
        """The Hugging Face model (inside `llm`'s peft wrapper when LoRA is on)."""

    @property
    def stores_encoder(self) -> bool:
        """Whether the checkpoint holds the encoder's weights."""


def detached(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous copies of a state dict (no shared storage, as safetensors requires)."""
    return {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}


def encoder_stores_weights(encoder_type: str | None) -> bool:
    """Whether the registered encoder class of `encoder_type` sets `stores_weights_in_checkpoint`."""
    factory = ENCODERS.get(encoder_type)
    encoder_class = getattr(factory, "__self__", factory)  # a classmethod factory is bound to its class
    is_encoder_class = isinstance(encoder_class, type) and issubclass(encoder_class, VisionEncoder)
    return is_encoder_class and encoder_class.stores_weights_in_checkpoint


def encoder_weights(encoder: VisionEncoder) -> dict[str, Tensor]:
    """What a checkpoint keeps of an encoder: all of it when its class `stores_weights_in_checkpoint`, else only the
    parameters that train (an in-ViT TokenLearner's, not the pretrained tower's billion)."""
    state = encoder.state_dict()
    if type(encoder).stores_weights_in_checkpoint:
        return state
    return {name: state[name] for name, parameter in encoder.named_parameters() if parameter.requires_grad}


def load_encoder_weights(encoder: VisionEncoder, weights: Mapping[str, Tensor]) -> None:
    """Load what `encoder_weights` saved into an encoder built on its base; `ValueError` when the saved names are not
    exactly what this encoder keeps."""
    expected = set(encoder_weights(encoder))
    if set(weights) != expected:
        missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
        raise ValueError(f"encoder weights do not match the encoder: missing {missing[:5]}, extra {unexpected[:5]}")
    encoder.load_state_dict(weights, strict=False)


def save_checkpoint(model: CheckpointedModel, directory: str | os.PathLike) -> None:
    """Write `model`'s config and only its trained weights (qformer, compressor, projector, saliency head, LoRA
    adapters or the full language model, the encoder when `stores_encoder`), each file atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if model.qformer is not None:
        atomic_save_safetensors(detached(model.qformer.state_dict()), directory / QFORMER_NAME)
    model.compressor.save_pretrained(directory / COMPRESSOR_FOLDER)
    atomic_save_safetensors(detached(model.projector.state_dict()), directory / PROJECTOR_NAME)
    if model.saliency_head is not None:
        atomic_save_safetensors(detached(model.saliency_head.state_dict()), directory / SALIENCY_NAME)
    mode = model.config["llm"]["mode"]
    if mode == "lora":
        from peft import get_peft_model_state_dict

        atomic_save_safetensors(detached(get_peft_model_state_dict(model.llm)), directory / ADAPTER_NAME)
    elif mode == "full":
        atomic_save_safetensors(detached(model.language_model.state_dict()), directory / LLM_WEIGHTS_NAME)
    if model.stores_encoder:
        atomic_save_safetensors(detached(encoder_weights(model.encoder)), directory / ENCODER_WEIGHTS_NAME)
    atomic_write_text(directory / CONFIG_NAME, json.dumps(model.config, indent=2, sort_keys=True, default=str))


def checkpoint_config(directory: str | os.PathLike, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The config saved in `directory`, with `overrides` replacing entries (nested dicts merged). An encoder whose
    weights the checkpoint stores loses its `path`: its weights file need not stay beside the checkpoint."""
    config = json.loads((Path(directory) / CONFIG_NAME).read_text())
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(config.get(key), dict) else value
    encoder = config.get("encoder") or {}
    if encoder_stores_weights(encoder.get("type")):
        config["encoder"] = {key: value for key, value in encoder.items() if key != "path"}
    return config


def load_checkpoint_weights(model: CheckpointedModel, directory: str | os.PathLike) -> None:
    """Load the weights `save_checkpoint` wrote into `model`, built from the checkpoint's config on its base."""
    directory = Path(directory)
    if model.qformer is not None:
        model.qformer.load_state_dict(load_file(str(directory / QFORMER_NAME)), strict=True)
    model.compressor.load_state_dict(load_file(str(directory / COMPRESSOR_FOLDER / WEIGHTS_NAME)), strict=True)
    model.projector.load_state_dict(load_file(str(directory / PROJECTOR_NAME)), strict=True)
    if model.saliency_head is not None:
        model.saliency_head.load_state_dict(load_file(str(directory / SALIENCY_NAME)), strict=True)
    mode = model.config["llm"]["mode"]
    if mode == "lora":
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model.llm, load_file(str(directory / ADAPTER_NAME)))
        if result.unexpected_keys:
            raise ValueError(f"{directory / ADAPTER_NAME} has unexpected keys {result.unexpected_keys[:5]}")
    elif mode == "full":
        model.language_model.load_state_dict(load_file(str(directory / LLM_WEIGHTS_NAME)), strict=True)
    if model.stores_encoder:
        load_encoder_weights(model.encoder, load_file(str(directory / ENCODER_WEIGHTS_NAME)))
