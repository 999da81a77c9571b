"""Prediction and scoring of a trained model on moment retrieval: what validation, `vtc evaluate --checkpoint`,
the comparison and the benchmarks all run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.data.batch import collate
from vtc.eval.moment import evaluate_moments, ground_truth_windows, parse_predicted_windows, temporal_iou

if TYPE_CHECKING:
    from vtc.lmm.model import VideoLMM


@torch.no_grad()
def predict_windows(
    model: VideoLMM, dataset: Dataset | Sequence[dict[str, Any]], indices: Sequence[int], batch_size: int
) -> list[dict]:
    """Generate answers for `dataset[indices]` (a dataset or a list of moment samples): moment_detr-style prediction
    records (`qid`, `pred_relevant_windows` `[[start, end, 1.0]]` or None when unparseable, the raw `text`) and
    ground truth (`relevant_windows`)."""
    was_training = model.training
    model.eval()
    records = []
    for first in range(0, len(indices), batch_size):
        batch = collate([dataset[index] for index in indices[first : first + batch_size]])
        answers = model.answer_windows(batch)
        for (text, parsed), qid, windows in zip(answers, batch["qid"], batch["windows"], strict=True):
            predicted = [[*parsed.window, 1.0]] if parsed.valid else None
            records.append({"qid": qid, "pred_relevant_windows": predicted, "text": text, "relevant_windows": windows})
    model.train(was_training)
    return records


def distinct_queries(records: Sequence[dict]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """`(predictions, ground_truth)` of prediction records that carry their ground truth, keyed by qid in first-seen
    order: the first record of each qid (a later one repeating it is dropped).

    Raises:
        ValueError: a record's ground truth is unreadable, or differs from an earlier record's of the same qid.
    """
    first: dict[str, dict] = {}
    ground_truth: dict[str, np.ndarray] = {}
    for number, record in enumerate(records, start=1):
        qid = record["qid"]
        windows = ground_truth_windows(record, f"prediction record {number}")
        if qid not in first:
            first[qid], ground_truth[qid] = record, windows
        elif not np.array_equal(windows, ground_truth[qid]):
            raise ValueError(
                f"prediction record {number}: qid {qid!r} repeats an earlier record with other ground truth "
                f"({windows.tolist()} vs {ground_truth[qid].tolist()}); a qid must name one query"
            )
    return {qid: record["pred_relevant_windows"] for qid, record in first.items()}, ground_truth


def score(records: Sequence[dict]) -> dict[str, float | int]:
    """`evaluate_moments` over prediction records that carry their ground truth, one query per distinct qid.

    A record repeating an earlier record's qid is not scored (the first one is) and is counted in
    `num_duplicates`, so `num_queries` is the number of distinct ground-truth qids.

    Raises:
        ValueError: a record's ground truth is unreadable, or differs from an earlier record's of the same qid.
    """
    predictions, ground_truth = distinct_queries(records)
    return {**evaluate_moments(predictions, ground_truth), "num_duplicates": len(records) - len(predictions)}


def per_query_iou(records: Sequence[dict]) -> dict[str, float]:
    """qid -> top-1 IoU in [0, 1] of each distinct query, in first-seen order: the values whose mean `score`
    reports as mIoU (x 100), for paired tests between methods. A missing or unparseable prediction scores 0.

    Raises:
        ValueError: as `score`.
    """
    predictions, ground_truth = distinct_queries(records)
    ious: dict[str, float] = {}
    for qid, windows in ground_truth.items():
        parsed = parse_predicted_windows(predictions[qid])
        ious[qid] = 0.0 if parsed is None else float(temporal_iou(parsed[0][:1], windows).max())
    return ious
