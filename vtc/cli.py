"""`vtc` command line: one sub-command per module.

Each entry of `COMMANDS` names a module that defines `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their command runs, so `vtc --help` stays fast. Before any command runs, the embedded benchmark
world (`vtc.world`) is imported: it registers the `synthetic` data source and the `scene` encoder that configs name.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vtc.world.demo", "run the main job: compressors trained and compared on the embedded default data"),
    "info": ("vtc.info", "list compressors, or print a compressor's configuration and parameter count"),
    "compare": ("vtc.world.compare.cli", "train and evaluate compressors at equal token budgets; tables, plots, costs"),
    "bench": ("vtc.bench", "benchmarks: scan, scaling, prefill, streaming (tables, --json, plots)"),
    "evaluate": (
        "vtc.eval.cli",
        "score predictions against ground truth (moment retrieval or multiple choice)",
    ),
    "train": ("vtc.train.cli", "train a video LLM from YAML configs (accelerate; resumable checkpoints)"),
    "data": ("vtc.world.cli", "data tools: write the synthetic benchmark as mp4 files and annotations"),
    "features": ("vtc.encoders.cli", "encode videos once into a resumable feature cache (safetensors shards)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtc", description="Video token compression for video LLMs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, summary) in COMMANDS.items():
        subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / the error and exits
    name, rest = argv[0], argv[1:]
    import vtc.world  # noqa: F401  (registers the `synthetic` data source and the `scene` encoder)

    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vtc {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
