"""`vtc evaluate`: moment retrieval and multiple choice from JSON-lines files, and its errors."""

from __future__ import annotations

import json
import re

import pytest

from vtc.cli import main
from vtc.eval.qa import circular_variants

KEYS = {"mIoU", "R1@0.3", "R1@0.5", "R1@0.7", "mAP", "mAP@0.5", "mAP@0.75", "num_queries", "num_invalid"}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def evaluate(tmp_path, capsys, predictions, ground_truth, *extra):
    argv = ["evaluate", "--predictions", write_jsonl(tmp_path / "p.jsonl", predictions)]
    argv += ["--ground-truth", write_jsonl(tmp_path / "g.jsonl", ground_truth), *extra]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_moment_metrics_hand_computed(tmp_path, capsys):
    ground_truth = [
        {"qid": 1, "query": "a", "duration": 30, "vid": "v", "relevant_windows": [[0, 10]]},
        {"qid": 2, "query": "b", "duration": 30, "vid": "v", "relevant_windows": [[10, 20]]},
        {"qid": 3, "query": "c", "duration": 30, "vid": "v", "relevant_windows": [[0, 4]]},
        {"qid": 4, "query": "d", "duration": 30, "vid": "v", "relevant_windows": [[5, 9]]},
    ]
    predictions = [
        {"qid": 1, "pred_relevant_windows": [[0, 10, 0.9]]},  # IoU 1
        {"qid": 2, "pred_relevant_windows": [[10, 15, 0.9], [25, 30, 0.1]]},  # IoU 0.5 (a tie at 0.5)
        {"qid": 3, "pred_relevant_windows": [[9, 3, 0.9]]},  # reversed: IoU 0
        {"qid": 4, "pred_answer": "I could not find it"},  # unparseable
    ]
    output = tmp_path / "metrics.json"
    code, out, _ = evaluate(tmp_path, capsys, predictions, ground_truth, "--output", str(output))
    metrics = json.loads(out)
    assert code == 0 and set(metrics) == KEYS
    assert metrics["mIoU"] == 37.5
    assert (metrics["R1@0.3"], metrics["R1@0.5"], metrics["R1@0.7"]) == (50.0, 50.0, 25.0)
    # AP per query: 1 at every threshold, 1 at 0.5 only, 0, 0 -> (10 + 1) / 40
    assert metrics["mAP"] == 27.5 and metrics["mAP@0.5"] == 50.0 and metrics["mAP@0.75"] == 25.0
    assert (metrics["num_queries"], metrics["num_invalid"]) == (4, 1)
    assert json.loads(output.read_text()) == metrics


def test_missing_predictions_count_as_invalid(tmp_path, capsys):
    ground_truth = [{"qid": q, "relevant_windows": [[0, 10]]} for q in ("a", "b")]
    code, out, _ = evaluate(tmp_path, capsys, [{"qid": "a", "pred_relevant_windows": [[0, 10]]}], ground_truth)
    metrics = json.loads(out)
    assert code == 0 and metrics["num_invalid"] == 1 and metrics["mIoU"] == 50.0


@pytest.mark.parametrize(
    ("predictions", "ground_truth", "message"),
    [
        ([{"qid": 9, "pred_relevant_windows": [[0, 1]]}], [{"qid": 1, "relevant_windows": [[0, 1]]}], "not in the"),
        ([{"pred_relevant_windows": [[0, 1]]}], [{"qid": 1, "relevant_windows": [[0, 1]]}], "no `qid`"),
        ([], [{"qid": 1, "relevant_windows": [[0, 1]]}, {"qid": 1, "relevant_windows": [[0, 1]]}], "more than once"),
        ([], [{"qid": 1, "relevant_windows": [[5, 5]]}], "end <= start"),
        ([], [{"qid": 1, "relevant_windows": []}], r"\[M>=1, 2\]"),
    ],
)
def test_errors_exit_with_a_message(tmp_path, capsys, predictions, ground_truth, message):
    code, out, err = evaluate(tmp_path, capsys, predictions, ground_truth)
    assert code == 2 and out == ""
    assert re.search(message, err)


def test_corrupt_file_is_an_error(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"qid": 1}\n{"qid": \n')
    write_jsonl(tmp_path / "g.jsonl", [{"qid": 1, "relevant_windows": [[0, 1]]}])
    code = main(["evaluate", "--predictions", str(tmp_path / "p.jsonl"), "--ground-truth", str(tmp_path / "g.jsonl")])
    assert code == 2 and "p.jsonl:2" in capsys.readouterr().err


def test_multiple_choice_with_circular_evaluation(tmp_path, capsys):
    questions = [
        {"qid": name, "vid": "v", "question": "what?", "options": ["w", "x", "y", "z"], "answer": "B"}
        for name in ("q1", "q2", "q3")
    ]
    ground_truth = [variant for q in questions for variant in circular_variants({**q, "answer": 1})]
    predictions = [{"qid": g["qid"], "prediction": f"({'ABCD'[g['answer']]})"} for g in ground_truth]
    predictions[4]["prediction"] = "x"  # q2, rotation 0: option text, still right ("x" is at index 1)
    predictions[5]["prediction"] = "D"  # q2, rotation 1: wrong (its answer moved to A)
    predictions[8]["prediction"] = "none of them"  # q3, rotation 0: unparseable
    code, out, _ = evaluate(tmp_path, capsys, predictions, ground_truth)
    metrics = json.loads(out)
    assert code == 0
    assert metrics["num_questions"] == 12 and metrics["num_groups"] == 3 and metrics["num_invalid"] == 1
    assert metrics["accuracy"] == pytest.approx(100 * 10 / 12, abs=0.01)
    assert metrics["circular_accuracy"] == pytest.approx(100 / 3, abs=0.01)
