"""`vtc compare [--preset quick|patch|base|long|needle|scratch|full] [--base DIR] [--methods ...] [--budgets ...]
[--seeds ...] [--set KEY=VALUE ...] [--merge COMPARE_JSON ...]`: run a comparison (`vtc.world.compare.run.compare`),
print its Markdown tables and where its outputs are."""

from __future__ import annotations

import argparse
from pathlib import Path

from vtc.compressors import Family, compressor_class, list_compressors
from vtc.world.compare.presets import PRESETS
from vtc.world.compare.report import JSON_NAME, PLOT_NAME, markdown
from vtc.world.compare.run import CompareSettings, compare

# Names of method groups that `--methods` accepts beside method names: the methods of a family, or all but one.
GROUPS: dict[str, tuple[Family, bool]] = {
    "ssm": (Family.STATE_SPACE, True),
    "trained": (Family.ATTENTION, True),
    "training-free": (Family.TRAINING_FREE, True),
    "baselines": (Family.STATE_SPACE, False),  # every method that is not a state-space one
}


def expand_methods(names: list[str]) -> list[str]:
    """Method names with each group of `GROUPS` replaced by its registered methods (registry order, no repeats,
    `none` first when asked for: the uncompressed reference)."""
    methods: list[str] = []
    for name in names:
        if name in GROUPS:
            family, member = GROUPS[name]
            methods += [m for m in list_compressors() if (compressor_class(m).card.family is family) == member]
        else:
            methods.append(name)
    unique = list(dict.fromkeys(methods))
    return ["none", *[m for m in unique if m != "none"]] if "none" in unique else unique


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        help="the base model folder every method adapts from (default: the preset's; quick and base: the shipped one)",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick (default): 9 methods adapted from the shipped base for 45 steps at 1/4 and 1/8, 3 seeds, the "
        "training-free ones also untrained (within 30 minutes); patch: the quick rows on the patch-token base (5 "
        "x 5 patches per frame, no Q-Former), where TAA and avgpool2d have a grid; base: the same adapted for 150"
        " steps, and the field's training-free video methods untrained; long: the quick rows on 120 s videos of "
        "64 frames with 2-4 s events at 1/8 and 1/16, the window read from the saliency head; needle: the quick "
        "rows asked for a 2 s flash in 30 s videos of 32 frames, at 1/8 and 1/16, read from the saliency head; "
        "scratch: 5 methods trained from nothing at 1/4, 3 seeds, 800 steps; full: every method at 1/2, 1/8, 1/32"
        " from scratch with the full recipe (hours). "
        "--methods / --budgets / --seeds replace the preset's",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=[*list_compressors(), *GROUPS],
        help=f"method names, or groups: {', '.join(GROUPS)} (e.g. --methods none ssm random uniform)",
    )
    parser.add_argument(
        "--untrained",
        nargs="+",
        choices=[*list_compressors(), *GROUPS],
        help="with --base: methods (or groups) evaluated on the base with no training only (default: the preset's, "
        "for base the field's training-free video methods)",
    )
    parser.add_argument("--budgets", nargs="+", type=float, help="fractions of the uncompressed token count")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--config", nargs="+", help="training config YAML files (default: the preset's)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training config override after the preset's, e.g. optim.max_steps=300 (repeatable)",
    )
    parser.add_argument("--num-test", type=int, default=CompareSettings().num_test, help="held-out test videos")
    parser.add_argument("--out", default=CompareSettings().output_dir, help="run folder")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="COMPARE_JSON",
        help="compare.json of the same comparison run with other seeds (another session or machine): its runs join "
        "this one's tables and significance tests (refused if any setting but the seeds differs)",
    )


def run(args: argparse.Namespace) -> int:
    methods = None if args.methods is None else expand_methods(args.methods)
    untrained = None if args.untrained is None else [m for m in expand_methods(args.untrained) if m != "none"]
    chosen = {
        "methods": methods,
        "untrained": untrained,
        "budgets": args.budgets,
        "seeds": args.seeds,
        "config_files": args.config,
        "base": args.base,
    }
    settings = CompareSettings.preset(
        args.preset,
        **{key: value for key, value in chosen.items() if value is not None},
        overrides=args.set,
        num_test=args.num_test,
        output_dir=args.out,
        merge=args.merge,
    )
    result = compare(settings)
    print(markdown(result))
    print(f"results: {Path(args.out) / JSON_NAME}\nplot:    {Path(args.out) / PLOT_NAME}")
    return 0
