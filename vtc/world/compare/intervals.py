"""Intervals over a comparison's run records, from the per-video IoUs each run stores (`"ious"`, in test order):
each row's retention of the uncompressed mIoU, the paired difference of every two methods at a budget, and the
difference of each method from the blind answer (`vtc.eval.stats`)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from vtc.eval.stats import paired_bootstrap, retention

REFERENCE_BUDGET, REFERENCE_METHOD = "uncompressed", "none"  # the row every budget is measured against


def runs_of(runs: list[dict[str, Any]], budget: str, method: str) -> list[dict[str, Any]]:
    """The runs of `method` at `budget` (one per seed), in run order."""
    return [run for run in runs if run["budget"] == budget and run["method"] == method]


def shared_seeds(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[int]:
    """The seeds both groups of runs were trained with, sorted: the pairs a paired comparison may use."""
    return sorted({run["seed"] for run in first} & {run["seed"] for run in second})


def iou_matrix(runs: list[dict[str, Any]], seeds: list[int]) -> np.ndarray:
    """`[S, V]` per-video IoU in percent (mIoU points) of `runs` at `seeds`, in that order.

    Raises:
        ValueError: the runs at these seeds scored different numbers of test videos.
    """
    by_seed = {run["seed"]: run["ious"] for run in runs}
    lengths = {len(by_seed[seed]) for seed in seeds}
    if len(lengths) > 1:
        raise ValueError(f"runs at seeds {seeds} scored different numbers of test videos: {sorted(lengths)}")
    return 100 * np.asarray([by_seed[seed] for seed in seeds], dtype=np.float64).reshape(len(seeds), -1)


def retention_of(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"retention", "retention_interval"}`: mean IoU of `runs` over that of the `reference` runs (the uncompressed
    model) on their shared seeds and the same videos, and its 95% paired bootstrap interval `[low, high]` (fractions;
    `vtc.eval.stats.retention`). Both None where undefined: no shared seed, or the reference IoUs all 0."""
    seeds = shared_seeds(runs, reference)
    if not seeds:
        return {"retention": None, "retention_interval": None}
    uncompressed = iou_matrix(reference, seeds)
    if not uncompressed.any():
        return {"retention": None, "retention_interval": None}
    interval = retention(iou_matrix(runs, seeds), uncompressed)
    return {"retention": interval.estimate, "retention_interval": [interval.low, interval.high]}


def members(runs: list[dict[str, Any]], budget: str) -> dict[str, list[dict[str, Any]]]:
    """method -> runs compared at `budget`: the uncompressed rows first (the reference, and the base untouched when
    the comparison ran on one), then the budget's methods in run order."""
    group = {REFERENCE_METHOD: runs_of(runs, REFERENCE_BUDGET, REFERENCE_METHOD)}
    for where in (REFERENCE_BUDGET, budget):
        group.update({run["method"]: runs_of(runs, where, run["method"]) for run in runs if run["budget"] == where})
    return {method: chosen for method, chosen in group.items() if chosen}


def compressed_budgets(runs: list[dict[str, Any]]) -> list[str]:
    """The budgets of the runs other than the uncompressed reference, in run order."""
    return [budget for budget in dict.fromkeys(run["budget"] for run in runs) if budget != REFERENCE_BUDGET]


def pairwise(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """`{budget: [pair]}`: at each compressed budget, every two of its methods and the uncompressed reference,
    compared on their shared seeds and the same test videos by `vtc.eval.stats.paired_bootstrap`.

    A pair is `{"better", "worse", "difference", "interval", "significant", "seeds"}`: named so that the mean
    difference (mIoU points) is >= 0, its 95% interval `[low, high]`, whether that excludes 0, and the number of
    shared seeds. Two methods with no shared seed are not compared.
    """
    tables: dict[str, list[dict[str, Any]]] = {}
    for budget in compressed_budgets(runs):
        tables[budget] = []
        for (name_a, runs_a), (name_b, runs_b) in combinations(members(runs, budget).items(), 2):
            seeds = shared_seeds(runs_a, runs_b)
            if not seeds:
                continue
            ious = {name_a: iou_matrix(runs_a, seeds), name_b: iou_matrix(runs_b, seeds)}
            better, worse = sorted(ious, key=lambda name: ious[name].mean(), reverse=True)
            interval = paired_bootstrap(ious[better], ious[worse])
            tables[budget].append({
                "better": better,
                "worse": worse,
                "difference": interval.estimate,
                "interval": [interval.low, interval.high],
                "significant": interval.excludes_zero,
                "seeds": len(seeds),
            })  # fmt: skip
    return tables


def versus_blind(runs: list[dict[str, Any]], blind_miou: float) -> dict[str, dict[str, dict[str, Any]]]:
    """`{budget: {method: {"difference", "interval", "above"}}}` for every method compared at each compressed budget
    (`members`, the uncompressed reference included): its mean per-video IoU minus the blind answer's mIoU (a
    constant), the 95% bootstrap interval over test videos (seeds pooled), and whether it is significantly above
    the blind answer (the interval's low end > 0)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for budget in compressed_budgets(runs):
        result[budget] = {}
        for method, chosen in members(runs, budget).items():
            ious = iou_matrix(chosen, sorted(run["seed"] for run in chosen))
            interval = paired_bootstrap(ious, np.full_like(ious, blind_miou))
            result[budget][method] = {
                "difference": interval.estimate,
                "interval": [interval.low, interval.high],
                "above": interval.low > 0,
            }
    return result
