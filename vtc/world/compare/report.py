"""The comparison's report: one Markdown table per budget (mean ± 95% interval over seeds, retention of the
uncompressed mIoU), a section on what the intervals say, the accuracy-vs-tokens plot with error bars, and the written
outputs (`compare.json`, `compare.md`, `accuracy_vs_tokens.png`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vtc.eval.stats import RESAMPLES
from vtc.utils.figures import save_figure
from vtc.utils.io import atomic_write_text
from vtc.world.compare.intervals import REFERENCE_BUDGET, REFERENCE_METHOD, pairwise, versus_blind

METRIC_KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")  # the table's accuracy columns (mAP is kept in the JSON)
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "compare.json", "compare.md", "accuracy_vs_tokens.png"
RETAINED = 0.9  # a method "retains" the uncompressed accuracy when it keeps this share of its mIoU (issue 15)
AT_BLIND = "at blind level"


def with_interval(mean: float, half_width: float | None) -> str:
    """`"36.60 ± 1.20"`; `"36.60 ± n/a"` when the interval is undefined (one seed)."""
    return f"{mean:.2f} ± " + ("n/a" if half_width is None else f"{half_width:.2f}")


def percent_interval(value: float, interval: list[float]) -> str:
    """`"93.1% [88.0, 98.2]"` from a fraction and its interval (an unbounded end reads inf)."""
    low, high = (f"{100 * bound:.1f}" if math.isfinite(bound) else "inf" for bound in interval)
    return f"{100 * value:.1f}% [{low}, {high}]"


def retention_cell(method: str, row: dict[str, Any]) -> str:
    """The retention column: the reference row says so; an undefined retention reads n/a."""
    if method == REFERENCE_METHOD:
        return "reference"
    return "n/a" if row["retention"] is None else percent_interval(row["retention"], row["retention_interval"])


def budget_table(result: dict[str, Any], budget: str, blind: dict[str, dict[str, Any]]) -> list[str]:
    """The Markdown table of one budget: the uncompressed rows first (the adapted model, and the base untouched when
    the comparison ran on one), the budget's methods, the blind answer."""
    columns = ["method", "LLM tokens", *METRIC_KEYS, "retention", "params", "GFLOPs", "GMACs", "latency ms"]
    columns += ["peak MB", "vs blind"]
    rows = {**result["tables"].get(REFERENCE_BUDGET, {}), **result["tables"][budget]}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for method, row in rows.items():
        if row is None:
            continue
        versus = "above" if blind[budget][method]["above"] else f"**{AT_BLIND}**"
        lines.append(
            "| " + " | ".join([
                method, f"{row['llm_tokens']:.0f}", *(with_interval(row[key], row[f"{key}_ci"]) for key in METRIC_KEYS),
                retention_cell(method, row), f"{row['parameters'] / 1e6:.2f}M", f"{row['gflops']:.3f}",
                f"{row['gmacs']:.3f}", f"{row['latency_s'] * 1e3:.1f}",
                "-" if row["peak_mb"] is None else f"{row['peak_mb']:.0f}", versus,
            ]) + " |"
        )  # fmt: skip
    start, end = result["blind"]["window"]
    lines.append(
        f"| blind: best constant window [{start:.1f}, {end:.1f}] s, no video | 0 | "
        + " | ".join(f"{result['blind'][key]:.2f}" for key in METRIC_KEYS)
        + " | - | - | - | - | - | - | - |"
    )
    return lines


def label(method: str) -> str:
    """A method's name in the text; the uncompressed model says what it is."""
    return f"{method} (uncompressed)" if method == REFERENCE_METHOD else method


def difference_text(pair: dict[str, Any], budget: str) -> str:
    """`"stac > tome at 1/4: +5.1 mIoU [1.2, 9.0]"` (significant) or `"stac vs tome at 1/4: +1.0 mIoU [-2.0, 4.0]"`."""
    low, high = pair["interval"]
    relation = ">" if pair["significant"] else "vs"
    return (
        f"{label(pair['better'])} {relation} {label(pair['worse'])} at {budget}: "
        f"{pair['difference']:+.1f} mIoU [{low:.1f}, {high:.1f}]"
    )


def winner_text(pairs: list[dict[str, Any]], budget: str, uncompressed: set[str]) -> str:
    """Whether one compressed method is significantly above every other compressed method at `budget` (pairs with
    an `uncompressed` row left out)."""
    compressed = [pair for pair in pairs if not uncompressed & {pair["better"], pair["worse"]}]
    methods = list(dict.fromkeys(name for pair in compressed for name in (pair["better"], pair["worse"])))
    if len(methods) < 2:
        return f"Winner at {budget}: fewer than two compressed methods to compare."
    for method in methods:
        beaten = {pair["worse"] for pair in compressed if pair["better"] == method and pair["significant"]}
        if len(beaten) == len(methods) - 1:
            return f"Winner at {budget}: {method}, significantly above every other compressed method."
    leader = max(methods, key=lambda method: sum(pair["better"] == method for pair in compressed))  # best mean
    tied = [pair["worse"] for pair in compressed if pair["better"] == leader and not pair["significant"]]
    tied += [pair["better"] for pair in compressed if pair["worse"] == leader and not pair["significant"]]
    if not tied:
        return f"No single winner at {budget}: {leader} shares no seed with some of the methods."
    return f"No single winner at {budget}: {leader} is not separated from {', '.join(tied)}."


