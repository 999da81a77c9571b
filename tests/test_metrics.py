"""Moment-retrieval metrics against hand-computed cases and a loop transcription of moment_detr's matching."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc.data.choices import parse_choice
from vtc.data.qa import QAItem
from vtc.eval.moment import (
    MAP_THRESHOLDS,
    average_precision,
    evaluate_moments,
    ground_truth_windows,
    interpolated_average_precision,
    parse_predicted_windows,
    temporal_iou,
)
from vtc.eval.qa import circular_variants, evaluate_choices, rotate_options


def test_iou_hand_computed_reversed_and_zero_length():
    iou = temporal_iou(np.array([[0.0, 10.0], [10.0, 5.0], [5.0, 5.0]]), np.array([[5.0, 15.0], [0.0, 20.0]]))
    assert iou[0].tolist() == pytest.approx([5 / 15, 10 / 20])
    assert iou[1].tolist() == [0.0, 0.0]  # reversed
    assert iou[2].tolist() == [0.0, 0.0]  # zero length
    assert temporal_iou(np.array([[3.0, 3.0]]), np.array([[3.0, 3.0]])).item() == 0.0


def test_r1_counts_ties_at_the_threshold_and_best_matching_window():
    ground_truth = {"a": np.array([[0.0, 10.0]]), "b": np.array([[40.0, 50.0], [0.0, 10.0]])}
    predictions = {"a": [[0.0, 5.0, 1.0]], "b": [[0.0, 7.0, 1.0]]}  # IoU 0.5 and 0.7 exactly
    metrics = evaluate_moments(predictions, ground_truth)
    assert metrics["R1@0.3"] == 100.0
    assert metrics["R1@0.5"] == 100.0
    assert metrics["R1@0.7"] == 50.0
    assert metrics["mIoU"] == 60.0
    assert metrics["num_queries"] == 2 and metrics["num_invalid"] == 0


def test_top1_is_the_first_listed_window_and_map_ranks_by_score():
    ground_truth = {"q": np.array([[0.0, 10.0]])}
    metrics = evaluate_moments({"q": [[20.0, 30.0, 0.1], [0.0, 10.0, 0.9]]}, ground_truth)
    assert metrics["mIoU"] == 0.0  # the first listed window is the top-1 (moment_detr convention)
    assert metrics["mAP"] == 100.0  # ranked by score, the right window comes first


def test_average_precision_hand_computed():
    one = average_precision(np.array([[20.0, 30.0], [0.0, 10.0]]), np.array([0.9, 0.8]), np.array([[0.0, 10.0]]))
    np.testing.assert_allclose(one, 0.5)  # FP then TP: precision 1/2 at recall 1
    two_gt = np.array([[0.0, 10.0], [20.0, 30.0]])
    duplicate = np.array([[0.0, 10.0], [0.0, 10.0], [20.0, 30.0]])
    # TP, FP (ground truth already matched), TP: 0.5 * 1 + 0.5 * 2/3
    np.testing.assert_allclose(average_precision(duplicate, np.array([0.9, 0.8, 0.7]), two_gt), 0.5 + 1 / 3)
    assert average_precision(np.zeros((0, 2)), np.zeros(0), two_gt).tolist() == [0.0] * len(MAP_THRESHOLDS)


def test_map_uses_the_precision_envelope_by_hand():
    two_gt = np.array([[0.0, 10.0], [20.0, 30.0]])
    miss, first, second = [50.0, 60.0], [0.0, 10.0], [20.0, 30.0]
    ranked = np.array([0.9, 0.8, 0.7, 0.6])
    # FP, TP, TP: precision 1/2 at recall 1/2, then it rises to 2/3 at recall 1. The envelope at recall 1/2 is
    # the best precision at any recall >= 1/2: max(1/2, 2/3) = 2/3; at recall 1 it is 2/3.
    # AP = (1/2 - 0) * 2/3 + (1 - 1/2) * 2/3 = 2/3   (without the envelope: 1/2 * 1/2 + 1/2 * 2/3 = 7/12)
    np.testing.assert_allclose(average_precision(np.array([miss, first, second]), ranked[:3], two_gt), 2 / 3)
    # FP, FP, TP, TP: precision 1/3 at recall 1/2, then 1/2 at recall 1. Envelope: 1/2 at both recall steps.
    # AP = 1/2 * 1/2 + 1/2 * 1/2 = 1/2   (without the envelope: 1/2 * 1/3 + 1/2 * 1/2 = 5/12)
    np.testing.assert_allclose(average_precision(np.array([miss, miss, first, second]), ranked, two_gt), 1 / 2)
    # The same FP, TP, TP through the metric: the windows match exactly, so AP is 2/3 at every IoU threshold and
    # mAP = 66.67 %; the listed order differs from the score order, which is the one that counts.
    predictions = {"q": [[0.0, 10.0, 0.8], [50.0, 60.0, 0.9], [20.0, 30.0, 0.7]]}
    metrics = evaluate_moments(predictions, {"q": two_gt})
    assert metrics["mAP"] == 66.67 and metrics["mAP@0.5"] == 66.67 and metrics["mAP@0.75"] == 66.67
    # Directly: precision [1/2, 2/3] at recall [1/2, 1] -> 1/2 * 2/3 + 1/2 * 2/3 = 2/3.
    assert interpolated_average_precision(np.array([1 / 2, 2 / 3]), np.array([1 / 2, 1.0])) == pytest.approx(2 / 3)


def test_map_uses_only_the_first_ten_windows():
    wrong = [[50.0 + step, 51.0 + step, 1.0] for step in range(10)]
    ground_truth = {"q": np.array([[0.0, 10.0]])}
    assert evaluate_moments({"q": [*wrong, [0.0, 10.0, 2.0]]}, ground_truth)["mAP"] == 0.0
    assert evaluate_moments({"q": [*wrong[:9], [0.0, 10.0, 2.0]]}, ground_truth)["mAP"] == 100.0


def test_map_thresholds_partial_credit():
    # IoU 0.8: a hit at thresholds 0.5 .. 0.8 (7 of 10)
    metrics = evaluate_moments({"q": [[0.0, 8.0, 1.0]]}, {"q": np.array([[0.0, 10.0]])})
    assert metrics["mAP"] == 70.0
    assert metrics["mAP@0.5"] == 100.0 and metrics["mAP@0.75"] == 100.0


@pytest.mark.parametrize(
    "value",
    [
        None,
        "0 to 5 seconds",
        [],
        [[1.0]],
        [[0.0, 1.0], [0.0, 1.0, 0.5]],
        [["a", 1]],
        [[float("nan"), 1.0]],
        [[0.0, True]],
    ],
)
def test_unparseable_predictions_are_invalid_and_score_zero(value):
    assert parse_predicted_windows(value) is None
    ground_truth = {"good": np.array([[0.0, 10.0]]), "bad": np.array([[0.0, 10.0]]), "missing": np.array([[0, 5.0]])}
    metrics = evaluate_moments({"good": [[0.0, 10.0]], "bad": value}, ground_truth)
    assert metrics["num_invalid"] == 2
    assert metrics["mIoU"] == pytest.approx(100 / 3, abs=0.01)
    assert metrics["R1@0.5"] == pytest.approx(100 / 3, abs=0.01)
    assert metrics["mAP"] == pytest.approx(100 / 3, abs=0.01)


def test_windows_without_scores_rank_as_listed():
    windows, scores = parse_predicted_windows([[0, 1], [2, 3]])
    assert windows.tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert scores[0] > scores[1]


@pytest.mark.parametrize("windows", [[[0, 1]], [[0, 1], [2, 3]], [[0, 1], [2, 3], [4, 5.5]]])
def test_ground_truth_windows_accept_any_number_of_pairs(windows):
    assert ground_truth_windows({"qid": 1, "relevant_windows": windows}).tolist() == windows


@pytest.mark.parametrize(
    "windows",
    [[[0, 1, 2]], [[0], [1]], [0, 1], [[[0, 1]]], np.zeros((0, 2)), []],
    ids=["triple", "singles", "flat", "nested", "no-rows", "empty"],
)
def test_ground_truth_windows_refuse_other_shapes(windows):
    with pytest.raises(ValueError, match=r"gt\.jsonl: qid 7 relevant_windows must be \[M>=1, 2\], got shape"):
        ground_truth_windows({"qid": 7, "relevant_windows": windows}, "gt.jsonl")


def test_unknown_qid_and_empty_ground_truth_are_errors():
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_moments({"x": [[0.0, 1.0]]}, {"q": np.array([[0.0, 1.0]])})
    with pytest.raises(ValueError, match="no query"):
        evaluate_moments({}, {})


def loop_iou(window_a, window_b):
    """IoU of two windows with end > start, as scalar arithmetic (independent of `temporal_iou`)."""
    intersection = max(0.0, min(window_a[1], window_b[1]) - max(window_a[0], window_b[0]))
    return intersection / ((window_a[1] - window_a[0]) + (window_b[1] - window_b[0]) - intersection)


def loop_interpolated_precision(precision, recall):
    """moment_detr's `interpolated_precision_recall` (VOC 2011) as loops, independent of the library's."""
    envelope = [0.0, *precision, 0.0]
    recall = [0.0, *recall, 1.0]
    for index in range(len(envelope) - 2, -1, -1):
        envelope[index] = max(envelope[index], envelope[index + 1])
    return sum(
        (recall[index] - recall[index - 1]) * envelope[index]
        for index in range(1, len(recall))
        if recall[index] != recall[index - 1]
    )


def loop_average_precision(predicted, scores, ground_truth, thresholds):
    """moment_detr's `compute_average_precision_detection`, transcribed as loops (the reference); it calls no
    function of the library under test."""
    order = sorted(range(len(predicted)), key=lambda index: -scores[index])
    ap = []
    for threshold in thresholds:
        locked = [False] * len(ground_truth)
        tp = []
        for index in order:
            ious = np.array([loop_iou(predicted[index], window) for window in ground_truth])
            hit = False
            for j in np.argsort(ious, kind="stable")[::-1]:
                if ious[j] < threshold:
                    break
                if locked[j]:
                    continue
                locked[j] = hit = True
                break
            tp.append(hit)
        hits = np.cumsum(tp)
        precision = hits / np.arange(1, len(tp) + 1)
        ap.append(loop_interpolated_precision(list(precision), list(hits / len(ground_truth))))
    return np.array(ap)


windows_strategy = st.lists(
    st.tuples(st.integers(0, 20), st.integers(1, 10)).map(lambda pair: [pair[0] / 2, pair[0] / 2 + pair[1] / 2]),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(windows_strategy, windows_strategy, st.randoms(use_true_random=False))
def test_vectorised_matching_equals_the_loop_reference(predicted, ground_truth, random):
    predicted, ground_truth = np.array(predicted), np.array(ground_truth)
    scores = np.array([random.choice([0.1, 0.5, 0.9]) for _ in predicted])
    expected = loop_average_precision(predicted, scores, ground_truth, MAP_THRESHOLDS)
    np.testing.assert_allclose(average_precision(predicted, scores, ground_truth), expected)


# ------------------------------------------------------------------------------------------- multiple choice


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (2, 2),
        ("C", 2),
        ("(C)", 2),
        ("C.", 2),
        ("C) a dog", 2),
        ("Answer: C", 2),
        ("The answer is C.", 2),
        ("a dog", 2),
        ("  A DOG ", 2),
        ("E", None),
        (7, None),
        ("I think so", None),
        (None, None),
        (True, None),
        ("the answer is a cat", None),
    ],  # a lower-case "a" is not the letter A
)
def test_parse_choice(answer, expected):
    assert parse_choice(answer, ["a cat", "a bird", "a dog", "a fish"]) == expected


def test_rotation_moves_the_answer_with_its_option():
    options, answer = rotate_options(["a", "b", "c", "d"], 2, 1)
    assert options == ["b", "c", "d", "a"] and options[answer] == "c"
    variants = circular_variants({"qid": 7, "options": ["a", "b", "c"], "answer": 0, "question": "?"})
    assert [v["qid"] for v in variants] == ["7#rot0", "7#rot1", "7#rot2"]
    assert all(v["options"][v["answer"]] == "a" for v in variants)
    assert {v["circular_group"] for v in variants} == {"7"}


def make_items(records):
    return {
        str(r["qid"]): QAItem(
            str(r["qid"]), "v", None, "?", tuple(r["options"]), r["answer"], None, r.get("circular_group")
        )
        for r in records
    }


def test_circular_evaluation_needs_every_rotation_right():
    base = [{"qid": name, "options": ["w", "x", "y", "z"], "answer": 1} for name in ("q1", "q2")]
    questions = make_items([v for record in base for v in circular_variants(record)])
    answers = {qid: "ABCD"[item.answer] for qid, item in questions.items()}
    answers["q2#rot3"] = "A" if answers["q2#rot3"] != "A" else "B"  # one rotation of q2 wrong
    metrics = evaluate_choices(answers, questions)
    assert metrics["accuracy"] == 87.5
    assert metrics["circular_accuracy"] == 50.0
    assert metrics["num_groups"] == 2 and metrics["num_questions"] == 8
    del answers["q1#rot0"]  # missing counts as wrong and invalid
    metrics = evaluate_choices(answers, questions)
    assert metrics["circular_accuracy"] == 0.0 and metrics["num_invalid"] == 1


def test_plain_accuracy_and_errors():
    questions = make_items([{"qid": i, "options": ["a", "b"], "answer": i % 2} for i in range(4)])
    metrics = evaluate_choices({"0": "A", "1": "B", "2": "B", "3": "no idea"}, questions)
    assert metrics == {"accuracy": 50.0, "num_questions": 4, "num_invalid": 1}
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_choices({"9": "A"}, questions)
