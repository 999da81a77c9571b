"""Training configs: dataclass sections (model / data / optim / run), read from YAML, overridden from the CLI.

A run merges any number of YAML files in order (e.g. `configs/model/tiny.yaml` then `configs/data/synthetic.yaml`),
each holding some of the sections, then dotted overrides (`optim.lr=1e-4`, `model.lmm.compressor.name=tome`)
whose values are parsed as YAML scalars. The resolved config is written next to the results.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vtc.utils.io import atomic_write_text

RESOLVED_CONFIG_NAME = "config.yaml"


@dataclass
class ModelConfig:
    """`lmm`: the `VideoLMM` config (see `vtc.lmm.config.DEFAULTS`). `tiny_lm`: when set, a tiny random language
    model is written (`vtc.lmm.tiny.save_tiny_lm` arguments: kind, hidden, layers, heads) under the run directory
    and used as `lmm.llm.path`, so a CPU run needs no download."""

    lmm: dict[str, Any] = field(default_factory=dict)
    tiny_lm: dict[str, Any] | None = None


@dataclass
class DataConfig:
    """`source` names a registered data source (`vtc.train.data.register_data_source`): `"files"` reads `train` /
    `val` annotations with `vtc.data.load_moments` (`durations` csv for Charades-STA text, videos under
    `video_dir`); `"synthetic"`, registered by `import vtc.world`, renders the embedded benchmark in memory from the
    settings in `synthetic` (train seed `synthetic.seed`, validation seed `val_seed`).
    `num_frames` frames are sampled uniformly per video (the middle frame of equal segments);
    `cache_in_memory` keeps rendered synthetic samples (each rendered once) and, where the encoder is frozen, each
    video's encoder features instead of its frames (`EncodedSamples`)."""

    source: str = "files"
    synthetic: dict[str, Any] = field(default_factory=dict)
    num_train: int = 1000
    num_val: int = 100
    val_seed: int = 1_000_003
    train: str | None = None
    val: str | None = None
    durations: str | None = None
    video_dir: str | None = None
    num_frames: int = 16
    frame_size: int | None = None
    cache_in_memory: bool = False


@dataclass
class OptimConfig:
    """AdamW with linear warm-up over `warmup_ratio` of the steps, then cosine decay to 0 (STAC: lr 1e-5,
    weight decay 0.01)."""

    lr: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: int = 8
    max_steps: int = 1000


@dataclass
class RunConfig:
    """Output folder, seed, evaluation / checkpoint cadence and early stopping (on validation mIoU);
    `cache_dir` keeps what runs share (e.g. encoder weights that a data source pre-trains)."""

    output_dir: str = "runs/default"
    cache_dir: str = "runs/cache"
    seed: int = 0
    eval_every: int = 100
    save_every: int | None = None
    patience: int | None = None
    eval_batch_size: int = 8
    log_every: int = 10
    progress: bool = True


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` updated with `update`, nested mappings merged key by key (a new dict)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(merged.get(key), dict) and isinstance(value, Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """`"optim.lr=1e-4"` -> `{"optim": {"lr": 1e-4}}` (the value read as a YAML scalar / list / mapping)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"an override is KEY.PATH=VALUE, got {text!r}")
    parsed: Any = yaml.safe_load(value) if value.strip() else None
    if isinstance(parsed, str):
        parsed = parse_number(parsed)
    for part in reversed(key.split(".")):
        parsed = {part: parsed}
    return parsed


def parse_number(text: str) -> Any:
    """YAML reads `1e-4` as a string (it needs `1.0e-4`); read such numbers as floats."""
    try:
        return float(text)
    except ValueError:
        return text


def from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """A `TrainConfig` from nested dicts; `ValueError` naming any unknown section or key."""
    sections = {item.name: item.type for item in fields(TrainConfig)}
    classes = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; expected some of {sorted(sections)}")
    built = {}
    for name, cls in classes.items():
        values = dict(raw.get(name) or {})
        known = {item.name: item for item in fields(cls)}
        extra = sorted(set(values) - set(known))
        if extra:
            raise ValueError(f"unknown keys {extra} in config section {name!r}; expected some of {sorted(known)}")
        for key, value in values.items():
            values[key] = coerce(value, known[key], f"{name}.{key}")
        built[name] = cls(**values)
    return TrainConfig(**built)


def coerce(value: Any, spec: dataclasses.Field, name: str) -> Any:
    """Check / convert a value against its field's default type (numbers from YAML, tuples from lists)."""
    default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()  # type: ignore[misc]
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        number = parse_number(value) if isinstance(value, str) else value
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if isinstance(default, int) and float(number) != int(number):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return type(default)(number)
    if isinstance(default, tuple):
        return tuple(float(item) for item in value)
    if isinstance(default, dict) and not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping, got {value!r}")
    return value


def load_train_config(paths: Iterable[str | os.PathLike] = (), overrides: Iterable[str] = ()) -> TrainConfig:
    """Merge YAML files in order, then the dotted `overrides`, into a checked `TrainConfig`."""
    raw: dict[str, Any] = {}
    for path in paths:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: a config file holds a mapping of sections, got {type(loaded).__name__}")
        raw = merge(raw, loaded)
    for text in overrides:
        raw = merge(raw, parse_override(text))
    return from_dict(raw)


def save_train_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(Path(path), yaml.safe_dump(to_plain(config.to_dict()), sort_keys=False))


def to_plain(value: Any) -> Any:
    """Tuples -> lists, recursively (so the YAML holds only plain types)."""
    if isinstance(value, Mapping):
        return {key: to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value
