"""QVHighlights' standard evaluation: highlight detection and moment retrieval by window length, against
hand-computed cases, a loop transcription of moment_detr's `get_ap`, and the real validation annotations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vtc.cli import main
from vtc.eval.cli import index_by_qid, moment_and_highlight_metrics
from vtc.eval.highlights import (
    clip_saliency,
    evaluate_highlights,
    fit_to_clips,
    highlight_average_precision,
    hit_at_one,
    parse_saliency_scores,
)
from vtc.eval.moment import LENGTH_BUCKETS, evaluate_moments_by_length, windows_in_length_range
from vtc.utils.io import read_jsonl

QVHIGHLIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "qvhighlights" / "highlight_val_release.jsonl"


# ------------------------------------------------------------------------------------------- highlight AP


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1], (1 + 2 / 3) / 2),  # recall steps at ranks 1 and 3
        ([1, 0, 1, 0], [0.9, 0.8, 0.1, 0.7], (1 + 1 / 2) / 2),  # the second positive at rank 4: precision 1/2
        ([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.7], 1.0),
        ([1, 1, 1, 1], [0.0, 0.0, 0.0, 0.0], 1.0),  # every clip positive
        ([0, 0, 0, 0], [0.4, 0.3, 0.2, 0.1], 0.0),  # none positive
    ],
)
def test_average_precision_hand_computed(labels, scores, expected):
    assert highlight_average_precision(np.array(labels), np.array(scores)) == pytest.approx(expected)


def test_tied_scores_form_one_threshold_whatever_their_order():
    # ranks 1-2 tied: one threshold with precision 1/2 at recall 1/2, then 2/3 at recall 1 -> interpolated 2/3 twice
    for labels in ([1, 0, 1], [0, 1, 1]):
        assert highlight_average_precision(np.array(labels), np.array([0.5, 0.5, 0.1])) == pytest.approx(2 / 3)
    # untied, the positive first: (1 + 2/3) / 2
    assert highlight_average_precision(np.array([1, 0, 1]), np.array([0.6, 0.5, 0.1])) == pytest.approx(5 / 6)
    # two positives in one tied group of three raise the recall once: precision 2/4 there, then 3/5; interpolated
    # 3/5 twice (clip by clip it would be (2/3 + 2/3 + 3/5) / 3)
    labels, scores = np.array([0, 1, 1, 0, 1]), np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    assert highlight_average_precision(labels, scores) == pytest.approx(0.6)
    # a tie interpolated up: precision 1, then 2/3 (tie) lifted to the 3/4 that follows, then 3/4
    assert highlight_average_precision(np.array([1, 0, 1, 1]), np.array([0.9, 0.5, 0.5, 0.1])) == pytest.approx(2.5 / 3)


def test_hit_at_one_takes_the_first_of_tied_maxima_and_misses_past_the_video():
    labels = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=bool)
    assert hit_at_one(labels, np.array([0.7, 0.7, 0.0])) == 0.0  # clip 0, the first of the tie
    assert hit_at_one(labels, np.array([0.2, 0.7, 0.7])) == 1.0  # clip 1: one annotator of three suffices
    assert hit_at_one(labels, np.array([0.0, 0.5, 0.0, 0.9])) == 0.0  # clip 3 is past the 3 clips


def test_predictions_are_cut_or_zero_padded_to_the_clips():
    assert fit_to_clips(np.array([0.5, 0.4]), 4).tolist() == [0.5, 0.4, 0.0, 0.0]
    assert fit_to_clips(np.array([0.5, 0.4, 0.3]), 2).tolist() == [0.5, 0.4]


def test_clips_without_saliency_score_zero():
    record = {"qid": 1, "duration": 9, "relevant_clip_ids": [1, 3], "saliency_scores": [[4, 3, 2], [1, 2, 0]]}
    assert clip_saliency(record).tolist() == [[0, 0, 0], [4, 3, 2], [0, 0, 0], [1, 2, 0]]  # int(9 / 2) = 4 clips


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"relevant_clip_ids": [1, 4]}, r"distinct clips in \[0, 4\)"),
        ({"relevant_clip_ids": [1, -1]}, r"distinct clips in \[0, 4\)"),
        ({"relevant_clip_ids": [1, 1]}, r"distinct clips in \[0, 4\)"),
        ({"relevant_clip_ids": [1, True]}, "list of integers"),
        ({"saliency_scores": [[4, 3, 2]]}, r"must be finite \[2 clips, A>=1\], got shape \(1, 3\)"),
        ({"saliency_scores": [[4, 3, 2], [1, 2]]}, "unreadable saliency_scores"),
        ({"saliency_scores": [[4, 3, float("nan")], [1, 2, 0]]}, "must be finite"),
        ({"duration": 1.5}, "shorter than one 2 s clip"),
        ({"duration": None}, "needs a finite `duration`"),
    ],
)
def test_bad_saliency_records_are_errors(change, message):
    record = {"qid": 1, "duration": 9, "relevant_clip_ids": [1, 3], "saliency_scores": [[4, 3, 2], [1, 2, 0]]}
    with pytest.raises(ValueError, match=message):
        clip_saliency({**record, **change}, "gt.jsonl")


@pytest.mark.parametrize("value", [None, [], "0.5", [0.1, None], [0.1, True], [0.1, float("nan")], [10**400]])
def test_unparseable_predicted_saliency(value):
    assert parse_saliency_scores(value) is None


def test_the_three_thresholds_hand_computed():
    ground_truth = {
        # 4 clips: [0,0,0], [4,3,2], [2,2,1], [0,0,0]
        "a": clip_saliency(
            {"qid": "a", "duration": 8, "relevant_clip_ids": [1, 2], "saliency_scores": [[4, 3, 2], [2, 2, 1]]}
        ),
        # 3 clips: [0,0,0], [3,3,3], [0,0,0]
        "b": clip_saliency({"qid": "b", "duration": 6, "relevant_clip_ids": [1], "saliency_scores": [[3, 3, 3]]}),
    }
    predictions = {"a": [0.1, 0.5, 0.9, 0.2], "b": [0.7, 0.7]}  # b: clips 0 and 1 tied, clip 2 padded with 0
    metrics = evaluate_highlights(predictions, ground_truth)
    # a, ranked clips 2, 1, 3, 0. Fair: annotators 1, 1, 1/2; Good: 1/2, 1/2, 0 (none); VeryGood: 1/2, 0, 0.
    # b: one tied threshold holding clip 1 (precision 1/2) for every annotator at Fair and Good; none at VeryGood.
    assert metrics["HL-min-Fair-mAP"] == pytest.approx(100 * (2.5 / 3 + 0.5) / 2, abs=0.005)
    assert metrics["HL-min-Good-mAP"] == pytest.approx(100 * (1 / 3 + 0.5) / 2, abs=0.005)
    assert metrics["HL-min-VeryGood-mAP"] == pytest.approx(100 * (0.5 / 3) / 2, abs=0.005)
    # a's top clip 2 scores [2, 2, 1]: a hit at Fair only; b's top clip is clip 0 (first of the tie): no hit
    assert (metrics["HL-min-Fair-Hit1"], metrics["HL-min-Good-Hit1"], metrics["HL-min-VeryGood-Hit1"]) == (50, 0, 0)
    assert (metrics["HL-num_queries"], metrics["HL-num_invalid"]) == (2, 0)


def test_missing_prediction_scores_zero_and_unknown_qid_is_an_error():
    ground_truth = {q: np.array([[4.0, 4.0, 4.0], [0.0, 0.0, 0.0]]) for q in ("a", "b")}
    metrics = evaluate_highlights({"a": [1.0, 0.0]}, ground_truth)
    assert metrics["HL-min-VeryGood-mAP"] == 50.0 and metrics["HL-min-VeryGood-Hit1"] == 50.0
    assert metrics["HL-num_invalid"] == 1
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_highlights({"z": [1.0]}, ground_truth)


# ------------------------------------------------------------------------------------------- length buckets


def test_bucket_edges_are_closed_above():
    windows = np.array([[0.0, 10.0], [0.0, 10.5], [5.0, 35.0], [0.0, 30.5], [0.0, 200.0]])
    assert [len(windows_in_length_range(windows, low, high)) for _, low, high in LENGTH_BUCKETS] == [1, 2, 2]


def test_a_query_in_two_buckets_is_scored_in_each_against_its_windows_there():
    ground_truth = {
        "q1": np.array([[0.0, 8.0], [20.0, 60.0]]),  # short (8 s) and long (40 s)
        "q2": np.array([[10.0, 20.0]]),  # exactly 10 s: short
        "q3": np.array([[0.0, 30.0]]),  # exactly 30 s: middle
    }
    predictions = {"q1": [[20, 60, 0.9], [0, 8, 0.5]], "q2": [[10, 20, 1.0]], "q3": [[0, 30, 1.0]]}
    metrics = evaluate_moments_by_length(predictions, ground_truth)
    # short: q1's top-1 [20, 60] misses [0, 8] (IoU 0) and ranks first as a false positive (AP 1/2); q2 perfect
    assert metrics["short-num_queries"] == 2
    assert (metrics["short-R1@0.5"], metrics["short-mIoU"], metrics["short-mAP"]) == (50.0, 50.0, 75.0)
    assert (metrics["middle-num_queries"], metrics["middle-mAP"], metrics["middle-R1@0.7"]) == (1, 100.0, 100.0)
    assert (metrics["long-num_queries"], metrics["long-mAP"], metrics["long-R1@0.7"]) == (1, 100.0, 100.0)


def test_an_empty_bucket_reports_only_its_count():
    metrics = evaluate_moments_by_length({"q": [[0, 5]]}, {"q": np.array([[0.0, 5.0]])})
    assert metrics["middle-num_queries"] == 0 and "middle-mAP" not in metrics
    assert metrics["short-mAP"] == 100.0
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_moments_by_length({"z": [[0, 5]]}, {"q": np.array([[0.0, 5.0]])})


# ------------------------------------------------------------------------------------------- vtc evaluate


def run_evaluate(tmp_path, capsys, predictions, ground_truth):
    for name, records in (("p.jsonl", predictions), ("g.jsonl", ground_truth)):
        (tmp_path / name).write_text("".join(json.dumps(record) + "\n" for record in records))
    code = main(["evaluate", "--predictions", str(tmp_path / "p.jsonl"), "--ground-truth", str(tmp_path / "g.jsonl")])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


GROUND_TRUTH = {"qid": 1, "duration": 8, "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2]}


def test_evaluate_prints_buckets_and_highlights_when_the_files_carry_saliency(tmp_path, capsys):
    ground_truth = [{**GROUND_TRUTH, "saliency_scores": [[4, 4, 4], [2, 2, 2]]}]
    prediction = {"qid": 1, "pred_relevant_windows": [[2, 6, 1.0]]}
    code, metrics = run_evaluate(tmp_path, capsys, [{**prediction, "pred_saliency_scores": [0, 3, 2, 1]}], ground_truth)
    assert code == 0 and metrics["mAP"] == 100.0 and metrics["short-mAP"] == 100.0
    assert metrics["middle-num_queries"] == 0
    assert metrics["HL-min-VeryGood-mAP"] == 100.0 and metrics["HL-min-Fair-Hit1"] == 100.0
    code, metrics = run_evaluate(tmp_path, capsys, [prediction], ground_truth)  # windows only: no highlight keys
    assert code == 0 and "short-mAP" in metrics and not any(key.startswith("HL-") for key in metrics)
    code, metrics = run_evaluate(tmp_path, capsys, [prediction], [{"qid": 1, "relevant_windows": [[2, 6]]}])
    assert code == 0 and "short-mAP" not in metrics  # not QVHighlights' format: the overall metrics only


def test_evaluate_refuses_saliency_predictions_without_saliency_ground_truth(tmp_path, capsys):
    prediction = {"qid": 1, "pred_relevant_windows": [[2, 6]], "pred_saliency_scores": [0.5]}
    code, err = run_evaluate(tmp_path, capsys, [prediction], [{"qid": 1, "relevant_windows": [[2, 6]]}])
    assert code == 2 and "has no relevant_clip_ids and saliency_scores" in err


# ------------------------------------------------------------------------------------------- real annotations


def loop_get_ap(labels, scores):
    """moment_detr `get_ap` over sklearn's `precision_recall_curve`, as loops (the reference)."""
    if len(set(labels)) == 1:
        return float(labels[0])
    thresholds = sorted(set(scores), reverse=True)
    points = []  # (precision, recall) per threshold, highest threshold first
    for threshold in thresholds:
        chosen = [label for label, score in zip(labels, scores, strict=True) if score >= threshold]
        points.append((sum(chosen) / len(chosen), sum(chosen) / sum(labels)))
    selected = []
    for index, (_, recall) in enumerate(points):
        previous_recall = points[index - 1][1] if index else 0.0
        if recall != previous_recall:
            selected.append(max(precision for precision, _ in points[index:]))
    return sum(selected) / len(selected)


