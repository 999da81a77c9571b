"""Training configs: dataclass sections (model / data / optim / run), read from YAML, overridden from the CLI.

A run merges any number of YAML files in order (e.g. `configs/model/tiny.yaml` then `configs/data/synthetic.yaml`),
each holding some of the sections, then dotted overrides (`optim.lr=1e-4`, `model.lmm.compressor.name=tome`)
whose values are parsed as YAML scalars. The resolved config is written next to the results.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vtc.data.qa import LAYOUTS
from vtc.lmm.answers import CHOICE_ANSWERS
from vtc.train.config_values import coerce, parse_number
from vtc.train.mixture import MIXTURE_TASK, check_mixture
from vtc.utils.checks import check_choice, is_count
from vtc.utils.io import atomic_write_text

RESOLVED_CONFIG_NAME = "config.yaml"
TASKS: tuple[str, ...] = ("moment", "choice")  # what one sample asks
DATA_TASKS: tuple[str, ...] = (*TASKS, MIXTURE_TASK)  # what `data.task` may be


@dataclass
class ModelConfig:
    """`lmm`: the `VideoLMM` config (see `vtc.lmm.config.DEFAULTS`). `tiny_lm`: when set, a tiny random language
    model is written (`vtc.lmm.tiny.save_tiny_lm` arguments: kind, hidden, layers, heads) under the run directory
    and used as `lmm.llm.path`, so a CPU run needs no download. `init_from`: a base model folder
    (`vtc.lmm.base_model`) whose config `lmm` is laid over and whose weights the run starts from. `hf`: instead of
    a `VideoLMM`, a Hugging Face video LLM named by `hf.path` with a compressor inside and LoRA on its language model
    (`vtc.integrations.training`: path, compressor, budget, lora, pooling, question, answer_template,
    max_new_tokens)."""

    lmm: dict[str, Any] = field(default_factory=dict)
    tiny_lm: dict[str, Any] | None = None
    init_from: str | None = None
    hf: dict[str, Any] | None = None


@dataclass
class DataConfig:
    """`source` names a registered data source (`vtc.train.data.register_data_source`): `"files"` reads the
    `train`, `val` and `test` annotation files with `vtc.data.load_moments` (videos under `video_dir`);
    `"synthetic"`, registered by `import vtc.world`, renders the embedded benchmark in memory from the settings in
    `synthetic` (train seed `synthetic.seed`, validation seed `val_seed`).

    Files: Charades-STA text needs a csv of video durations; `durations` serves every split unless the split has
    its own (`train_durations`, `val_durations`, `test_durations`: Charades-STA's train and test videos are in
    different csv files). The validation split is either its own file (`val`) or carved from the training file:
    `val_fraction` (of the training videos) or `val_count` (videos), drawn with `val_seed`, whole videos, so that
    no video is in both (`vtc.train.data.carve_validation`). `test` is read only for the final evaluation.
    `num_frames` frames are sampled uniformly per video (the middle frame of equal segments);
    `cache_in_memory` keeps rendered synthetic samples (each rendered once) and, where the encoder is frozen, each
    video's encoder features instead of its frames (`EncodedSamples`).

    `task` is what the samples ask: `"moment"` (a query, its window as the target) or `"choice"` (multiple-choice
    questions: the prompt of `vtc.lmm.answers.format_choices`, the right option's letter as the target, or its text
    with `choice_answer: text` (`vtc.lmm.answers.CHOICE_ANSWERS`); files read
    with `vtc.data.qa.load_choices` in `layout`, `"auto"` detecting it; the synthetic source's `choice` and
    `needle` variants); validation and `vtc evaluate --checkpoint` then score accuracy and circular accuracy.
    `"mixture"` (the synthetic source only) trains one model on several tasks: `mixture` gives each task's share of
    every split (`vtc.train.mixture`; the synthetic tasks are its variants, e.g. `{moment: 0.5, choice: 0.25,
    needle: 0.25}`), counted exactly, each task's videos from its own variant's generator; each sample asks its
    own question (a moment query, or a multiple-choice prompt answered as `choice_answer` says), the saliency loss
    learns from the moment samples only, and validation reports each task's metrics (`moment/mIoU`, `choice/accuracy`,
    `needle/circular_accuracy`, ...) and keeps the best checkpoint by their `mean_task_score`
    (`vtc.eval.predict.score_mixture`)."""

    source: str = "files"
    task: str = "moment"
    choice_answer: str = "letter"
    mixture: dict[str, float] | None = None
    layout: str = "auto"
    synthetic: dict[str, Any] = field(default_factory=dict)
    num_train: int = 1000
    num_val: int = 100
    val_seed: int = 1_000_003
    train: str | None = None
    val: str | None = None
    test: str | None = None
    val_fraction: float | None = None
    val_count: int | None = None
    durations: str | None = None
    train_durations: str | None = None
    val_durations: str | None = None
    test_durations: str | None = None
    video_dir: str | None = None
    num_frames: int = 16
    frame_size: int | None = None
    cache_in_memory: bool = False

    def __post_init__(self) -> None:
        """`ValueError` on split settings that contradict each other (ranges are in `RULES`)."""
        carving = [name for name in ("val_fraction", "val_count") if getattr(self, name) is not None]
        if len(carving) == 2:
            raise ValueError("data.val_fraction and data.val_count are both set: give one share of the training videos")
        if carving and self.val is not None:
            raise ValueError(
                f"data.val ({self.val!r}) and data.{carving[0]} are both set: the validation split is either its "
                "own file or carved from data.train, not both"
            )
        for split in ("train", "val", "test"):
            if getattr(self, f"{split}_durations") is not None and getattr(self, split) is None:
                raise ValueError(
                    f"data.{split}_durations is set but data.{split} is not: it gives the durations of that split's "
                    "annotations (a carved validation split uses data.train_durations)"
                )

    def split_durations(self, split: str) -> str | None:
        """The durations csv of `split` ("train", "val" or "test"): its own, else `durations`."""
        own = getattr(self, f"{check_choice('split', split, ('train', 'val', 'test'))}_durations")
        return self.durations if own is None else own


@dataclass
class OptimConfig:
    """AdamW with linear warm-up over `warmup_ratio` of the steps, then cosine decay to 0 (STAC: lr 1e-5,
    weight decay 0.01); with `cycles` > 1 that schedule runs `cycles` times over equal parts of `max_steps`, each
    with its own warm-up (warm restarts, SGDR: Loshchilov & Hutter 2017), the optimizer's moments kept."""

    lr: float = 1e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    batch_size: int = 8
    max_steps: int = 1000
    cycles: int = 1


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
    try:
        parsed: Any = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({error})") from error
    if isinstance(parsed, str):
        parsed = parse_number(parsed)
    for part in reversed(key.split(".")):
        parsed = {part: parsed}
    return parsed


