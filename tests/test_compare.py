"""`vtc compare` end to end on a tiny run: tables, exact token counts, the blind baseline, written outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import save_tiny_base, tiny_run_overrides

from vtc.compressors import list_compressors
from vtc.world.compare.blind import best_constant_window
from vtc.world.compare.presets import PRESETS
from vtc.world.compare.run import CompareSettings, base_config, budget_name, compare, plan_runs
from vtc.world.source import synthetic_test_samples


def test_compare_writes_tables_plot_and_blind_baseline(tmp_path):
    settings = CompareSettings(
        methods=["none", "tome"],
        budgets=[0.25],
        seeds=[0],
        overrides=tiny_run_overrides(tmp_path / "cache"),
        num_test=3,
        output_dir=str(tmp_path),
        progress=False,
    )
    result = compare(settings)
    uncompressed = result["video"]["uncompressed_tokens"]
    assert result["tables"]["uncompressed"]["none"]["llm_tokens"] == uncompressed
    tome = result["tables"]["1/4"]["tome"]
    assert tome["llm_tokens"] == uncompressed // 4
    assert tome["gflops"] < result["tables"]["uncompressed"]["none"]["gflops"]
    assert 0 <= result["blind"]["mIoU"] <= 100 and result["blind"]["llm_tokens"] == 0
    written = json.loads((tmp_path / "compare.json").read_text())
    assert written["tables"].keys() == result["tables"].keys()
    assert "blind: best constant window" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 0
    settings.methods = ["none", "tome", "avgpool3d"]  # adding a method reuses the runs trained before
    again = compare(settings)
    assert [run["reused"] for run in again["runs"]] == [True, True, False]
    assert [run["metrics"] for run in again["runs"][:2]] == [run["metrics"] for run in result["runs"]]
    assert again["tables"]["1/4"].keys() == {"tome", "avgpool3d"}


def test_a_comparison_run_in_parts_merges_their_seeds_and_refuses_another_comparison(tmp_path):
    def settings(seeds: list[int], part: str, **changes) -> CompareSettings:
        fixed = {"methods": ["none"], "budgets": [0.25], "overrides": tiny_run_overrides(tmp_path / "cache")}
        chosen = {"num_test": 3, "progress": False, "measure_memory": False, **changes}
        return CompareSettings(**fixed, **chosen, seeds=seeds, output_dir=str(tmp_path / part))

    first = compare(settings([0], "first"))
    merged = compare(settings([1], "second", merge=[str(tmp_path / "first" / "compare.json")]))
    assert merged["settings"]["seeds"] == [0, 1]
    assert [run["seed"] for run in merged["runs"]] == [0, 1]
    assert merged["runs"][0]["ious"] == first["runs"][0]["ious"]
    assert merged["tables"]["uncompressed"]["none"]["seeds"] == 2
    with pytest.raises(ValueError, match="repeats seed"):
        compare(settings([0], "third", merge=[str(tmp_path / "first" / "compare.json")]))
    with pytest.raises(ValueError, match="num_test: 3 there, 4 here"):
        compare(settings([2], "fourth", merge=[str(tmp_path / "first" / "compare.json")], num_test=4))
    assert not (tmp_path / "fourth" / "runs").exists()  # refused before any training


def test_best_constant_window_maximises_mean_iou():
    assert best_constant_window(np.array([[2.0, 4.0], [2.0, 4.0]]), duration=10.0) == (2.0, 4.0)
    windows = np.array([[0.0, 2.0], [1.0, 3.0], [8.0, 9.0]])
    start, end = best_constant_window(windows, duration=10.0)
    mean = windows.mean(axis=0)

    def mean_iou(s: float, e: float) -> float:
        overlap = np.clip(np.minimum(e, windows[:, 1]) - np.maximum(s, windows[:, 0]), 0, None)
        return float((overlap / ((e - s) + (windows[:, 1] - windows[:, 0]) - overlap)).mean())

    assert abs(mean_iou(start, end) - 4 / 9) < 1e-9 and mean_iou(start, end) > mean_iou(*mean)  # 4/9 is the best


def test_budget_names():
    assert [budget_name(f) for f in (0.5, 1 / 8, 1 / 32, 0.3)] == ["1/2", "1/8", "1/32", "0.3"]


def test_presets_and_their_overrides():
    scratch = CompareSettings()
    assert scratch.methods == PRESETS["scratch"]["methods"] and scratch.budgets == PRESETS["scratch"]["budgets"]
    assert scratch.base is None  # trained from nothing
    quick = CompareSettings.preset("quick")
    assert Path(quick.base, "base.json").is_file()  # the shipped base
    assert (quick.budgets, quick.seeds) == ([1 / 4, 1 / 8], [0, 1, 2])  # issue #15's quick comparison
    assert {"stac", "mambamia", "taa", "tome", "tokenlearner", "avgpool2d", "random", "uniform"} < set(quick.methods)
    full = CompareSettings.preset("full", seeds=[7], overrides=["optim.max_steps=5"], output_dir="x")
    assert full.methods == list_compressors() and full.budgets == [1 / 2, 1 / 8, 1 / 32]
    assert full.seeds == [7] and full.overrides == ["optim.max_steps=5"] and full.output_dir == "x"
    tuned = CompareSettings.preset("quick", overrides=["optim.lr=1e-3"])
    assert tuned.overrides == [*PRESETS["quick"]["overrides"], "optim.lr=1e-3"]  # later overrides win
    assert PRESETS["quick"]["overrides"] != tuned.overrides  # the preset itself is not modified


def test_the_needle_preset_asks_for_a_brief_flash_that_every_frame_sampling_keeps(tmp_path):
    settings = CompareSettings.preset("needle", output_dir=str(tmp_path))
    data = base_config(settings, tmp_path / "probe", 0, {"name": "none"}).data
    test = synthetic_test_samples(data, 6, cache=False)
    for index in range(len(test)):
        sample = test[index]
        start, end = sample["window"]
        assert "flashes on a plain grey screen" in sample["query"] and end - start == pytest.approx(2.0)
        assert ((sample["timestamps"] >= start) & (sample["timestamps"] < end)).sum() >= 1  # a sampled frame shows it


def test_compare_on_a_base_adapts_every_method_and_evaluates_training_free_ones_untrained(tmp_path):
    folder, overrides = save_tiny_base(tmp_path, tmp_path / "cache")
    settings = CompareSettings.preset(
        "base",
        methods=["none", "random", "stac"],
        untrained=["dycoke", "visionzip"],
        budgets=[0.5],
        seeds=[0, 1],
        base=str(folder),
        overrides=overrides,
        num_test=2,
        output_dir=str(tmp_path / "compare"),
        progress=False,
    )
    result = compare(settings)
    assert result["video"] == {"frames": 2, "tokens_per_frame": 4, "uncompressed_tokens": 8}  # the qformer's queries
    assert list(result["tables"]["uncompressed"]) == ["none", "none (no training)"]
    # stac is trained only, dycoke evaluated untrained only; visionzip needs attention, which queries lack
    assert list(result["tables"]["1/2"]) == ["random", "random (no training)", "stac", "dycoke (no training)"]
    assert "attention" in result["skipped"]["1/2"]["visionzip"]
    untrained = [run for run in result["runs"] if run["method"] == "random (no training)"]
    assert [run["steps"] for run in untrained] == [0, 0] and untrained[0]["llm_tokens"] == 4
    assert [run["compressor"]["seed"] for run in untrained] == [0, 1]  # random draws with each run's seed
    trained = [run for run in result["runs"] if run["method"] == "random"]
    assert [run["steps"] for run in trained] == [2, 2] and [run["compressor"]["seed"] for run in trained] == [0, 1]
    dycoke = [run for run in result["runs"] if run["method"] == "dycoke (no training)"]
    assert [run["reused"] for run in dycoke] == [False, True]  # deterministic: evaluated once, stands for both seeds
    assert dycoke[0]["ious"] == dycoke[1]["ious"]
    report = (tmp_path / "compare" / "compare.md").read_text()
    assert "| none (no training) | 8 |" in report  # the base untouched heads the table beside the adapted model
    assert "Winner at 1/2: none" not in report  # an uncompressed row never wins a budget


def test_method_groups_expand_to_their_families():
    from vtc.compressors import Family, compressor_class
    from vtc.world.compare.cli import expand_methods

    free = expand_methods(["training-free"])
    assert {"random", "uniform", "dycoke", "visionzip", "tome", "none"} <= set(free) and free[0] == "none"
    assert all(compressor_class(m).card.family is Family.TRAINING_FREE for m in free)
    ssm = expand_methods(["ssm"])
    assert {"stac", "mambamia", "taa", "storm", "tstar"} <= set(ssm)
    assert set(expand_methods(["baselines"])) == set(list_compressors()) - set(ssm)
    assert expand_methods(["random", "none", "ssm", "stac"]) == ["none", "random", *ssm]  # none first, no repeats


def test_a_method_named_trained_and_untrained_is_planned_once_each_way():
    settings = CompareSettings(methods=["none", "random"], untrained=["random"], budgets=[0.5], base="a-base")
    plan, skipped = plan_runs(settings, 8, 25, attention=False)
    rows = [(budget, method) for budget, method, _ in plan]
    assert rows == [
        ("uncompressed", "none"), ("uncompressed", "none (no training)"),
        ("1/2", "random"), ("1/2", "random (no training)"),
    ]  # fmt: skip
    assert skipped == {}