@pytest.fixture(scope="module")
def qvhighlights():
    if not QVHIGHLIGHTS.exists():
        pytest.skip(f"real data not available: {QVHIGHLIGHTS} (the shared data folder ../shared/data is absent)")
    return index_by_qid(read_jsonl(QVHIGHLIGHTS), QVHIGHLIGHTS)


def test_real_highlight_ap_equals_the_loop_reference(qvhighlights):
    rng = np.random.default_rng(0)
    for qid in list(qvhighlights)[:60]:
        saliency = clip_saliency(qvhighlights[qid])
        scores = np.round(rng.random(len(saliency)) * 4) / 4  # many ties
        for minimum in (2, 3, 4):
            for column in (saliency >= minimum).T:
                expected = loop_get_ap(column.astype(int).tolist(), scores.tolist())
                assert highlight_average_precision(column, scores) == pytest.approx(expected)


def test_real_ground_truth_as_a_perfect_ranking(qvhighlights):
    saliency = {qid: clip_saliency(record) for qid, record in qvhighlights.items()}
    # every annotator made the first one: predicting their scores ranks every positive first
    agreed = {qid: np.repeat(scores[:, :1], 3, axis=1) for qid, scores in saliency.items()}
    metrics = evaluate_highlights({qid: scores[:, 0].tolist() for qid, scores in agreed.items()}, agreed)
    for name, minimum in (("Fair", 2), ("Good", 3), ("VeryGood", 4)):
        share = np.mean([(scores[:, 0] >= minimum).any() for scores in agreed.values()])
        assert metrics[f"HL-min-{name}-mAP"] == metrics[f"HL-min-{name}-Hit1"] == pytest.approx(100 * share, abs=0.005)
    # the real three annotators, predicting the highest score per clip: the top clip hits iff any clip is positive
    metrics = evaluate_highlights({qid: scores.max(axis=1).tolist() for qid, scores in saliency.items()}, saliency)
    for name, minimum in (("Fair", 2), ("Good", 3), ("VeryGood", 4)):
        share = np.mean([(scores >= minimum).any() for scores in saliency.values()])
        assert metrics[f"HL-min-{name}-Hit1"] == pytest.approx(100 * share, abs=0.005)
    assert metrics["HL-num_queries"] == 1550 and metrics["HL-num_invalid"] == 0


