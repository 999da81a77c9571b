"""Prediction and scoring of a trained model on moment retrieval: what validation, `vtc evaluate --checkpoint`,
the comparison and the benchmarks all run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.data.batch import collate
from vtc.eval.moment import evaluate_moments

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
    """`evaluate_moments` over prediction records that carry their ground truth."""
    predictions = {record["qid"]: record["pred_relevant_windows"] for record in records}
    ground_truth = {record["qid"]: np.asarray(record["relevant_windows"], dtype=np.float64) for record in records}
    return evaluate_moments(predictions, ground_truth)
