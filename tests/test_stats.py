"""Statistics for comparisons (vtc.eval.stats) against table values and hand-computed cases, and the per-query IoU
that the paired tests read (vtc.eval.predict.per_query_iou)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vtc.eval.predict import per_query_iou, score
from vtc.eval.stats import mean_interval, paired_bootstrap, retention, t_quantile, t_two_sided_probability

T_TABLE = [  # (confidence, df, two-sided critical value), as printed in any t table
    (0.95, 1, 12.706), (0.95, 2, 4.303), (0.95, 3, 3.182), (0.95, 4, 2.776), (0.95, 10, 2.228), (0.95, 30, 2.042),
    (0.99, 2, 9.925), (0.90, 5, 2.015),
]  # fmt: skip


@pytest.mark.parametrize(("confidence", "df", "expected"), T_TABLE)
def test_t_quantile_matches_the_printed_table(confidence, df, expected):
    assert t_quantile(confidence, df) == pytest.approx(expected, abs=5e-4)


def test_t_distribution_closed_forms():
    assert t_two_sided_probability(0.0, 7) == 0.0
    assert t_two_sided_probability(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 2 arctan(1) / pi
    assert t_two_sided_probability(math.sqrt(2), 2) == pytest.approx(1 / math.sqrt(2))  # t / sqrt(t^2 + 2)
    assert t_two_sided_probability(1e6, 8) == pytest.approx(1.0)


def test_mean_interval_hand_computed_for_three_seeds():
    interval = mean_interval([1.0, 2.0, 3.0])  # s = 1, n = 3: 4.303 / sqrt(3)
    assert interval.mean == 2.0 and interval.count == 3
    assert interval.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert mean_interval([4.0, 4.0]).half_width == 0.0  # no spread is a real 0


def test_one_value_has_an_undefined_interval_not_zero():
    interval = mean_interval([36.6])
    assert interval.mean == 36.6 and interval.half_width is None and interval.count == 1


@pytest.mark.parametrize(
    ("values", "confidence", "message"),
    [
        ([], 0.95, "at least one value"),
        ([1.0, math.nan], 0.95, "finite"),
        ([1.0, 2.0], 1.0, "confidence"),
        ([1.0, 2.0], 0.0, "confidence"),
    ],
)
def test_mean_interval_refuses_bad_input(values, confidence, message):
    with pytest.raises(ValueError, match=message):
        mean_interval(values, confidence)


def test_identical_methods_are_not_significant():
    scores = np.random.default_rng(0).uniform(0, 1, size=(3, 50))
    same = paired_bootstrap(scores, scores.copy())
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    alternating = np.tile([0.1, -0.1], 25)  # differences that cancel: the interval straddles 0
    noisy = paired_bootstrap(scores[0] + alternating, scores[0])
    assert noisy.low < 0 < noisy.high and not noisy.excludes_zero


def test_a_constant_shift_is_significant_in_both_directions():
    rng = np.random.default_rng(1)
    worse = rng.uniform(0, 0.5, size=80)
    better = worse + 0.3 + rng.normal(0, 0.05, size=80)
    up = paired_bootstrap(better, worse)
    assert up.excludes_zero and 0.28 < up.low < up.estimate < up.high < 0.32
    down = paired_bootstrap(worse, better)
    assert down.excludes_zero and down.high < 0 and down.estimate == pytest.approx(-up.estimate)


def test_bootstrap_width_matches_the_standard_error_and_is_reproducible():
    differences = np.random.default_rng(2).normal(0, 1, size=400)
    interval = paired_bootstrap(differences, np.zeros(400))
    standard_error = differences.std(ddof=1) / 20
    assert (interval.high - interval.low) / 2 == pytest.approx(1.96 * standard_error, rel=0.15)
    assert paired_bootstrap(differences, np.zeros(400)) == interval  # fixed seed
    assert paired_bootstrap(differences, np.zeros(400), seed=5) != interval


def test_seeds_are_pooled_per_video_before_resampling_videos():
    # every video: +1 at seed 0, -1 at seed 1; averaged over seeds each video's difference is 0, so resampling
    # videos gives [0, 0] (resampling (seed, video) units would not)
    a = np.array([[1.0] * 30, [-1.0] * 30])
    interval = paired_bootstrap(a, np.zeros_like(a))
    assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_refuses_unpaired_shapes_and_settings():
    with pytest.raises(ValueError, match=r"same shape.*\(3,\) and \(4,\)"):
        paired_bootstrap([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)


def test_retention_is_the_ratio_of_means():
    uncompressed = np.random.default_rng(3).uniform(0.2, 0.8, size=(2, 40))
    exact = retention(0.75 * uncompressed, uncompressed)
    assert exact.estimate == pytest.approx(0.75) and exact.low == pytest.approx(0.75) == exact.high
    hand = retention([1.0, 2.0], [2.0, 2.0])
    assert hand.estimate == 0.75 and hand.low == 0.5 and hand.high == 1.0  # resamples: {1,1} 0.5 ... {2,2} 1.0


def test_retention_with_a_zero_uncompressed_resample_is_unbounded_above():
    interval = retention([1.0, 1.0], [0.0, 1.0])  # a quarter of the resamples draw only the 0
    assert interval.estimate == 2.0 and interval.high == math.inf and interval.low == 1.0


@pytest.mark.parametrize(
    ("compressed", "uncompressed", "message"),
    [([0.5], [0.0], "undefined"), ([-0.1], [0.5], "non-negative"), ([0.5, 0.5], [0.5], "same shape")],
)
def test_retention_refuses_bad_input(compressed, uncompressed, message):
    with pytest.raises(ValueError, match=message):
        retention(compressed, uncompressed)


def test_per_query_iou_hand_computed_and_consistent_with_score():
    records = [
        {"qid": "a", "pred_relevant_windows": [[0.0, 5.0, 1.0], [0.0, 10.0, 0.5]], "relevant_windows": [[0, 10]]},
        {"qid": "b", "pred_relevant_windows": None, "relevant_windows": [[2, 4]]},  # unparseable: 0
        {"qid": "c", "pred_relevant_windows": [[3.0, 6.0, 1.0]], "relevant_windows": [[40, 50], [2, 5]]},
        {"qid": "a", "pred_relevant_windows": [[0.0, 10.0, 1.0]], "relevant_windows": [[0, 10]]},  # duplicate
    ]
    ious = per_query_iou(records)
    assert list(ious) == ["a", "b", "c"]  # first-seen order, the duplicate dropped as score drops it
    assert ious["a"] == 0.5 and ious["b"] == 0.0 and ious["c"] == pytest.approx(0.5)  # top-1 only; best gt
    assert score(records)["mIoU"] == round(100 * float(np.mean(list(ious.values()))), 2)


def test_per_query_iou_refuses_conflicting_ground_truth():
    records = [
        {"qid": "a", "pred_relevant_windows": None, "relevant_windows": [[0, 10]]},
        {"qid": "a", "pred_relevant_windows": None, "relevant_windows": [[0, 9]]},
    ]
    with pytest.raises(ValueError, match="other ground truth"):
        per_query_iou(records)
