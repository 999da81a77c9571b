"""`vtc demo` end to end on a tiny run: the table printed, the timeline plot with the compressors' diagnostics."""

from __future__ import annotations

import argparse
import json

from tiny_runs import tiny_run_overrides

from vtc.cli import main
from vtc.train.config import load_train_config
from vtc.world.compare.run import PRESETS
from vtc.world.demo import add_arguments, demo_settings


def test_demo_prints_the_table_and_plots_the_timeline(tmp_path, capsys):
    arguments = ["demo", "--methods", "none", "stac", "taa", "--budget", "0.25", "--num-test", "2"]
    arguments += ["--out", str(tmp_path / "demo")]
    for override in tiny_run_overrides(tmp_path / "cache"):
        arguments += ["--set", override]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "### Budget 1/4 of the uncompressed tokens" in printed and "| stac |" in printed and "| taa |" in printed
    result = json.loads((tmp_path / "demo" / "compare.json").read_text())
    assert {run["method"] for run in result["runs"]} == {"none", "stac", "taa"}
    assert (tmp_path / "demo" / "timeline.png").stat().st_size > 10_000


def test_demo_is_the_quick_preset_with_one_seed_and_500_steps():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = demo_settings(parser.parse_args(["--set", "optim.lr=1e-3"]))
    quick = PRESETS["quick"]
    assert (settings.methods, settings.budgets, settings.seeds) == (quick["methods"], quick["budgets"], [0])
    assert settings.overrides[: len(quick["overrides"])] == quick["overrides"]
    config = load_train_config(settings.config_files, settings.overrides)
    assert (config.optim.max_steps, config.optim.lr, config.run.eval_every) == (500, 1e-3, 100)
    assert (config.data.num_frames, config.data.num_train, config.data.num_val) == (8, 1000, 50)
