"""`vtc base`: train the embedded benchmark's base video LLM uncompressed, score it, and export it with its card.

The papers adapt their compressors from a pretrained video LLM (STAC from BLIP-2 + Flan-T5, MambaMia from a
LLaVA-style model); this is the synthetic world's. `vtc base` trains `configs/model/world_base.yaml` on the default
benchmark (`configs/data/synthetic.yaml`, 8 frames per video) into `--run` (a finished run there is reused, an
interrupted one resumed), scores the best checkpoint on `--num-test` held-out test videos with the generated answer
(the papers' readout) and with the saliency head, beside the best blind answer, and writes the base folder
(`vtc.lmm.base_model`) with a model card (`base.json` and `README.md`): the command, steps, data, wall time and
accuracy. `vtc compare --base DIR` then adapts every method from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from vtc.eval.predict import predict_windows, score
from vtc.lmm.base_model import save_base_model
from vtc.train.checkpoint import load_model
from vtc.train.config import RESOLVED_CONFIG_NAME, TrainConfig, load_train_config
from vtc.train.trainer import RESULTS_NAME, Trainer
from vtc.utils.io import atomic_write_text
from vtc.world.compare.blind import blind_baseline
from vtc.world.source import synthetic_test_samples
from vtc.world.synthetic import SyntheticMoments

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
BASE_CONFIGS = (CONFIG_DIR / "model" / "world_base.yaml", CONFIG_DIR / "data" / "synthetic.yaml")
BASE_OVERRIDES = ["data.num_frames=8", "model.lmm.time_tokens=8", "data.num_val=50", "data.cache_in_memory=true"]
DEFAULT_OUT = "bases/world-qformer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="the base folder to write (never overwritten)")
    parser.add_argument("--run", default="runs/base/world-qformer", help="the training run folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--num-test", type=int, default=200, help="held-out test videos")


def trained_summary(config: TrainConfig) -> dict[str, Any]:
    """The summary of the run in `config.run.output_dir`: read when it finished with this config, else trained
    (resumed when a checkpoint is there); `train_seconds` is the training's own wall time (the trainer's)."""
    output = Path(config.run.output_dir)
    results, saved = output / RESULTS_NAME, output / RESOLVED_CONFIG_NAME
    if saved.exists():
        previous = load_train_config([saved])
        if dataclasses.replace(previous, run=dataclasses.replace(previous.run, progress=config.run.progress)) != config:
            raise ValueError(f"{output} holds a run with another config: choose another --run folder")
    if results.exists():
        summary = json.loads(results.read_text())
    else:
        summary = Trainer(config).fit(resume=(output / "checkpoints").exists())
    return {**summary, "train_seconds": summary["train_seconds_this_process"]}


def readout_scores(model: Any, config: TrainConfig, num_test: int) -> dict[str, dict[str, float]]:
    """Test metrics of `model` with the generated answer (`text`) and, when it has one, the saliency head."""
    test = synthetic_test_samples(config.data, num_test, cache=True)
    scores = {}
    for readout in ("text", "saliency") if model.saliency_head is not None else ("text",):
        model.config["readout"] = readout
        scores[readout] = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    model.config["readout"] = "text"
    train = SyntheticMoments(num_videos=config.data.num_train, **config.data.synthetic)
    scores["blind"] = blind_baseline(train, test)
    return scores


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown (the folder's README)."""
    rows = [f"| {name} | {s['mIoU']:.2f} | {s['R1@0.5']:.1f} | {s['R1@0.7']:.1f} |" for name, s in card["test"].items()]
    return "\n".join(
        [
            "# The embedded benchmark's base video LLM",
            "",
            card["model"],
            "",
            f"Re-create: `{card['command']}` ({card['steps']} steps, {card['train_seconds']} s of training here).",
            f"Data: {card['data']}",
            "",
            f"Held-out test ({card['test_videos']} videos):",
            "",
            "| readout | mIoU | R1@0.5 | R1@0.7 |",
            "|---|---|---|---|",
            *rows,
            "",
            "Multiple-choice accuracy is not reported: this base learned moment retrieval only (issue #15: a mixture).",
            "",
        ]
    )


def run(args: argparse.Namespace) -> int:
    config = load_train_config(BASE_CONFIGS, [*BASE_OVERRIDES, f"run.output_dir={args.run}", *args.set])
    summary = trained_summary(config)
    model = load_model(Path(summary["best_checkpoint"]) / "model")
    test = readout_scores(model, config, args.num_test)
    keys = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")
    card = {
        "model": "frozen patch encoder (10 x 10 tokens per frame) -> Q-Former (32 queries per frame) -> MLP projector "
        "-> tiny T5 trained in full, LITA time tokens, generated answer `[[<ts>, <te>]]`",
        "command": shlex.join(["vtc", "base", *sys.argv[2:]]),
        "config": {"files": [str(path.relative_to(CONFIG_DIR.parent)) for path in BASE_CONFIGS], "overrides": args.set},
        "steps": summary["step"],
        "train_seconds": summary["train_seconds"],
        "data": f"{config.data.num_train} synthetic training videos (seed {config.data.synthetic.get('seed', 0)}), "
        f"{config.data.num_frames} frames each",
        "test_videos": args.num_test,
        "test": {name: {key: metrics[key] for key in keys} for name, metrics in test.items()},
    }
    folder = save_base_model(model, args.out, card)
    atomic_write_text(folder / "README.md", card_markdown(card))
    print(card_markdown(card))
    print(f"base: {folder}")
    return 0
