"""Highlight detection on QVHighlights exactly as moment_detr's `standalone_eval` (Lei et al., 2021, Sec. 5).

The video is cut into 2 s clips (`int(duration / 2)` of them); each annotator (three in QVHighlights) scored the
clips in `relevant_clip_ids` 0..4 (`saliency_scores`), every other clip counts as 0. A clip is positive at a
threshold Fair / Good / VeryGood when its score is >= 2 / 3 / 4. A prediction is one score per clip
(`pred_saliency_scores`):
- HIT@1: the first clip of highest predicted score (`np.argmax`) is a hit when any annotator marks it positive
  (a clip past the video's end is a miss); the share of hit queries.
- HL-mAP: per query and annotator, the average precision of the clips ranked by predicted score, cut or
  zero-padded to the video's clips; 1 when every clip is positive, 0 when none is; averaged over annotators and
  queries. The AP is moment_detr's `get_ap` (video2gif): clips of equal score form one threshold (sklearn's
  precision-recall curve), the precision is interpolated (maximum at any higher recall), and the AP is the mean
  interpolated precision at each threshold that raises the recall.

Where moment_detr is undefined or crashes we choose the sound option: a query whose prediction is missing or not a
non-empty list of finite numbers scores 0 and stays in the denominator; a clip id outside the video or repeated, a
video shorter than one clip, and a score row per clip that is ragged or non-finite are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vtc.eval.moment import check_known_qids, to_percent

CLIP_SECONDS = 2.0
SALIENCY_THRESHOLDS: tuple[tuple[str, int], ...] = (("Fair", 2), ("Good", 3), ("VeryGood", 4))


def has_saliency(record: Mapping[str, Any]) -> bool:
    """Whether a ground-truth record carries QVHighlights' per-clip saliency (`relevant_clip_ids`,
    `saliency_scores`)."""
    return "relevant_clip_ids" in record and "saliency_scores" in record


def clip_saliency(record: Mapping[str, Any], source: str = "ground truth") -> np.ndarray:
    """A ground-truth record's saliency over all its clips -> `[C, A]`, C = int(duration / 2), A annotators;
    clips not in `relevant_clip_ids` score 0 (moment_detr `mk_gt_scores`).

    Raises:
        ValueError: a duration under one clip, clip ids not distinct integers in [0, C), or `saliency_scores` not
            `[len(relevant_clip_ids), A >= 1]` finite numbers.
    """
    qid = record.get("qid")
    duration = record.get("duration")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not np.isfinite(duration):
        raise ValueError(f"{source}: qid {qid!r} needs a finite `duration` for its saliency, got {duration!r}")
    num_clips = int(duration / CLIP_SECONDS)
    if num_clips < 1:
        raise ValueError(f"{source}: qid {qid!r} duration {duration} is shorter than one {CLIP_SECONDS:g} s clip")
    clip_ids = record["relevant_clip_ids"]
    if not isinstance(clip_ids, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in clip_ids):
        raise ValueError(f"{source}: qid {qid!r} relevant_clip_ids must be a list of integers, got {clip_ids!r}")
    if len(set(clip_ids)) != len(clip_ids) or not all(0 <= c < num_clips for c in clip_ids):
        raise ValueError(
            f"{source}: qid {qid!r} relevant_clip_ids must be distinct clips in [0, {num_clips}), got {clip_ids!r}"
        )
    try:
        scores = np.asarray(record["saliency_scores"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"{source}: qid {qid!r} has unreadable saliency_scores") from error
    if scores.ndim != 2 or scores.shape[0] != len(clip_ids) or scores.shape[1] == 0 or not np.isfinite(scores).all():
        raise ValueError(
            f"{source}: qid {qid!r} saliency_scores must be finite [{len(clip_ids)} clips, A>=1], got shape "
            f"{scores.shape}"
        )
    full = np.zeros((num_clips, scores.shape[1]))
    full[clip_ids] = scores
    return full


def parse_saliency_scores(value: Any) -> np.ndarray | None:
    """`pred_saliency_scores` -> `[K]` floats; None unless a non-empty list of finite numbers (no booleans)."""
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(score, (int, float)) and not isinstance(score, bool) for score in value):
        return None
    try:
        scores = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond the float range
        return None
    return scores if np.isfinite(scores).all() else None


def fit_to_clips(scores: np.ndarray, num_clips: int) -> np.ndarray:
    """`scores [K]` cut to, or zero-padded up to, `[num_clips]` (moment_detr `compute_ap_from_tuple`)."""
    fitted = np.zeros(num_clips)
    kept = min(len(scores), num_clips)
    fitted[:kept] = scores[:kept]
    return fitted


def highlight_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of `scores [C]` against binary `labels [C]` (moment_detr `get_ap`, interpolated, every recall step).

    1 when every label is positive, 0 when none is. Equal scores form one threshold, so the order among tied clips
    does not matter.
    """
    labels = np.asarray(labels, dtype=bool)
    if labels.all():
        return 1.0
    if not labels.any():
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    threshold_ends = np.append(np.flatnonzero(ranked[1:] != ranked[:-1]), len(ranked) - 1)
    hits = np.cumsum(labels[order])[threshold_ends]
    precision = hits / (threshold_ends + 1)
    interpolated = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or higher
    raises_recall = np.diff(hits, prepend=0) > 0
    return float(interpolated[raises_recall].mean())


def hit_at_one(labels: np.ndarray, scores: np.ndarray) -> float:
    """1.0 when the first clip of highest score in `scores [K]` is positive for any annotator in `labels [C, A]`
    (moment_detr `compute_hl_hit1`); a clip at or past C is a miss."""
    top = int(np.argmax(scores))
    return float(top < len(labels) and bool(labels[top].any()))


def evaluate_highlights(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, np.ndarray],
) -> dict[str, float | int]:
    """Highlight-detection metrics over every ground-truth query (moment_detr `eval_highlight`).

    Args:
        predictions: qid -> raw `pred_saliency_scores` value (one score per 2 s clip).
        ground_truth: qid -> `[C, A]` per-clip scores of A annotators (`clip_saliency`).

    Returns:
        `HL-min-{Fair,Good,VeryGood}-mAP` and `-Hit1` (percentages, two decimals), `HL-num_queries`,
        `HL-num_invalid` (missing or unparseable predictions, scored 0).

    Raises:
        ValueError: a predicted qid is not in the ground truth, or there is no ground truth.
    """
    check_known_qids(predictions, ground_truth)
    parsed = {qid: parse_saliency_scores(predictions.get(qid)) for qid in ground_truth}
    metrics: dict[str, float | int] = {}
    for name, minimum in SALIENCY_THRESHOLDS:
        precisions, hits = [], []
        for qid, saliency in ground_truth.items():
            scores = parsed[qid]
            if scores is None:
                precisions.append(0.0)
                hits.append(0.0)
                continue
            labels = saliency >= minimum
            fitted = fit_to_clips(scores, len(labels))
            precisions.append(np.mean([highlight_average_precision(column, fitted) for column in labels.T]))
            hits.append(hit_at_one(labels, scores))
        metrics[f"HL-min-{name}-mAP"] = to_percent(float(np.mean(precisions)))
        metrics[f"HL-min-{name}-Hit1"] = to_percent(float(np.mean(hits)))
    metrics["HL-num_queries"] = len(ground_truth)
    metrics["HL-num_invalid"] = sum(scores is None for scores in parsed.values())
    return metrics
