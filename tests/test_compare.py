"""`vtc compare` end to end on a tiny run: tables, exact token counts, the blind baseline, written outputs."""

from __future__ import annotations

import json

from vtc.compare import PRESETS, CompareSettings, budget_name, compare
from vtc.compressors import list_compressors


def test_compare_writes_tables_plot_and_blind_baseline(tmp_path):
    settings = CompareSettings(
        methods=["none", "tome"],
        budgets=[0.25],
        seeds=[0],
        overrides=[
            "optim.max_steps=2",
            "run.eval_every=2",
            "data.num_val=2",
            "data.num_train=8",
            "model.lmm.encoder.width=4",
            "model.lmm.encoder.pretrain_steps=2",
            f"run.cache_dir={tmp_path / 'cache'}",
        ],
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
    assert "blind: mean training window" in (tmp_path / "compare.md").read_text()
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 0
    settings.methods = ["none", "tome", "avgpool3d"]  # adding a method reuses the runs trained before
    again = compare(settings)
    assert [run["reused"] for run in again["runs"]] == [True, True, False]
    assert [run["metrics"] for run in again["runs"][:2]] == [run["metrics"] for run in result["runs"]]
    assert again["tables"]["1/4"].keys() == {"tome", "avgpool3d"}


def test_budget_names():
    assert [budget_name(f) for f in (0.5, 1 / 8, 1 / 32, 0.3)] == ["1/2", "1/8", "1/32", "0.3"]


def test_presets_and_their_overrides():
    quick = CompareSettings()
    assert quick.methods == PRESETS["quick"]["methods"] and quick.budgets == PRESETS["quick"]["budgets"]
    full = CompareSettings.preset("full", seeds=[7], overrides=["optim.max_steps=5"], output_dir="x")
    assert full.methods == list_compressors() and full.budgets == [1 / 2, 1 / 8, 1 / 32]
    assert full.seeds == [7] and full.overrides == ["optim.max_steps=5"] and full.output_dir == "x"
    tuned = CompareSettings.preset("quick", overrides=["optim.lr=1e-3"])
    assert tuned.overrides == [*PRESETS["quick"]["overrides"], "optim.lr=1e-3"]  # later overrides win
    assert PRESETS["quick"]["overrides"] != tuned.overrides  # the preset itself is not modified
