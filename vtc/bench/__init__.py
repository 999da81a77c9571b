"""`vtc bench <name>`: benchmarks that print a table (or one JSON object with `--json`).

Each benchmark module defines `add_arguments(parser)` and `run(args) -> dict` (the JSON result).
"""

from __future__ import annotations

import argparse
import importlib
import json

BENCHMARKS = {
    "scan": ("vtc.bench.scan", "selective scan / Mamba mixer speed and peak memory against transformers and mambapy"),
    "scaling": ("vtc.bench.scaling", "latency and peak memory of every compressor from 16 to 2048 frames"),
    "prefill": ("vtc.bench.prefill", "LLM prefill latency for uncompressed vs compressed token counts"),
    "streaming": ("vtc.bench.streaming", "peak memory of streaming compression from 256 to 4096 frames"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module_name, summary) in BENCHMARKS.items():
        sub = subparsers.add_parser(name, help=summary, description=summary)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
        importlib.import_module(module_name).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    result = module.run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


def format_table(rows: list[dict], columns: list[str]) -> str:
    """Render dict rows as a Markdown table with the given columns (floats to 3 significant digits)."""

    def cell(value) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)
