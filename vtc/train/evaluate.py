"""Evaluate a trained checkpoint: generate answers on a split, write predictions and metrics (`vtc evaluate
--checkpoint`), for moment retrieval, multiple-choice QA or a task mixture as the data config's `data.task` says."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vtc.eval.predict import TASK_EVALUATIONS
from vtc.train.checkpoint import STATE_NAME, load_model, verify_checkpoint
from vtc.train.config import RESOLVED_CONFIG_NAME, TrainConfig, load_train_config
from vtc.train.data import build_datasets, file_splits
from vtc.utils.io import atomic_write_text, write_jsonl

METRICS_JSON = "metrics.json"
PREDICTIONS_NAME = "predictions.jsonl"


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder (holding `model/`), or a run folder's best checkpoint."""
    if (path / "model").is_dir():
        return path
    pointer = path / "checkpoints" / "best.json"
    if pointer.exists():
        return path / "checkpoints" / json.loads(pointer.read_text())["dir"]
    raise ValueError(f"{path} is neither a checkpoint folder (with model/) nor a run folder with a best checkpoint")


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_configs: Sequence[str | os.PathLike],
    overrides: Sequence[str],
    split: str,
    out: str | os.PathLike,
    batch_size: int = 8,
    readouts: Mapping[str, str] | None = None,
) -> dict[str, float | int]:
    """Metrics of a checkpoint on `split` of the data config (the run's own when `data_configs` is empty);
    writes `out/predictions.jsonl` and `out/metrics.json`. Moments: moment_detr's format plus the raw `text`, and
    `pred_saliency_scores` (one per 2 s clip) when the model has a saliency head; multiple choice: every question
    asked in all rotations of its options (`vtc.eval.predict.predict_choices`), accuracy, circular accuracy and
    unparseable answers (`num_invalid`); a task mixture: each record tagged with its `task` and `mixture_task`, and
    each task's metrics under `"{mixture task}/{metric}"` with their `mean_task_score` (`score_mixture`).
    `readouts` replaces the model's `readout` / `choice_readout` (a Hugging Face model takes none)."""
    folder = resolve_checkpoint(Path(checkpoint))
    if (folder / STATE_NAME).exists():  # a training checkpoint: its files checked (a bare model/ folder is taken)
        verify_checkpoint(folder)
    if not data_configs:
        run_config = folder.parent.parent / RESOLVED_CONFIG_NAME
        if not run_config.exists():
            raise ValueError(f"no --data given and no run config at {run_config}")
        data_configs = [run_config]
    config = load_train_config(data_configs, overrides)
    dataset = split_dataset(config, split)
    model = load_model(folder / "model", **(readouts or {}))
    evaluation = TASK_EVALUATIONS[config.data.task]
    saliency = getattr(model, "saliency_head", None) is not None  # a Hugging Face model (`model.hf`) has none
    options = {"saliency": saliency} if evaluation.takes_saliency else {}
    records = evaluation.predict(model, dataset, range(len(dataset)), batch_size, **options)
    metrics = evaluation.score(records)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / PREDICTIONS_NAME, records)
    atomic_write_text(out / METRICS_JSON, json.dumps(metrics) + "\n")
    return metrics


def split_dataset(config: TrainConfig, split: str) -> Any:
    """The `split` ("train", "val" or "test") of a data config: the `files` source's own splits (`test` when
    `data.test` is set), the other sources' train and validation datasets."""
    if config.data.source == "files":
        splits = file_splits(config.data)
        if split not in splits:
            raise ValueError(f"the data config has no {split!r} split (set data.{split})")
        return splits[split]
    if split == "test":
        raise ValueError(f"data.source {config.data.source!r} has train and val splits only, not 'test'")
    train, val = build_datasets(config.data)
    return val if split == "val" else train
