"""`vtc train --config cfg.yaml [--config more.yaml] [--set optim.lr=1e-4 ...] [--resume]`."""

from __future__ import annotations

import argparse
import json
import sys

from vtc.train.config import load_train_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", action="append", required=True, help="YAML config (repeat to merge, e.g. model then data)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=1e-4")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")


def run(args: argparse.Namespace) -> int:
    from vtc.train.trainer import Trainer

    try:
        config = load_train_config(args.config, args.set)
    except (OSError, ValueError) as error:
        print(f"vtc train: error: {error}", file=sys.stderr)
        return 2
    trainer = Trainer(config)
    summary = trainer.fit(resume=args.resume)
    if trainer.accelerator.is_main_process:
        print(json.dumps(summary))
    return 0
