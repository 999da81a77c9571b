"""`vtc demo` end to end on a tiny base: adapted and untrained rows, the table printed, the timeline plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tiny_runs import save_tiny_base

from vtc.cli import main
from vtc.train.config import load_train_config
from vtc.world.compare.presets import PRESETS
from vtc.world.demo import DEMO_METHODS, DEMO_UNTRAINED, add_arguments, demo_settings


def test_demo_adapts_from_the_base_prints_the_table_and_plots_the_timeline(tmp_path, capsys):
    folder, overrides = save_tiny_base(tmp_path, tmp_path / "cache")
    arguments = ["demo", "--base", str(folder), "--methods", "none", "stac", "--budget", "0.5", "--num-test", "2"]
    arguments += ["--out", str(tmp_path / "demo")]
    for override in overrides:
        arguments += ["--set", override]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "### Budget 1/2 of the uncompressed tokens" in printed and "| stac |" in printed
    assert "| random (no training) |" in printed and "| uniform (no training) |" in printed
    result = json.loads((tmp_path / "demo" / "compare.json").read_text())
    methods = {run["method"] for run in result["runs"]}
    assert methods == {"none", "none (no training)", "stac", "random (no training)", "uniform (no training)"}
    assert all(run["peak_mb"] is None for run in result["runs"])  # not measured: a dash in the table
    assert all(row["peak_mb"] is None for row in result["tables"]["1/2"].values() if row is not None)
    assert "| - | above |" in printed or "| - | **at blind level** |" in printed
    assert (tmp_path / "demo" / "timeline.png").stat().st_size > 10_000


def test_demo_is_the_base_preset_on_the_shipped_base_with_one_seed():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = demo_settings(parser.parse_args(["--set", "optim.lr=1e-3"]))
    assert Path(settings.base, "base.json").is_file()  # the shipped base
    assert (settings.methods, settings.untrained) == (DEMO_METHODS, DEMO_UNTRAINED)
    assert (settings.budgets, settings.seeds) == ([1 / 4], [0])
    assert settings.overrides[: len(PRESETS["quick"]["overrides"])] == PRESETS["quick"]["overrides"]
    config = load_train_config(settings.config_files, settings.overrides)
    assert (config.optim.max_steps, config.optim.lr, config.run.eval_every) == (45, 1e-3, 45)
    assert (config.data.num_frames, config.data.num_train, config.data.num_val) == (8, 360, 16)
    assert not settings.measure_memory  # a fresh process per row costs a minute; vtc compare measures it
