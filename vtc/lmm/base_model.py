"""A pretrained base video LLM that methods adapt from, as the papers start from BLIP-2 or LLaVA.

A base folder holds `llm/` (the language model and its tokenizer, time tokens included, as a Hugging Face folder),
`encoder.safetensors` (a copy of the encoder's weights file, when its config names one), `parts.safetensors` (the
qformer, the projector, the saliency head, and an encoder built from its config alone) and `base.json` (the model
config it was trained with, and its model card). A run names it with `model.init_from: DIR`: its model config is the
base's with the run's `model.lmm` keys on top (typically a compressor, `llm.mode: lora` and a frozen qformer), and
its weights start from the base's; the compressor starts fresh.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.lmm.model import build_model
from vtc.lmm.persistence import detached
from vtc.utils.io import atomic_save_safetensors, atomic_write_text

BASE_CONFIG_NAME = "base.json"
PARTS_NAME = "parts.safetensors"
ENCODER_NAME = "encoder.safetensors"
LLM_FOLDER = "llm"
# The base's parts that `parts.safetensors` holds, by attribute of `VideoLMM`.
BASE_PARTS = ("encoder", "qformer", "projector", "saliency_head")


def base_parts(model: Any) -> dict[str, nn.Module]:
    """The parts of `model` that `parts.safetensors` stores: its qformer, projector and saliency head when present,
    and its encoder when a checkpoint would store it (`stores_encoder`) and no weights file (`path`) rebuilds it."""
    parts = {name: getattr(model, name, None) for name in BASE_PARTS}
    if not model.stores_encoder or (model.config.get("encoder") or {}).get("path"):
        parts["encoder"] = None
    return {name: part for name, part in parts.items() if part is not None}


def save_base_model(model: Any, directory: str | os.PathLike, card: Mapping[str, Any]) -> Path:
    """Write `model` (a `VideoLMM`) as a base folder with its model `card` (training command, steps, data, accuracy):
    built in a temporary folder beside `directory` and renamed into place, so a base is never half-written. An
    existing folder is refused."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists: a base is never overwritten; choose another folder")
    staging = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.language_model.save_pretrained(staging / LLM_FOLDER, safe_serialization=True)
    model.tokenizer.save_pretrained(staging / LLM_FOLDER)
    state = {
        f"{name}.{key}": value for name, part in base_parts(model).items() for key, value in part.state_dict().items()
    }
    atomic_save_safetensors(detached(state), staging / PARTS_NAME)
    config = {key: value for key, value in model.config.items() if key != "compressor"}
    config["llm"] = {key: value for key, value in config["llm"].items() if key != "path"}
    encoder = dict(config.get("encoder") or {})
    if encoder.get("path"):
        shutil.copyfile(encoder["path"], staging / ENCODER_NAME)
        encoder["path"] = ENCODER_NAME  # relative to the base folder
    config["encoder"] = encoder or None
    atomic_write_text(staging / BASE_CONFIG_NAME, json.dumps({"model": config, "card": dict(card)}, indent=2))
    staging.rename(directory)
    return directory


def base_model_config(directory: str | os.PathLike, lmm: Mapping[str, Any]) -> dict[str, Any]:
    """The model config of a run that adapts from the base in `directory`: the base's, with the keys of `lmm` on top
    (nested dicts merged one level), `llm.path` its `llm/` folder, the encoder's `path` its weights copy. Settings of
    a part the base does not have (`qformer: {frozen: true}` over a base of patch tokens) are left out."""
    directory = Path(directory)
    if not (directory / BASE_CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{directory} is not a base model folder: {BASE_CONFIG_NAME} is missing")
    config = json.loads((directory / BASE_CONFIG_NAME).read_text())["model"]
    for key, value in lmm.items():
        if isinstance(value, Mapping) and key in config and config[key] is None:
            continue
        is_nested = isinstance(value, Mapping) and isinstance(config.get(key), Mapping)
        config[key] = {**config[key], **value} if is_nested else value
    config["llm"] = {**config.get("llm", {}), "path": str((directory / LLM_FOLDER).resolve())}
    encoder = config.get("encoder") or {}
    if encoder.get("path") == ENCODER_NAME:
        config["encoder"] = {**encoder, "path": str((directory / ENCODER_NAME).resolve())}
    return config


def load_base_model(directory: str | os.PathLike, lmm: Mapping[str, Any] | None = None) -> Any:
    """The base in `directory` as a `VideoLMM` (`base_model_config` with `lmm` on top, e.g. a training-free
    compressor), its weights loaded (`load_base_weights`)."""
    model = build_model(base_model_config(directory, lmm or {}))
    load_base_weights(model, directory)
    return model


def load_base_weights(model: Any, directory: str | os.PathLike) -> list[str]:
    """Load the base's stored parts into `model` (each strictly: a part built differently from the base's is an
    error naming it); returns the names of the parts loaded. The compressor is not a base part."""
    state = load_file(str(Path(directory) / PARTS_NAME))
    loaded = []
    for name, part in base_parts(model).items():
        part_state = split_state(state, name)
        if not part_state:
            raise ValueError(f"the base in {directory} has no {name} weights, but the model has a {name}")
        try:
            part.load_state_dict(part_state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"the model's {name} differs from the base's in {directory}: {error}") from None
        loaded.append(name)
    return loaded


def split_state(state: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of `state` under `prefix.`, without it."""
    return {key[len(prefix) + 1 :]: value for key, value in state.items() if key.startswith(f"{prefix}.")}
