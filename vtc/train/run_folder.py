"""Run folders are never destroyed nor silently mixed.

- A fresh run refuses a folder that already holds a run (its `config.yaml`, `metrics.jsonl` or `checkpoints/`)
  unless asked to overwrite, which archives the old run beside it as `<dir>.archived-<YYYYmmdd-HHMMSS>`.
- A resumed run refuses a config that differs from the saved one, except in the keys of `SAFE_TO_CHANGE`.
- `metrics.jsonl` readers skip a torn last line (a kill during a write) and count it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vtc.train.config import RESOLVED_CONFIG_NAME, TrainConfig, load_train_config, to_plain
from vtc.utils.io import iter_jsonl

METRICS_NAME = "metrics.jsonl"
CHECKPOINTS_NAME = "checkpoints"
RUN_MARKERS = (RESOLVED_CONFIG_NAME, METRICS_NAME, CHECKPOINTS_NAME)
# Keys a resumed run may change: how long it trains, how often it evaluates / saves / logs, how it shows progress.
SAFE_TO_CHANGE = frozenset(
    {
        "optim.max_steps",
        "run.output_dir",
        "run.eval_every",
        "run.save_every",
        "run.log_every",
        "run.patience",
        "run.progress",
        "run.eval_batch_size",
    }
)

logger = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """A run folder that a run may not start in, or resume from, as asked."""


def run_markers(directory: Path) -> list[str]:
    """The names of `RUN_MARKERS` present in `directory` (empty for a fresh or missing folder)."""
    return [name for name in RUN_MARKERS if (directory / name).exists()]


def archive_target(directory: Path, stamp: str) -> Path:
    """`<dir>.archived-<stamp>` beside `directory`, with a counter appended when that name is taken."""
    target = directory.with_name(f"{directory.name}.archived-{stamp}")
    counter = 1
    while target.exists():
        target = directory.with_name(f"{directory.name}.archived-{stamp}-{counter}")
        counter += 1
    return target


def archive_run(directory: Path) -> Path:
    """Rename the run in `directory` to its archive name (UTC time stamp); returns the new path."""
    target = archive_target(directory, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    os.replace(directory, target)
    logger.warning("archived the previous run in %s as %s", directory, target)
    return target


def fresh_run_problem(directory: Path) -> str | None:
    """Why a new run may not start in `directory` without overwriting (it holds a run), or None."""
    found = run_markers(directory)
    if not found:
        return None
    return (
        f"{directory} already holds a run ({', '.join(found)}); pass --resume to continue it, or --overwrite "
        f"(Trainer.fit(overwrite=True)) to archive it as {directory.name}.archived-<YYYYmmdd-HHMMSS> and start anew"
    )


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one dict of dotted keys (`{"optim": {"lr": 1}}` -> `{"optim.lr": 1}`)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(saved: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """`"key: saved -> new"` for every dotted key outside `SAFE_TO_CHANGE` whose value differs (missing: None)."""
    old, current = flatten(saved), flatten(new)
    keys = sorted((set(old) | set(current)) - SAFE_TO_CHANGE)
    return [f"{key}: {old.get(key)!r} -> {current.get(key)!r}" for key in keys if old.get(key) != current.get(key)]


def resume_problem(directory: Path, config: TrainConfig) -> str | None:
    """Why `config` may not resume the run in `directory` (a changed config, no saved config), or None."""
    saved_path = directory / RESOLVED_CONFIG_NAME
    if not saved_path.exists():
        return f"cannot resume: {saved_path} does not exist (no run was started in {directory})"
    saved = to_plain(load_train_config([saved_path]).to_dict())
    differences = config_differences(saved, to_plain(config.to_dict()))
    if not differences:
        return None
    allowed = ", ".join(sorted(SAFE_TO_CHANGE))
    return (
        f"cannot resume {directory} with a changed config (saved -> new):\n  " + "\n  ".join(differences) + "\n"
        f"only these keys may change on resume: {allowed}; start a new run in another folder instead"
    )


def prepare_run_folder(config: TrainConfig, accelerator: Any, resume: bool, overwrite: bool) -> None:
    """Check the run folder before a run writes to it (every process, before any writes) and archive the old run
    when `overwrite` (main process); `RunFolderError` when the folder may not be used as asked."""
    directory = Path(config.run.output_dir)
    if resume and overwrite:
        raise RunFolderError("resume and overwrite exclude each other: resume continues the run, overwrite archives it")
    problem = resume_problem(directory, config) if resume else None if overwrite else fresh_run_problem(directory)
    archive = not resume and overwrite and bool(run_markers(directory))
    accelerator.wait_for_everyone()
    if problem is not None:
        raise RunFolderError(problem)
    if archive and accelerator.is_main_process:
        archive_run(directory)
    accelerator.wait_for_everyone()


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a `metrics.jsonl` and the number of torn lines skipped (0 or 1: a last line cut by a kill,
    logged); `ValueError` naming the file and line for a corrupt line elsewhere."""
    entries = [record for _, record in iter_jsonl(path)]
    for record in entries[:-1]:
        if isinstance(record, ValueError):
            raise record
    records = [record for record in entries if not isinstance(record, ValueError)]
    torn = len(entries) - len(records)
    if torn:
        logger.warning("skipped %d torn last line of %s: %s", torn, path, entries[-1])
    return records, torn