def test_real_ground_truth_windows_scored_against_themselves(qvhighlights):
    predictions = {
        qid: {"qid": qid, "pred_relevant_windows": [[*window, 1.0] for window in record["relevant_windows"]]}
        for qid, record in qvhighlights.items()
    }
    metrics = moment_and_highlight_metrics(predictions, qvhighlights, str(QVHIGHLIGHTS))
    assert metrics["R1@0.7"] == metrics["mIoU"] == 100.0
    # moment_detr scores the first 10 windows: a query with n > 10 windows reaches recall 10 / n at precision 1
    counts = [len(record["relevant_windows"]) for record in qvhighlights.values()]
    assert metrics["mAP"] == pytest.approx(100 * np.mean([min(1.0, 10 / n) for n in counts]), abs=0.005)
    buckets = {qid: {bucket_of(end - start) for start, end in r["relevant_windows"]} for qid, r in qvhighlights.items()}
    for name, _, _ in LENGTH_BUCKETS:
        assert metrics[f"{name}-num_queries"] == sum(name in names for names in buckets.values())
    assert sum(len(names) > 1 for names in buckets.values()) == 388  # queries scored in two or three buckets
    # their windows of another bucket rank as false positives, or come first as the top-1 (docs/pipeline.md)
    assert [metrics[f"{name}-num_queries"] for name, _, _ in LENGTH_BUCKETS] == [429, 957, 574]
    assert [metrics[f"{name}-mAP"] for name, _, _ in LENGTH_BUCKETS] == [79.75, 89.8, 92.73]
    assert metrics["mAP"] == 99.76
    # queries whose windows (at most 10) all fall in one bucket score 100 there
    single = {
        qid: qvhighlights[qid]
        for qid, names in buckets.items()
        if len(names) == 1 and counts_of(qvhighlights[qid]) <= 10
    }
    metrics = moment_and_highlight_metrics({qid: predictions[qid] for qid in single}, single, str(QVHIGHLIGHTS))
    for name, _, _ in LENGTH_BUCKETS:
        assert metrics[f"{name}-mAP"] == metrics[f"{name}-R1@0.7"] == 100.0


def bucket_of(length: float) -> str:
    """moment_detr's bucket of one window length, written out: (0, 10], (10, 30], (30, 150]."""
    return "short" if length <= 10 else "middle" if length <= 30 else "long"


def counts_of(record: dict) -> int:
    """How many ground-truth windows a record holds."""
    return len(record["relevant_windows"])
