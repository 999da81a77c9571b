"""`vtc demo` end to end on a tiny run: the table printed, the timeline plot with the compressors' diagnostics."""

from __future__ import annotations

import json

from vtc.cli import main

TINY_OVERRIDES = [
    "optim.max_steps=2",
    "run.eval_every=2",
    "data.num_val=2",
    "data.num_train=8",
    "model.lmm.encoder.width=4",
    "model.lmm.encoder.pretrain_steps=2",
]


def test_demo_prints_the_table_and_plots_the_timeline(tmp_path, capsys):
    arguments = ["demo", "--methods", "none", "stac", "taa", "--budget", "0.25", "--num-test", "2"]
    arguments += ["--out", str(tmp_path / "demo")]
    for override in [*TINY_OVERRIDES, f"run.cache_dir={tmp_path / 'cache'}"]:
        arguments += ["--set", override]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "### Budget 1/4 of the uncompressed tokens" in printed and "| stac |" in printed and "| taa |" in printed
    result = json.loads((tmp_path / "demo" / "compare.json").read_text())
    assert {run["method"] for run in result["runs"]} == {"none", "stac", "taa"}
    assert (tmp_path / "demo" / "timeline.png").stat().st_size > 10_000