def from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """A `TrainConfig` from nested dicts; `ValueError` naming any unknown section or key."""
    sections = {item.name: item.type for item in fields(TrainConfig)}
    classes = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig, "run": RunConfig}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"unknown config sections {unknown}; expected some of {sorted(sections)}")
    built = {}
    for name, cls in classes.items():
        section = raw.get(name)
        if section is not None and not isinstance(section, Mapping):
            raise ValueError(f"config section {name!r} must be a mapping of keys, got {section!r}")
        values = dict(section or {})
        known = {item.name: item for item in fields(cls)}
        extra = sorted(set(values) - set(known))
        if extra:
            raise ValueError(f"unknown keys {extra} in config section {name!r}; expected some of {sorted(known)}")
        for key, value in values.items():
            values[key] = coerce(value, known[key], f"{name}.{key}")
        built[name] = cls(**values)
    config = TrainConfig(**built)
    validate(config)
    return config


def require(name: str, value: Any, ok: Callable[[Any], bool], allowed: str) -> None:
    """`ValueError` naming the key, the value and what is allowed, unless `ok(value)` (None always passes)."""
    if value is not None and not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def non_negative(value: Any) -> bool:
    """A number >= 0."""
    return value >= 0


def is_fraction(value: Any) -> bool:
    """A number (not a bool) strictly between 0 and 1."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "optim.lr": (non_negative, ">= 0"),
    "optim.weight_decay": (non_negative, ">= 0"),
    "optim.betas": (lambda betas: len(betas) == 2 and all(0 <= b < 1 for b in betas), "two numbers in [0, 1)"),
    "optim.warmup_ratio": (lambda value: 0 <= value <= 1, "in [0, 1]"),
    "optim.max_grad_norm": (lambda value: value > 0, "> 0"),
    "optim.batch_size": (is_count, "an integer >= 1"),
    "optim.max_steps": (is_count, "an integer >= 1"),
    "optim.cycles": (is_count, "an integer >= 1"),
    "run.eval_every": (is_count, "an integer >= 1"),
    "run.save_every": (is_count, "null or an integer >= 1"),
    "run.patience": (is_count, "null or an integer >= 1"),
    "run.eval_batch_size": (is_count, "an integer >= 1"),
    "run.log_every": (is_count, "an integer >= 1"),
    "data.task": (lambda value: value in DATA_TASKS, f"one of {DATA_TASKS}"),
    "data.layout": (lambda value: value in LAYOUTS, f"one of {LAYOUTS}"),
    "data.choice_answer": (lambda value: value in CHOICE_ANSWERS, f"one of {tuple(CHOICE_ANSWERS)}"),
    "data.num_train": (is_count, "an integer >= 1"),
    "data.num_val": (is_count, "an integer >= 1"),
    "data.val_fraction": (is_fraction, "null or a number in (0, 1)"),
    "data.val_count": (is_count, "null or an integer >= 1"),
    "data.num_frames": (is_count, "an integer >= 1"),
    "data.frame_size": (is_count, "null or an integer >= 1"),
}


def validate(config: TrainConfig) -> None:
    """Check value ranges (`RULES`), the task mixture (`check_mixture`), that at most one of `model.tiny_lm`,
    `model.lmm.llm.path` and `model.init_from` names the language model, and that `model.hf` (a mapping) stands
    alone."""
    for name, (ok, allowed) in RULES.items():
        section, key = name.split(".")
        require(name, getattr(getattr(config, section), key), ok, allowed)
    check_mixture(config.data.task, config.data.mixture, config.model.hf)
    hf = config.model.hf
    if hf is not None:
        if not isinstance(hf, Mapping):
            raise ValueError(f"model.hf must be a mapping (path, compressor, ...), got {hf!r}")
        others = [name for name in ("lmm", "tiny_lm", "init_from") if getattr(config.model, name)]
        if others:
            raise ValueError(f"model.hf names the whole model: do not also set model.{', model.'.join(others)}")
    if not isinstance(config.model.lmm.get("llm") or {}, Mapping):
        raise ValueError(f"model.lmm.llm must be a mapping, got {config.model.lmm['llm']!r}")
    llm_path = (config.model.lmm.get("llm") or {}).get("path")
    if config.model.init_from is not None and (config.model.tiny_lm is not None or llm_path is not None):
        raise ValueError(
            f"model.init_from ({config.model.init_from!r}) brings its own language model: do not also set "
            "model.tiny_lm or model.lmm.llm.path"
        )
    if config.model.tiny_lm is not None and llm_path is not None:
        raise ValueError(
            f"model.tiny_lm and model.lmm.llm.path are both set (llm.path={llm_path!r}); the tiny LM would replace "
            "it: set only one"
        )


def load_train_config(paths: Iterable[str | os.PathLike] = (), overrides: Iterable[str] = ()) -> TrainConfig:
    """Merge YAML files in order, then the dotted `overrides`, into a checked `TrainConfig`."""
    raw: dict[str, Any] = {}
    for path in paths:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from error
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
