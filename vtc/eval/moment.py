"""Moment-retrieval metrics exactly as moment_detr's `standalone_eval` defines them (Lei et al., 2021).

The metric used by Moment-DETR, lighthouse and Mr.BLIP:
- IoU of two windows; R1@t = share of queries whose top-1 window (the first listed, as moment_detr takes
  `pred_relevant_windows[0]`) has IoU >= t with its best-matching ground-truth window (no tolerance at the
  threshold);
- mAP = mean over IoU thresholds 0.5:0.05:0.95 of the per-query VOC-2011 interpolated AP of the first 10
  listed windows, ranked by score (moment_detr slices the list before sorting);
- mIoU = mean top-1 IoU; and R1@0.3.

Where moment_detr is undefined we choose the sound option: a reversed or zero-length window has IoU 0
(moment_detr gives 0 or, for 0/0, NaN that its matching then counts as a hit); a query whose prediction is
missing or unparseable scores 0 on every metric and stays in the denominator (moment_detr asserts every query
has a prediction).

By window length (moment_detr `get_data_by_range`, QVHighlights' short / middle / long): a bucket keeps the queries
with at least one ground-truth window of length l in (low, high] (short (0, 10], middle (10, 30], long (30, inf)),
each with only its windows in the bucket; the prediction is unchanged, so a query with windows in two buckets is
scored in both, its out-of-bucket windows absent from the ground truth there. moment_detr closes long at 150 s,
QVHighlights' longest window; we leave it open so that longer videos' windows count as long.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MAP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * step, 2) for step in range(10))
RECALL_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
MAX_PREDICTED_WINDOWS = 10
LENGTH_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("short", 0.0, 10.0),
    ("middle", 10.0, 30.0),
    ("long", 30.0, np.inf),
)


def temporal_iou(windows_a: np.ndarray, windows_b: np.ndarray) -> np.ndarray:
    """IoU of every window in `windows_a [N, 2]` with every window in `windows_b [M, 2]` -> `[N, M]`.

    Windows are `[start, end]` seconds; a reversed or zero-length window has IoU 0 with everything.
    """
    windows_a = np.asarray(windows_a, dtype=np.float64).reshape(-1, 2)
    windows_b = np.asarray(windows_b, dtype=np.float64).reshape(-1, 2)
    left = np.maximum(windows_a[:, None, 0], windows_b[None, :, 0])
    right = np.minimum(windows_a[:, None, 1], windows_b[None, :, 1])
    intersection = np.clip(right - left, 0.0, None)
    lengths_a = windows_a[:, 1] - windows_a[:, 0]
    lengths_b = windows_b[:, 1] - windows_b[:, 0]
    union = lengths_a[:, None] + lengths_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=intersection > 0)


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 interpolated AP: area under the precision envelope at every recall step."""
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def average_precision(
    predicted: np.ndarray,
    scores: np.ndarray,
    ground_truth: np.ndarray,
    thresholds: Sequence[float] = MAP_THRESHOLDS,
) -> np.ndarray:
    """AP of one query's ranked windows at each IoU threshold (moment_detr
    `compute_average_precision_detection`).

    Args:
        predicted: `[K, 2]` predicted windows.
        scores: `[K]` their scores; ranked by decreasing score, ties keep the listed order.
        ground_truth: `[M, 2]` ground-truth windows, M >= 1.
        thresholds: IoU thresholds.

    Returns:
        `[len(thresholds)]` AP in [0, 1]. Each prediction, in rank order, matches the unmatched ground-truth
        window with the highest IoU >= threshold (true positive) or is a false positive.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if len(predicted) == 0:
        return np.zeros(len(thresholds))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    iou = temporal_iou(np.asarray(predicted)[order], ground_truth)
    num_ground_truth = iou.shape[1]
    matched = np.zeros((len(thresholds), num_ground_truth), dtype=bool)
    true_positive = np.zeros((len(thresholds), len(order)))
    for rank, row in enumerate(iou):
        candidate = (row[None, :] >= thresholds[:, None]) & ~matched
        # highest IoU first; among equal IoU the last window, as moment_detr's reversed argsort
        best = num_ground_truth - 1 - np.argmax(np.where(candidate, row, -1.0)[:, ::-1], axis=1)
        hit = candidate[np.arange(len(thresholds)), best]
        matched[np.flatnonzero(hit), best[hit]] = True
        true_positive[hit, rank] = 1.0
    hits = np.cumsum(true_positive, axis=1)
    precision = hits / np.arange(1, len(order) + 1)
    recall = hits / num_ground_truth
    return np.array([interpolated_average_precision(p, r) for p, r in zip(precision, recall, strict=True)])


def parse_predicted_windows(value: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """`[[start, end, score], ...]` (or all `[start, end]`, ranked as listed) -> `(windows [K, 2], scores
    [K])`.

    Returns None for anything else: not a non-empty list, mixed or wrong lengths, non-numeric or non-finite
    values (`NaN`, `Infinity`, `1e400`, an integer beyond the float range).
    """
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(window, (list, tuple)) for window in value):
        return None
    lengths = {len(window) for window in value}
    if lengths not in ({2}, {3}):
        return None
    numbers = [number for window in value for number in window]
    if not all(isinstance(number, (int, float)) and not isinstance(number, bool) for number in numbers):
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        return None
    if not np.isfinite(array).all():
        return None
    scores = array[:, 2] if array.shape[1] == 3 else -np.arange(len(array), dtype=np.float64)
    return array[:, :2], scores


def to_percent(value: float) -> float:
    """`value` in [0, 1] as a percentage with two decimals (moment_detr's `float(f"{100 * v:.2f}")`)."""
    return float(f"{100 * value:.2f}")


def check_known_qids(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any]) -> None:
    """`ValueError` when the ground truth is empty or a predicted qid is not in it."""
    unknown = [qid for qid in predictions if qid not in ground_truth]
    if unknown:
        raise ValueError(f"{len(unknown)} predicted qids are not in the ground truth, e.g. {unknown[:5]}")
    if not ground_truth:
        raise ValueError("the ground truth holds no query")


