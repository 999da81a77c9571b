"""`vtc evaluate --predictions P.jsonl --ground-truth G.jsonl`: print the metrics as one JSON object.

Ground truth with `options` is multiple-choice QA (predictions carry `prediction`); otherwise moment retrieval
in moment_detr's format (predictions carry `pred_relevant_windows`). Ground truth in QVHighlights' format (every
record carries `relevant_clip_ids` and `saliency_scores`) adds moment_detr's whole standard evaluation: moment
retrieval by window length, and highlight detection when predictions carry `pred_saliency_scores`.

`vtc evaluate --checkpoint DIR [--data data.yaml] [--split val]` instead generates answers with a trained model
(a checkpoint folder of `vtc train`, or a run folder: its best checkpoint) on a split of the data config (by
default the run's own), and writes `predictions.jsonl` and `metrics.json` to `--out` (default `DIR/eval-SPLIT`):
moment retrieval (with `pred_saliency_scores` when the model has a saliency head), or, for `data.task: choice`,
multiple choice with every question asked in all rotations of its options (accuracy, circular accuracy).
`--readout text|saliency` and `--choice-readout text|likelihood` read the answers another way than the model's
config says (the generated window or the saliency head's; the generated option or the likeliest one).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vtc.data.qa import choice_item_from_record
from vtc.eval.highlights import clip_saliency, evaluate_highlights, has_saliency
from vtc.eval.moment import evaluate_moments, evaluate_moments_by_length, ground_truth_windows
from vtc.eval.qa import evaluate_choices
from vtc.lmm.config import CHOICE_READOUTS, READOUTS
from vtc.utils.io import atomic_write_text, read_jsonl


def index_by_qid(records: Iterable[dict[str, Any]], source: Path) -> dict[str, dict[str, Any]]:
    """Records keyed by `str(qid)`; `ValueError` for a record without a qid or a repeated qid."""
    indexed: dict[str, dict[str, Any]] = {}
    for number, record in enumerate(records, start=1):
        if "qid" not in record:
            raise ValueError(f"{source}: record {number} has no `qid`")
        qid = str(record["qid"])
        if qid in indexed:
            raise ValueError(f"{source}: qid {qid!r} appears more than once")
        indexed[qid] = record
    return indexed


def evaluate_files(predictions_path: Path, ground_truth_path: Path) -> dict[str, float | int]:
    """Metrics of a predictions file against a ground-truth file (both JSON lines)."""
    ground_truth = index_by_qid(read_jsonl(ground_truth_path), ground_truth_path)
    predictions = index_by_qid(read_jsonl(predictions_path), predictions_path)
    if any("options" in record for record in ground_truth.values()):
        questions = {qid: choice_item_from_record(record, qid) for qid, record in ground_truth.items()}
        answers = {qid: record.get("prediction") for qid, record in predictions.items()}
        return evaluate_choices(answers, questions)
    return moment_and_highlight_metrics(predictions, ground_truth, str(ground_truth_path))


def moment_and_highlight_metrics(
    predictions: dict[str, dict[str, Any]], ground_truth: dict[str, dict[str, Any]], source: str
) -> dict[str, float | int]:
    """Moment retrieval over all queries; on QVHighlights-format ground truth also by window length, and highlight
    detection when any prediction carries `pred_saliency_scores` (moment_detr `eval_submission`)."""
    windows = {qid: ground_truth_windows(record, source) for qid, record in ground_truth.items()}
    ranked = {qid: record.get("pred_relevant_windows") for qid, record in predictions.items()}
    metrics = evaluate_moments(ranked, windows)
    without_saliency = [qid for qid, record in ground_truth.items() if not has_saliency(record)]
    if not without_saliency:
        metrics |= evaluate_moments_by_length(ranked, windows)
    if any("pred_saliency_scores" in record for record in predictions.values()):
        if without_saliency:
            raise ValueError(
                f"predictions carry pred_saliency_scores but {source}: qid {without_saliency[0]!r} has no "
                "relevant_clip_ids and saliency_scores"
            )
        saliency = {qid: clip_saliency(record, source) for qid, record in ground_truth.items()}
        scores = {qid: record.get("pred_saliency_scores") for qid, record in predictions.items()}
        metrics |= evaluate_highlights(scores, saliency)
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", type=Path, help="predictions, JSON lines with `qid`")
    parser.add_argument("--ground-truth", type=Path, help="ground truth, JSON lines with `qid`")
    parser.add_argument("--output", type=Path, help="also write the metrics JSON to this file (atomically)")
    parser.add_argument("--checkpoint", type=Path, help="a `vtc train` checkpoint or run folder: generate answers")
    parser.add_argument("--data", type=Path, action="append", default=[], help="data config YAML (repeatable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--split", choices=("val", "train", "test"), default="val", help="split of the data config")
    parser.add_argument("--out", type=Path, help="folder for predictions.jsonl and metrics.json")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--readout", choices=READOUTS, help="with --checkpoint: read moments this way instead")
    parser.add_argument(
        "--choice-readout", choices=CHOICE_READOUTS, help="with --checkpoint: read multiple-choice answers this way"
    )


def run(args: argparse.Namespace) -> int:
    if args.checkpoint is not None:
        from vtc.train.evaluate import evaluate_checkpoint

        out = args.out or args.checkpoint / f"eval-{args.split}"
        readouts = {"readout": args.readout, "choice_readout": args.choice_readout}
        readouts = {key: value for key, value in readouts.items() if value is not None}
        metrics = evaluate_checkpoint(args.checkpoint, args.data, args.set, args.split, out, args.batch_size, readouts)
    elif args.predictions is None or args.ground_truth is None:
        raise ValueError("give --predictions and --ground-truth, or --checkpoint")
    else:
        metrics = evaluate_files(args.predictions, args.ground_truth)
    text = json.dumps(metrics)
    print(text)
    if args.output is not None:
        atomic_write_text(args.output, text + "\n")
    return 0
