"""Prediction and scoring of a trained model on moment retrieval: what validation, `vtc evaluate --checkpoint`,
the comparison and the benchmarks all run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.data.batch import collate
from vtc.eval.moment import evaluate_moments, ground_truth_windows

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


def score(records: Sequence[dict]) -> dict[str, float | int]:
    """`evaluate_moments` over prediction records that carry their ground truth, one query per distinct qid.

    A record repeating an earlier record's qid is not scored (the first one is) and is counted in
    `num_duplicates`, so `num_queries` is the number of distinct ground-truth qids.

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
    predictions = {qid: record["pred_relevant_windows"] for qid, record in first.items()}
    return {**evaluate_moments(predictions, ground_truth), "num_duplicates": len(records) - len(first)}