def evaluate_moments(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, np.ndarray],
) -> dict[str, float | int]:
    """Moment-retrieval metrics over every ground-truth query.

    Args:
        predictions: qid -> raw `pred_relevant_windows` value (parsed with `parse_predicted_windows`).
        ground_truth: qid -> `[M, 2]` windows, M >= 1, each end > start.

    Returns:
        `mIoU`, `R1@0.3`, `R1@0.5`, `R1@0.7`, `mAP`, `mAP@0.5`, `mAP@0.75` (percentages, two decimals),
        `num_queries`, `num_invalid` (missing or unparseable predictions, non-finite ones included, scored 0).

    Raises:
        ValueError: a predicted qid is not in the ground truth, or there is no ground truth.
    """
    check_known_qids(predictions, ground_truth)
    top1_iou = np.zeros(len(ground_truth))
    precision_at = np.zeros((len(ground_truth), len(MAP_THRESHOLDS)))
    num_invalid = 0
    for index, (qid, gt_windows) in enumerate(ground_truth.items()):
        parsed = parse_predicted_windows(predictions.get(qid))
        if parsed is None:
            num_invalid += 1
            continue
        windows, scores = parsed
        top1_iou[index] = temporal_iou(windows[:1], gt_windows).max()
        kept = slice(0, MAX_PREDICTED_WINDOWS)
        precision_at[index] = average_precision(windows[kept], scores[kept], gt_windows)
    map_per_threshold = precision_at.mean(axis=0)
    metrics: dict[str, float | int] = {"mIoU": to_percent(top1_iou.mean())}
    for threshold in RECALL_THRESHOLDS:
        metrics[f"R1@{threshold}"] = to_percent(float(np.mean(top1_iou >= threshold)))
    metrics["mAP"] = to_percent(float(map_per_threshold.mean()))
    for threshold in (0.5, 0.75):
        metrics[f"mAP@{threshold}"] = to_percent(float(map_per_threshold[MAP_THRESHOLDS.index(threshold)]))
    metrics["num_queries"] = len(ground_truth)
    metrics["num_invalid"] = num_invalid
    return metrics


def windows_in_length_range(windows: np.ndarray, low: float, high: float) -> np.ndarray:
    """The rows of `windows [M, 2]` whose length l satisfies low < l <= high -> `[M', 2]` (moment_detr
    `get_data_by_range`)."""
    lengths = windows[:, 1] - windows[:, 0]
    return windows[(lengths > low) & (lengths <= high)]


def evaluate_moments_by_length(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, np.ndarray],
) -> dict[str, float | int]:
    """`evaluate_moments` per window-length bucket of `LENGTH_BUCKETS` (moment_detr `eval_moment_retrieval`).

    Args:
        predictions: qid -> raw `pred_relevant_windows` value.
        ground_truth: qid -> `[M, 2]` windows, M >= 1, each end > start.

    Returns:
        `{bucket}-{metric}` for every metric of `evaluate_moments` over the bucket's queries (each with only its
        windows in the bucket, its prediction whole); a bucket without a query gives `{bucket}-num_queries` 0 alone.

    Raises:
        ValueError: a predicted qid is not in the ground truth, or there is no ground truth.
    """
    check_known_qids(predictions, ground_truth)
    metrics: dict[str, float | int] = {}
    for name, low, high in LENGTH_BUCKETS:
        in_range = {qid: windows_in_length_range(windows, low, high) for qid, windows in ground_truth.items()}
        bucket = {qid: windows for qid, windows in in_range.items() if len(windows)}
        if not bucket:
            metrics[f"{name}-num_queries"] = 0
            continue
        scored = evaluate_moments({qid: predictions[qid] for qid in bucket if qid in predictions}, bucket)
        metrics.update({f"{name}-{key}": value for key, value in scored.items()})
    return metrics


def ground_truth_windows(record: Mapping[str, Any], source: str = "ground truth") -> np.ndarray:
    """A ground-truth record's `relevant_windows` as `[M, 2]`; `ValueError` unless M >= 1, all finite (within the
    float range) with end > start."""
    windows = record.get("relevant_windows")
    qid = record.get("qid")
    try:
        array = np.asarray(windows, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{source}: qid {qid!r} has unreadable relevant_windows {windows!r}") from error
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != 2:
        raise ValueError(f"{source}: qid {qid!r} relevant_windows must be [M>=1, 2], got shape {array.shape}")
    if not np.isfinite(array).all() or not (array[:, 1] > array[:, 0]).all():
        raise ValueError(f"{source}: qid {qid!r} has a window with end <= start or non-finite: {windows!r}")
    return array
