"""`vtc` command line: one sub-command per module.

Each entry of `COMMANDS` names a module that defines `add_arguments(parser)` and `run(args) -> int`; modules are
imported only when their command runs, so `vtc --help` stays fast. Before any command runs, the embedded benchmark
world (`vtc.world`) is imported: it registers the `synthetic` data source and the `scene` encoder that configs name.

Errors: the library raises one of `USER_ERRORS` with a clear message for a mistake of the user's (a bad value, a
missing file, an unknown registry name); `main` prints it as one line, `vtc COMMAND: error: MESSAGE`, and returns 2,
as argparse does for a bad command line. Any other exception is a bug: its traceback is printed and `main` returns 1.
`--debug` (anywhere on the command line) prints the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

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
    "base": ("vtc.world.base", "train, score and export the embedded benchmark's base video LLM (with its card)"),
    "data": ("vtc.world.cli", "data tools: check a data config's splits; write the synthetic benchmark as mp4 files"),
    "features": ("vtc.encoders.cli", "encode videos once into a resumable feature cache (safetensors shards)"),
    "predict": ("vtc.integrations.cli", "answer queries about a video (encoded once), with tokens and stage times"),
}
DEBUG_FLAG = "--debug"
# What the library raises for a user's mistake (KeyError: an unknown registry name; OSError: file access).
USER_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, OSError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtc", description="Video token compression for video LLMs.")
    parser.add_argument(
        DEBUG_FLAG, action="store_true", help="on an error, print the full traceback (also accepted after COMMAND)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, summary) in COMMANDS.items():
        subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def error_message(error: BaseException) -> str:
    """`error`'s message, every line of it (a refused `--resume` lists each config difference, a YAML error its
    line and column; a `KeyError`'s without the quotes `str` adds), else its type's name."""
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    return str(text).strip() or type(error).__name__


def run_command(name: str, argv: list[str]) -> int:
    """Parse `argv` with command `name`'s arguments and run it; its return code (argparse exits 2 on bad usage)."""
    import vtc.world  # noqa: F401  (registers the `synthetic` data source and the `scene` encoder)

    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"vtc {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = DEBUG_FLAG in argv
    argv = [argument for argument in argv if argument != DEBUG_FLAG]
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / the error and exits
    try:
        return run_command(argv[0], argv[1:])
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        print(f"vtc {argv[0]}: error: {error_message(error)}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
