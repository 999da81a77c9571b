"""`vtc demo` end to end on a tiny run: the table printed, the timeline plot with the compressors' diagnostics."""

from __future__ import annotations

import json

from tiny_runs import tiny_run_overrides

from vtc.cli import main


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
