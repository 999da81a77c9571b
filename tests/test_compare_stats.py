"""`vtc compare`'s intervals on hand-built run records (no training): rows with a Student-t interval over seeds and
a retention interval, the paired differences at each budget, the blind-level flag, and the report's words."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vtc.world.compare.intervals import pairwise, versus_blind
from vtc.world.compare.report import markdown, write_outputs
from vtc.world.compare.run import aggregate, tables_of

VIDEOS = 40
SEEDS = (0, 1, 2)
BASE = np.random.default_rng(0).uniform(0.3, 0.9, size=VIDEOS)  # the uncompressed model's per-video IoU
ALTERNATING = np.tile([1.0, -1.0], VIDEOS // 2)  # per-video noise whose mean is exactly 0


def run_record(budget: str, method: str, seed: int, ious: np.ndarray) -> dict:
    """A run as `run_grid` records it, its metrics computed from `ious`."""
    metrics = {key: 100 * float(np.mean(ious >= threshold)) for key, threshold in (("R1@0.3", 0.3), ("R1@0.5", 0.5))}
    metrics |= {"mIoU": 100 * float(ious.mean()), "R1@0.7": 100 * float(np.mean(ious >= 0.7)), "mAP": 10.0 + seed}
    costs = {"parameters": 1e6, "compressor_parameters": 10.0, "gflops": 1.0, "gmacs": 0.5, "latency_s": 0.01}
    return {
        "budget": budget, "method": method, "seed": seed, "metrics": metrics, "ious": ious.tolist(),
        "llm_tokens": 200 if method == "none" else 50, "train_seconds": 1.5, "peak_mb": 10.0, **costs,
    }  # fmt: skip


def uncompressed(seed: int) -> np.ndarray:
    """The uncompressed model at `seed`: the base IoUs, 2% lower per seed."""
    return BASE * (1 - 0.02 * seed)


def hand_built_runs() -> list[dict]:
    """none; stac keeps 95% of every video's IoU; tome is stac - 0.2 everywhere; random is tome with noise of mean
    0; avgpool2d keeps 92% on average with noise, so its retention interval reaches below 90%."""
    methods = {
        "stac": lambda seed: 0.95 * uncompressed(seed),
        "tome": lambda seed: 0.95 * uncompressed(seed) - 0.2,
        "random": lambda seed: 0.95 * uncompressed(seed) - 0.2 + 0.01 * ALTERNATING,
        "avgpool2d": lambda seed: 0.92 * uncompressed(seed) + 0.15 * ALTERNATING,
    }
    runs = [run_record("uncompressed", "none", seed, uncompressed(seed)) for seed in SEEDS]
    return runs + [run_record("1/4", method, seed, ious(seed)) for method, ious in methods.items() for seed in SEEDS]


def result_of(runs: list[dict], blind_miou: float) -> dict:
    """The dict `compare` returns, around hand-built runs."""
    blind = {"mIoU": blind_miou, "R1@0.3": 1.0, "R1@0.5": 1.0, "R1@0.7": 0.0, "window": [2.0, 6.0]}
    video = {"frames": 8, "tokens_per_frame": 25, "uncompressed_tokens": 200}
    return {
        "blind": blind, "settings": {"seeds": list(SEEDS)}, "video": video, "test_videos": VIDEOS,
        "tables": tables_of(runs), "skipped": {}, "runs": runs,
    }  # fmt: skip


def test_a_row_holds_the_mean_and_the_student_t_half_width_over_seeds():
    runs = hand_built_runs()
    row = aggregate(runs[:3], runs[:3])
    first = 100 * BASE.mean()  # per seed: first, 0.98 first, 0.96 first -> s = 0.02 first
    assert row["mIoU"] == pytest.approx(0.98 * first)
    assert row["mIoU_ci"] == pytest.approx(4.3027 * 0.02 * first / math.sqrt(3), rel=1e-4)
    assert row["mAP"] == 11.0 and row["mAP_ci"] == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4)
    assert row["seeds"] == 3 and row["train_seconds"] == 4.5 and row["llm_tokens"] == 200
    assert "mIoU_std" not in row


def test_one_seed_leaves_the_interval_undefined():
    runs = hand_built_runs()
    row = aggregate([runs[0]], [runs[0]])
    assert row["mIoU_ci"] is None and row["R1@0.5_ci"] is None and row["retention"] == 1.0


def test_retention_against_the_uncompressed_runs():
    tables = tables_of(hand_built_runs())
    assert list(tables) == ["uncompressed", "1/4"] and list(tables["1/4"]) == ["stac", "tome", "random", "avgpool2d"]
    stac = tables["1/4"]["stac"]
    assert stac["retention"] == pytest.approx(0.95) and stac["retention_interval"] == pytest.approx([0.95, 0.95])
    avgpool = tables["1/4"]["avgpool2d"]
    assert avgpool["retention"] == pytest.approx(0.92)
    low, high = avgpool["retention_interval"]
    assert low < 0.9 < 0.92 < high


def test_retention_is_undefined_without_a_shared_seed_or_with_a_zero_reference():
    runs = hand_built_runs()
    later = [{**run, "seed": 9} for run in runs[3:6]]
    assert aggregate(later, runs[:3])["retention"] is None
    zero = [{**run, "ious": [0.0] * VIDEOS} for run in runs[:3]]
    row = aggregate(runs[3:6], zero)
    assert row["retention"] is None and row["retention_interval"] is None


def test_pairwise_differences_every_pair_with_the_uncompressed_model():
    pairs = {(pair["better"], pair["worse"]): pair for pair in pairwise(hand_built_runs())["1/4"]}
    assert len(pairs) == 10  # 5 members, the uncompressed one included
    shift = pairs[("stac", "tome")]
    assert shift["significant"] and shift["difference"] == pytest.approx(20.0)
    assert shift["interval"] == pytest.approx([20.0, 20.0]) and shift["seeds"] == 3
    noise = pairs.get(("tome", "random")) or pairs[("random", "tome")]
    assert not noise["significant"] and noise["interval"][0] <= 0 <= noise["interval"][1]
    assert not pairs[("stac", "avgpool2d")]["significant"]
    assert all(pairs[("none", method)]["significant"] for method in ("stac", "tome", "random", "avgpool2d"))


def test_methods_without_a_shared_seed_are_not_paired():
    runs = hand_built_runs()
    moved = [{**run, "seed": run["seed"] + 10} if run["method"] == "tome" else run for run in runs]
    names = {(pair["better"], pair["worse"]) for pair in pairwise(moved)["1/4"]}
    assert len(names) == 6 and not any("tome" in pair for pair in names)  # tome shares no seed with the others


def test_versus_blind_flags_rows_not_above_the_blind_answer():
    tome_miou = 100 * np.mean([0.95 * uncompressed(seed) - 0.2 for seed in SEEDS])
    verdicts = versus_blind(hand_built_runs(), tome_miou)["1/4"]
    assert not verdicts["tome"]["above"] and not verdicts["random"]["above"]
    assert verdicts["tome"]["difference"] == pytest.approx(0.0, abs=1e-9)
    assert verdicts["stac"]["above"] and verdicts["none"]["above"] and verdicts["avgpool2d"]["above"]


def test_the_report_says_what_the_intervals_say():
    tome_miou = 100 * np.mean([0.95 * uncompressed(seed) - 0.2 for seed in SEEDS])
    text = markdown(result_of(hand_built_runs(), tome_miou))
    table = text[: text.index("## What the intervals say")]
    assert "| none | 200 | " in table and "| reference |" in table and "95.0% [95.0, 95.0]" in table
    assert table.count("**at blind level**") == 2  # tome and random
    said = text[text.index("## What the intervals say") :]
    assert "stac > tome at 1/4: +20.0 mIoU [20.0, 20.0]" in said
    assert "stac vs avgpool2d at 1/4: +" in said  # not separated: listed, not claimed
    assert "No single winner at 1/4: stac is not separated from avgpool2d." in said
    assert "by the retention interval's lower bound: stac 95.0% [95.0, 95.0]." in said
    assert "By the mean only (the interval reaches below 90%): avgpool2d 92.0% [" in said
    assert "Below 90% by the mean: tome " in said and "; random " in said
    assert "At the level of the blind answer: tome, random." in said


def test_the_report_names_the_base_its_rows_adapted_from():
    result = result_of(hand_built_runs(), 1.0)
    assert "every model trained from nothing (no base)" in markdown(result)
    result["settings"]["base"] = "/somewhere/project/bases/world-patch"
    header = markdown(result).splitlines()[0]
    assert "adapted from the base `world-patch`" in header and "/somewhere" not in header


def test_a_clear_winner_is_named_and_one_seed_reads_n_a():
    runs = [run for run in hand_built_runs() if run["method"] != "avgpool2d" and run["seed"] == 0]
    result = result_of(runs, 1.0)
    result["settings"]["seeds"] = [0]
    text = markdown(result)
    assert "Winner at 1/4: stac, significantly above every other compressed method." in text
    assert "± n/a" in text and "At the level of the blind answer: none." in text


def test_written_outputs_carry_the_significance_and_the_plot(tmp_path):
    runs = hand_built_runs()
    write_outputs(result_of(runs, 30.0), tmp_path)
    written = json.loads((tmp_path / "compare.json").read_text())
    assert written["significance"] == json.loads(json.dumps(pairwise(runs)))
    assert written["tables"]["1/4"]["stac"]["mIoU_ci"] > 0
    assert "## What the intervals say" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 10_000


def test_no_winner_is_claimed_across_methods_that_share_no_seed():
    tome = 0.95 * uncompressed(0) - 0.2
    runs = [
        run_record("uncompressed", "none", 0, uncompressed(0)),
        run_record("1/4", "stac", 0, 0.95 * uncompressed(0)),
        *(run_record("1/4", "tome", seed, tome) for seed in (0, 1)),
        run_record("1/4", "random", 1, tome - 0.1),  # below tome, never trained with stac's seed
    ]
    text = markdown(result_of(runs, 1.0))
    assert "stac > tome at 1/4" in text and "tome > random at 1/4" in text and "stac > random" not in text
    assert "No single winner at 1/4: stac shares no seed with some of the methods." in text
