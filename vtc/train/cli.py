"""`vtc train --config cfg.yaml [--config more.yaml] [--set optim.lr=1e-4 ...] [--resume | --overwrite]`."""

from __future__ import annotations

import argparse
import json

from vtc.train.config import load_train_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", required=True, help="YAML config (repeat to merge, e.g. model then data)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-4")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run's newest intact checkpoint")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="start anew in a folder that holds a run, archiving the old run as <dir>.archived-<YYYYmmdd-HHMMSS>",
    )


def run(args: argparse.Namespace) -> int:
    """Train; a bad config, a folder holding another run or a corrupt checkpoint are user errors (`vtc.cli` prints
    them whole and exits 2)."""
    from vtc.train.trainer import Trainer

    trainer = Trainer(load_train_config(args.config, args.set))
    summary = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if trainer.accelerator.is_main_process:
        print(json.dumps(summary))
    return 0
