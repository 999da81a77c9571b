"""A task mixture (`data.task: mixture`): one model trained on several tasks at once, each sample asking its own.

`data.mixture` maps each task of the mixture to its share of the samples (shares are normalised by their sum; a
share of 0 leaves the task out). The data source names the tasks (the synthetic source: its variants `moment`,
`choice` and `needle`) and gives every sample `task` (what it asks: `moment` or `choice`, which picks the model's
question and answer) and `mixture_task` (its task in the mixture, which groups the validation metrics). Counts are
exact, not sampled: `mixture_counts`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MIXTURE_TASK = "mixture"


def check_mixture(task: str, mixture: Any, hf: Any) -> None:
    """`ValueError` unless `data.mixture` is set exactly when `data.task` is `mixture`, as a mapping of task names to
    shares >= 0 (at least one > 0), and the model is a `VideoLMM` (`model.hf` reads one task)."""
    if task != MIXTURE_TASK:
        if mixture is not None:
            raise ValueError(f"data.mixture is set but data.task is {task!r}: set data.task to 'mixture' to use it")
        return
    example = "e.g. {moment: 0.5, choice: 0.25, needle: 0.25}"
    if not isinstance(mixture, Mapping) or not mixture:
        raise ValueError(f"data.task 'mixture' needs data.mixture, the share of each task ({example}), got {mixture!r}")
    for name, share in mixture.items():
        if not isinstance(share, (int, float)) or isinstance(share, bool) or not math.isfinite(share) or share < 0:
            raise ValueError(f"data.mixture.{name} must be a share >= 0, got {share!r}")
    if not any(share > 0 for share in mixture.values()):
        raise ValueError(f"data.mixture needs a task with a share > 0 ({example}), got {dict(mixture)}")
    if hf is not None:
        raise ValueError("data.task 'mixture' trains a VideoLMM: model.hf learns one task (moment or choice)")


def mixture_counts(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """How many of `total` samples each task gets: its share of the shares' sum, rounded by the largest remainder
    so that the counts add up to `total` exactly (equal remainders: the task listed first); in the mixture's order.
    A task with share 0 gets none."""
    weight = sum(shares.values())
    if not weight > 0 or total < 0:
        raise ValueError(f"need shares summing to > 0 and a total >= 0, got {dict(shares)} and {total}")
    exact = {name: total * share / weight for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts
