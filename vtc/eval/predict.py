"""Prediction and scoring of a trained model on moment retrieval, multiple-choice QA and a mixture of tasks: what
validation, `vtc evaluate --checkpoint`, the comparison and the benchmarks all run; `TASK_EVALUATIONS` pairs each
`data.task` with its predictor, scorer and the metric that picks the best checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vtc.data.batch import collate
from vtc.data.qa import QAItem
from vtc.eval.highlights import CLIP_SECONDS
from vtc.eval.moment import evaluate_moments, ground_truth_windows, parse_predicted_windows, temporal_iou
from vtc.eval.qa import circular_variants, evaluate_choices
from vtc.lmm.answers import choice_fields
from vtc.lmm.option_scoring import answer_choices

if TYPE_CHECKING:
    from vtc.lmm.model import VideoLMM


def clip_scores(times: Tensor, scores: Tensor, duration: float) -> list[float]:
    """moment_detr's `pred_saliency_scores` of one video: a score per 2 s clip (`int(duration / 2)` clips, at least
    one), the saliency of the visual time `[T]` nearest the clip's centre (`scores [T]`)."""
    num_clips = max(int(duration / CLIP_SECONDS), 1)
    centres = (torch.arange(num_clips, dtype=torch.float64) + 0.5) * CLIP_SECONDS
    nearest = (centres[:, None] - times.double().cpu()[None, :]).abs().argmin(dim=1)
    return scores.float().cpu()[nearest].tolist()


@torch.no_grad()
def predict_windows(
    model: VideoLMM,
    dataset: Dataset | Sequence[dict[str, Any]],
    indices: Sequence[int],
    batch_size: int,
    saliency: bool = False,
) -> list[dict]:
    """Generate answers for `dataset[indices]` (a dataset or a list of moment samples): moment_detr-style prediction
    records (`qid`, `pred_relevant_windows` `[[start, end, 1.0]]` or None when unparseable, the raw `text`) and
    ground truth (`relevant_windows`); with `saliency` (a model with a saliency head), also `pred_saliency_scores`
    per 2 s clip (`clip_scores`), for the highlight metrics."""
    was_training = model.training
    model.eval()
    records = []
    for first in range(0, len(indices), batch_size):
        batch = collate([dataset[index] for index in indices[first : first + batch_size]])
        answers = model.answer_windows(batch)
        for (text, parsed), qid, windows in zip(answers, batch["qid"], batch["windows"], strict=True):
            predicted = [[*parsed.window, 1.0]] if parsed.valid else None
            records.append({"qid": qid, "pred_relevant_windows": predicted, "text": text, "relevant_windows": windows})
        if saliency:
            video_scores = model.saliency_scores(batch)
            for record, (times, scores), duration in zip(records[first:], video_scores, batch["duration"], strict=True):
                record["pred_saliency_scores"] = clip_scores(times, scores, duration)
    model.train(was_training)
    return records


def asked_variants(sample: dict[str, Any], circular: bool) -> list[dict[str, Any]]:
    """The multiple-choice samples to ask for one question: with `circular`, a question without a circular group
    in all n rotations of its options (`circular_variants`: qid `"{qid}#rot{k}"`, group the qid; the frames are
    shared; each answered as the sample is, `answer_with`); else, and for a question already in a group (VNBench's
    tries), the sample itself."""
    if not circular or sample.get("circular_group") is not None:
        return [sample]
    question = {"qid": sample["qid"], "options": sample["options"], "answer": sample["answer_index"]}
    return [
        {
            **sample,
            **choice_fields(
                sample["question"], variant["options"], variant["answer"], sample.get("answer_with", "letter")
            ),
            "qid": variant["qid"],
            "circular_group": variant["circular_group"],
        }
        for variant in circular_variants(question)
    ]


@torch.no_grad()
def predict_choices(
    model: VideoLMM,
    dataset: Dataset | Sequence[dict[str, Any]],
    indices: Sequence[int],
    batch_size: int,
    circular: bool = True,
) -> list[dict]:
    """Answer the multiple-choice samples `dataset[indices]`, each asked as `asked_variants` (all rotations with
    `circular`), by the model's `choice_readout` (`vtc.lmm.option_scoring.answer_choices`). Records: `qid`, the
    answer `text`, `pred` (the option index it names: generated text read by `parse_choice`, a letter or an
    option's text, None when it names none; or the likeliest option), the right index `answer`, `options`,
    `question` and `circular_group`. Each video is read once; at most `batch_size` questions are asked at a time."""
    was_training = model.training
    model.eval()
    records = []
    for first in range(0, len(indices), batch_size):
        asked = [
            variant
            for index in indices[first : first + batch_size]
            for variant in asked_variants(dataset[index], circular)
        ]
        for start in range(0, len(asked), batch_size):
            samples = asked[start : start + batch_size]
            for (text, pred), sample in zip(answer_choices(model, collate(samples)), samples, strict=True):
                records.append(
                    {
                        "qid": str(sample["qid"]),
                        "text": text,
                        "pred": pred,
                        "answer": sample["answer_index"],
                        "options": list(sample["options"]),
                        "question": sample["question"],
                        "circular_group": sample.get("circular_group"),
                    }
                )
    model.train(was_training)
    return records


def score_choices(records: Sequence[dict]) -> dict[str, float | int]:
    """`evaluate_choices` over `predict_choices` records (which carry their questions): `accuracy` over every
    asked question, `num_invalid` (unparseable answers, wrong), and `circular_accuracy` over circular groups.

    Raises:
        ValueError: a qid repeated, or no records.
    """
    questions: dict[str, QAItem] = {}
    for record in records:
        qid = str(record["qid"])
        if qid in questions:
            raise ValueError(f"qid {qid!r} is predicted twice; a qid must name one asked question")
        questions[qid] = QAItem(
            qid=qid,
            video_id="",
            video_path=None,
            question=record["question"],
            options=tuple(record["options"]),
            answer=record["answer"],
            group=record["circular_group"],
        )
    return evaluate_choices({str(record["qid"]): record["pred"] for record in records}, questions)


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


@torch.no_grad()
def predict_mixture(
    model: VideoLMM,
    dataset: Dataset | Sequence[dict[str, Any]],
    indices: Sequence[int],
    batch_size: int,
    saliency: bool = False,
) -> list[dict]:
    """Predictions for a task mixture's samples, each carrying `task` (what it asks: `moment` or `choice`) and
    `mixture_task` (its task in the mixture): gathered per mixture task into batches of `batch_size`, each batch
    predicted by its task's predictor (`predict_windows`, with `saliency`, or `predict_choices`), each record
    tagged with the sample's `task` and `mixture_task`. At most `batch_size` samples per mixture task are held at
    a time; records come in the order their batches fill."""
    pending: dict[str, list[dict[str, Any]]] = {}
    records: list[dict] = []
    for index in indices:
        sample = dataset[index]
        batch = pending.setdefault(sample["mixture_task"], [])
        batch.append(sample)
        if len(batch) == batch_size:
            records += predict_task_batch(model, batch, saliency)
            batch.clear()
    for batch in pending.values():
        if batch:
            records += predict_task_batch(model, batch, saliency)
    return records


def predict_task_batch(model: VideoLMM, samples: list[dict[str, Any]], saliency: bool) -> list[dict]:
    """The records of one batch of a mixture task's samples (`predict_mixture`), tagged with the task."""
    task, mixture_task = samples[0]["task"], samples[0]["mixture_task"]
    evaluation = TASK_EVALUATIONS[task]
    options = {"saliency": saliency} if evaluation.takes_saliency else {}
    records = evaluation.predict(model, samples, range(len(samples)), len(samples), **options)
    return [{**record, "task": task, "mixture_task": mixture_task} for record in records]


MIXTURE_METRIC = "mean_task_score"


def score_mixture(records: Sequence[dict]) -> dict[str, float | int]:
    """Metrics of `predict_mixture` records: `MIXTURE_METRIC`, then each mixture task's metrics (by its `task`'s
    scorer) as `"{mixture task}/{metric}"`, tasks in sorted order (`moment/mIoU`, `choice/accuracy`,
    `needle/circular_accuracy`, ...).

    `mean_task_score`, the scalar that keeps a mixture run's best checkpoint, is the mean over the mixture's tasks of
    each one's primary metric (the one that keeps a single-task run's best checkpoint: mIoU for moments, accuracy
    for multiple choice; all percentages). Each task weighs the same whatever its share of the training samples, so
    no checkpoint is kept for its largest task alone; accuracy over every asked rotation rather than circular
    accuracy, as it counts four times the answers, a steadier signal on a small validation split.

    Raises:
        ValueError: no records, or as the tasks' scorers.
    """
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["mixture_task"], []).append(record)
    if not groups:
        raise ValueError("no prediction records to score")
    metrics: dict[str, float | int] = {}
    primary = []
    for name in sorted(groups):
        evaluation = TASK_EVALUATIONS[groups[name][0]["task"]]
        scored = evaluation.score(groups[name])
        metrics.update({f"{name}/{key}": value for key, value in scored.items()})
        primary.append(scored[evaluation.metric])
    return {MIXTURE_METRIC: round(fmean(primary), 2), **metrics}


@dataclass(frozen=True)
class TaskEvaluation:
    """How a `data.task` is evaluated: `predict(model, dataset, indices, batch_size)` -> records (with
    `takes_saliency`, it also takes `saliency`: a model with a saliency head adds its scores), `score(records)` ->
    metrics, and the `metric` (higher is better) that picks the best checkpoint."""

    predict: Callable[..., list[dict]]
    score: Callable[[Sequence[dict]], dict[str, float | int]]
    metric: str
    takes_saliency: bool = False


TASK_EVALUATIONS: dict[str, TaskEvaluation] = {
    "moment": TaskEvaluation(predict_windows, score, "mIoU", takes_saliency=True),
    "choice": TaskEvaluation(predict_choices, score_choices, "accuracy"),
    "mixture": TaskEvaluation(predict_mixture, score_mixture, MIXTURE_METRIC, takes_saliency=True),
}