def retention_text(rows: dict[str, Any]) -> str:
    """Which methods retain >= 90% of the uncompressed mIoU, by the interval's lower bound and by the mean only."""
    groups: dict[str, list[str]] = {"lower bound": [], "mean only": [], "below": [], "undefined": []}
    for method, row in rows.items():
        if row["retention"] is None:
            groups["undefined"].append(method)
            continue
        text = f"{method} {percent_interval(row['retention'], row['retention_interval'])}"
        low = row["retention_interval"][0]
        key = "lower bound" if low >= RETAINED else "mean only" if row["retention"] >= RETAINED else "below"
        groups[key].append(text)
    share = f"{100 * RETAINED:.0f}%"
    listed = {key: "; ".join(names) or "none" for key, names in groups.items()}
    sentences = [
        f"Retain >= {share} of the uncompressed mIoU by the retention interval's lower bound: {listed['lower bound']}.",
        f"By the mean only (the interval reaches below {share}): {listed['mean only']}.",
        f"Below {share} by the mean: {listed['below']}.",
    ]
    if groups["undefined"]:
        sentences.append(f"Undefined (no seed shared with uncompressed runs, or their mIoU 0): {listed['undefined']}.")
    return " ".join(sentences)


def intervals_section(result: dict[str, Any], blind: dict[str, dict[str, Any]]) -> list[str]:
    """The section "What the intervals say": per budget, the significant and the unseparated differences, the winner if
    any, which methods retain >= 90% of the uncompressed mIoU, and which rows sit at the blind answer's level."""
    lines = [
        "",
        "## What the intervals say",
        "",
        "± in the tables: the 95% Student-t interval of the mean over seeds (n/a for one seed). A difference is the "
        "mean per-video IoU of one method minus another's on the same seeds and test videos, with its 95% paired "
        f"bootstrap interval over the test videos ({RESAMPLES} resamples, each video's difference averaged over "
        "seeds); a method beats another only where that interval excludes 0. Each pair is tested on its own, with no "
        "correction for the number of pairs. Retention: the method's mIoU over the uncompressed model's, with its "
        f"bootstrap interval. At blind level: the bootstrap interval of the row's mIoU minus the blind answer's "
        f"({result['blind']['mIoU']:.2f}) does not lie above 0.",
    ]
    uncompressed = {REFERENCE_METHOD, *result["tables"].get(REFERENCE_BUDGET, {})}
    for budget, pairs in pairwise(result["runs"]).items():
        significant = [difference_text(pair, budget) for pair in pairs if pair["significant"]]
        unseparated = [difference_text(pair, budget) for pair in pairs if not pair["significant"]]
        at_blind = [label(method) for method, verdict in blind[budget].items() if not verdict["above"]]
        lines += ["", f"### At {budget}", "", "- Significant differences:"]
        lines += [f"  - {text}" for text in significant] or ["  - none"]
        lines += [f"- Not significant: {'; '.join(unseparated) or 'none'}."]
        lines += [f"- {winner_text(pairs, budget, uncompressed)}", f"- {retention_text(result['tables'][budget])}"]
        lines += [f"- At the level of the blind answer: {', '.join(at_blind) or 'none'}."]
    return lines


def base_text(base: str | None) -> str:
    """Which base the rows adapted from (by its folder's name, wherever the repository lies), or none."""
    if base is None:
        return "every model trained from nothing (no base)"
    return f"every method adapted from the base `{Path(base).name}` (`bases/{Path(base).name}` when shipped)"


def markdown(result: dict[str, Any]) -> str:
    """One Markdown table per budget (the uncompressed model heads each), then what the intervals say."""
    blind = versus_blind(result["runs"], result["blind"]["mIoU"])
    lines = [
        f"Synthetic benchmark, {result['test_videos']} test videos, {result['video']['frames']} frames x "
        f"{result['video']['tokens_per_frame']} tokens ({result['video']['uncompressed_tokens']} uncompressed), "
        f"{base_text(result['settings'].get('base'))}; "
        f"mean ± 95% interval half-width over {len(result['settings']['seeds'])} seed(s); retention: % of the "
        "uncompressed mIoU [95% interval].",
    ]
    for budget in result["tables"]:
        if budget == REFERENCE_BUDGET:
            continue
        lines += ["", f"### Budget {budget} of the uncompressed tokens", "", *budget_table(result, budget, blind)]
        for method, reason in result["skipped"].get(budget, {}).items():
            lines.append(f"\n(skipped {method}: {reason})")
    return "\n".join([*lines, *intervals_section(result, blind)]) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """mIoU (mean, error bars: 95% interval over seeds, none for one seed) against tokens to the LLM, one line per
    method across budgets, and the blind answer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    methods = dict.fromkeys(m for table in result["tables"].values() for m in table)
    for method in methods:
        points = sorted(
            (row["llm_tokens"], row["mIoU"], math.nan if row["mIoU_ci"] is None else row["mIoU_ci"])
            for table in result["tables"].values()
            for name, row in table.items()
            if name == method
        )
        tokens, miou, half_width = zip(*points, strict=True)
        marker = "*" if method == REFERENCE_METHOD else "o"
        axis.errorbar(tokens, miou, yerr=half_width, marker=marker, capsize=3, label=method)
    axis.axhline(result["blind"]["mIoU"], linestyle="--", color="gray", label="blind: best constant window")
    axis.set_xscale("log")
    axis.set_xlabel("visual tokens to the LLM per video")
    axis.set_ylabel("test mIoU (mean ± 95% interval over seeds)")
    axis.set_title("Accuracy vs tokens (synthetic benchmark)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)


def write_outputs(result: dict[str, Any], output: Path) -> None:
    """`compare.json` (the result and its `"significance"`: `intervals.pairwise`), `compare.md` and
    `accuracy_vs_tokens.png` under `output` (atomic text writes)."""
    written = {**result, "significance": pairwise(result["runs"])}
    atomic_write_text(output / JSON_NAME, json.dumps(written, indent=2, default=str) + "\n")
    atomic_write_text(output / MARKDOWN_NAME, markdown(result))
    plot(result, output / PLOT_NAME)
