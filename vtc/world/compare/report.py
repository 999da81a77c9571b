"""The comparison's report: one Markdown table per budget, the accuracy-vs-tokens plot, and the written outputs
(`compare.json`, `compare.md`, `accuracy_vs_tokens.png`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vtc.utils.figures import save_figure
from vtc.utils.io import atomic_write_text

METRIC_KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")  # the table's accuracy columns (mAP is kept in the JSON)
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "compare.json", "compare.md", "accuracy_vs_tokens.png"


def markdown(result: dict[str, Any]) -> str:
    """One Markdown table per budget; the uncompressed model heads each."""
    columns = ["method", "LLM tokens", *METRIC_KEYS, "params", "GFLOPs", "GMACs", "latency ms", "peak MB"]
    reference = result["tables"].get("uncompressed", {})
    lines = [
        f"Synthetic benchmark, {result['test_videos']} test videos, {result['video']['frames']} frames x "
        f"{result['video']['tokens_per_frame']} tokens ({result['video']['uncompressed_tokens']} uncompressed); "
        f"mean ± std over {len(result['settings']['seeds'])} seed(s).",
    ]
    for budget, rows in result["tables"].items():
        if budget == "uncompressed":
            continue
        lines += ["", f"### Budget {budget} of the uncompressed tokens", ""]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for method, row in {**{"none": reference.get("none")}, **rows}.items():
            if row is None:
                continue
            metrics = [f"{row[key]:.2f} ± {row[key + '_std']:.2f}" for key in METRIC_KEYS]
            lines.append(
                "| " + " | ".join([
                    method, f"{row['llm_tokens']:.0f}", *metrics, f"{row['parameters'] / 1e6:.2f}M",
                    f"{row['gflops']:.3f}", f"{row['gmacs']:.3f}", f"{row['latency_s'] * 1e3:.1f}",
                    f"{row['peak_mb']:.0f}",
                ]) + " |"
            )  # fmt: skip
        blind = result["blind"]
        start, end = blind["window"]
        lines.append(
            f"| blind: best constant window [{start:.1f}, {end:.1f}] s, no video | 0 | "
            + " | ".join(f"{blind[key]:.2f}" for key in METRIC_KEYS)
            + " | - | - | - | - | - |"
        )
        for method, reason in result["skipped"].get(budget, {}).items():
            lines.append(f"\n(skipped {method}: {reason})")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """mIoU (mean ± std over seeds) against tokens to the LLM, one line per method across budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    methods = dict.fromkeys(m for table in result["tables"].values() for m in table)
    for method in methods:
        points = sorted(
            (row["llm_tokens"], row["mIoU"], row["mIoU_std"])
            for table in result["tables"].values()
            for name, row in table.items()
            if name == method
        )
        tokens, miou, spread = zip(*points, strict=True)
        marker = "*" if method == "none" else "o"
        axis.errorbar(tokens, miou, yerr=spread, marker=marker, capsize=3, label=method)
    axis.axhline(result["blind"]["mIoU"], linestyle="--", color="gray", label="blind: best constant window")
    axis.set_xscale("log")
    axis.set_xlabel("visual tokens to the LLM per video")
    axis.set_ylabel("test mIoU")
    axis.set_title("Accuracy vs tokens (synthetic benchmark)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def write_outputs(result: dict[str, Any], output: Path) -> None:
    """`compare.json`, `compare.md` and `accuracy_vs_tokens.png` under `output` (atomic text writes)."""
    atomic_write_text(output / JSON_NAME, json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(output / MARKDOWN_NAME, markdown(result))
    plot(result, output / PLOT_NAME)
