"""`vtc base`: train the embedded benchmark's base video LLM uncompressed, score it, and export it with its card.

The papers adapt their compressors from a pretrained video LLM (STAC from BLIP-2 + Flan-T5, MambaMia from a
LLaVA-style model); this is the synthetic world's. `vtc base` trains `configs/model/world_base.yaml` uncompressed on
the default benchmark's moments (`configs/data/synthetic.yaml`, 8 frames per video) or, with `--mixture`, on the
mixture of its tasks (`configs/data/synthetic_mixture.yaml`: moments, the `choice` and the `needle` questions) into
`--run` (a finished run there is reused, an interrupted one resumed), scores the best checkpoint on `--num-test`
held-out test items per task: moments with the generated answer (the papers' readout) and with the saliency head,
beside the best blind answer; multiple-choice tasks by accuracy and circular accuracy, every question asked in its
4 rotations. It writes the base folder (`vtc.lmm.base_model`) with a model card (`base.json` and `README.md`): the
command, steps, data, wall time and accuracy per task. `vtc compare --base DIR` then adapts every method from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from vtc.eval.predict import predict_choices, predict_windows, score, score_choices
from vtc.lmm.base_model import BASE_CONFIG_NAME, load_base_model, save_base_model
from vtc.lmm.config import CHOICE_READOUTS
from vtc.lmm.qformer import QFORMER_DEFAULTS
from vtc.train.checkpoint import load_model
from vtc.train.config import RESOLVED_CONFIG_NAME, DataConfig, TrainConfig, load_train_config
from vtc.train.mixture import MIXTURE_TASK, mixture_counts
from vtc.train.trainer import RESULTS_NAME, Trainer
from vtc.utils.io import atomic_write_text
from vtc.world.compare.blind import blind_baseline
from vtc.world.patch_encoder import DEFAULT_GRID
from vtc.world.source import synthetic_test_samples, variant_task
from vtc.world.synthetic import SyntheticMoments

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
BASE_CONFIGS = (CONFIG_DIR / "model" / "world_base.yaml", CONFIG_DIR / "data" / "synthetic.yaml")
MIXTURE_CONFIGS = (BASE_CONFIGS[0], CONFIG_DIR / "data" / "synthetic_mixture.yaml")
BASE_OVERRIDES = ["data.num_frames=8", "model.lmm.time_tokens=8", "data.num_val=50", "data.cache_in_memory=true"]
DEFAULT_OUT = "bases/world-qformer"
# How a card names a projector kind (`vtc.lmm.projector.PROJECTORS`); a kind not listed is named by itself.
PROJECTOR_NAMES = {"mlp": "MLP projector", "norm_mlp": "LayerNorm + MLP projector"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help="the base folder to write (never overwritten)")
    parser.add_argument("--run", default="runs/base/world-qformer", help="the training run folder")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="training config override")
    parser.add_argument("--num-test", type=int, default=200, help="held-out test items per task")
    parser.add_argument(
        "--mixture",
        action="store_true",
        help="train on the mixture of the benchmark's tasks (configs/data/synthetic_mixture.yaml: moments 0.5, "
        "choice 0.25, needle 0.25; change a share with --set data.mixture.NAME=SHARE, 0 leaving the task out)",
    )
    parser.add_argument(
        "--rescore",
        metavar="BASE",
        help="score the multiple-choice tasks of the existing base folder BASE again, by every readout, on the "
        "number of test items its card names, and rewrite its card (the weights are not touched); no training",
    )


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


def task_test_samples(data: DataConfig, name: str, num_test: int) -> Any:
    """`num_test` held-out test items of one task: of a mixture, a mixture of that task alone (its samples say
    what they ask; the moment task's videos are a moment-only base's test videos)."""
    if data.task == MIXTURE_TASK:
        data = dataclasses.replace(data, mixture={name: 1.0})
    return synthetic_test_samples(data, num_test, cache=True)


def readout_scores(model: Any, config: TrainConfig, num_test: int) -> dict[str, dict[str, float]]:
    """Moment test metrics of `model` with the generated answer (`text`) and, when it has one, the saliency head,
    beside the best blind answer; none when the base learned no moments."""
    if "moment" not in task_counts(config.data):
        return {}
    test = task_test_samples(config.data, "moment", num_test)
    scores = {}
    for readout in ("text", "saliency") if model.saliency_head is not None else ("text",):
        model.config["readout"] = readout
        scores[readout] = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    model.config["readout"] = "text"
    train = SyntheticMoments(num_videos=config.data.num_train, **config.data.synthetic)
    scores["blind"] = blind_baseline(train, test)
    return scores


def question_scores(model: Any, config: TrainConfig, num_test: int) -> dict[str, dict[str, dict[str, float]]]:
    """Per multiple-choice task the base learned and per `choice_readout` (the generated answer, then the likeliest
    option), test accuracy, circular accuracy and unreadable answers (`num_invalid`), every question asked in its 4
    rotations (`predict_choices`)."""
    scores: dict[str, dict[str, dict[str, float]]] = {}
    configured = model.config["choice_readout"]
    for name in task_counts(config.data):
        if variant_task(name) == "choice":
            test = task_test_samples(config.data, name, num_test)
            for readout in CHOICE_READOUTS:
                model.config["choice_readout"] = readout
                records = predict_choices(model, test, range(len(test)), config.run.eval_batch_size)
                metrics = score_choices(records)
                keys = ("accuracy", "circular_accuracy", "num_invalid")
                scores.setdefault(name, {})[readout] = {key: metrics[key] for key in keys}
    model.config["choice_readout"] = configured
    return scores


def card_markdown(card: dict[str, Any]) -> str:
    """The model card as Markdown (the folder's README): moment retrieval by readout, multiple-choice accuracy per
    task, or the note that the base learned moments only."""
    rows = [f"| {name} | {s['mIoU']:.2f} | {s['R1@0.5']:.1f} | {s['R1@0.7']:.1f} |" for name, s in card["test"].items()]
    questions = card.get("questions", {})
    question_rows = [
        f"| {name} | {readout} | {s['accuracy']:.2f} | {s['circular_accuracy']:.2f} | {s['num_invalid']} |"
        for name, readouts in questions.items()
        for readout, s in readouts.items()
    ]
    tasks = card.get("tasks", {"moment": 1.0})
    learned = ", ".join(f"{name} ({share:g})" for name, share in tasks.items())
    moments = ["| readout | mIoU | R1@0.5 | R1@0.7 |", "|---|---|---|---|", *rows, ""] if rows else []
    choices = [
        "Multiple choice, every question asked in its 4 rotations (chance: accuracy 25, circular accuracy 0.39):",
        "",
        "Readouts: `text` generates the answer and reads the option it names; `likelihood` takes the option whose",
        "answer the model scores likeliest (`model.lmm.choice_readout`).",
        "",
        "| task | readout | accuracy | circular accuracy | unreadable answers |",
        "|---|---|---|---|---|",
        *question_rows,
    ]
    not_learned = "Multiple-choice accuracy is not reported: this base learned moment retrieval only (`--mixture`)."
    return "\n".join(
        [
            "# The embedded benchmark's base video LLM",
            "",
            card["model"],
            "",
            f"Re-create: `{card['command']}` ({card['steps']} steps, {card['train_seconds']} s of training here).",
            f"Data: {card['data']}",
            f"Tasks learned (their shares of the training videos): {learned}",
            "",
            f"Held-out test ({card['test_videos']} items per task):",
            "",
            *moments,
            *(choices if question_rows else [not_learned]),
            "",
        ]
    )


def task_counts(data: DataConfig) -> dict[str, int]:
    """How many training videos each task the base learns has (`mixture_counts`; all of them moments without a
    mixture)."""
    if data.task != MIXTURE_TASK:
        return {"moment": data.num_train}
    return {name: count for name, count in mixture_counts(data.mixture, data.num_train).items() if count}


def data_summary(data: DataConfig) -> str:
    """The card's line on the training data: videos, seed, frames and each task's count."""
    counts = ", ".join(f"{count} {name}" for name, count in task_counts(data).items())
    return (
        f"{data.num_train} synthetic training videos (seed {data.synthetic.get('seed', 0)}), "
        f"{data.num_frames} frames each ({counts})"
    )


def model_line(lmm: dict[str, Any], choice_answer: str | None, init_from: str | None = None) -> str:
    """The card's line on the architecture: the patch grid, the Q-Former's queries where there is one, the LM, what
    a multiple-choice answer is (`choice_answer`; None for a base of moments only) and what it started from: a base
    (`init_from`) or a pretrained language model (`lmm.llm.path`, as LLaVA starts from Vicuna)."""
    encoder = lmm.get("encoder") or {}
    grid = encoder.get("grid", DEFAULT_GRID)
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    scale = ", standardized per channel" if encoder.get("standardize") else ""
    stages = [f"frozen patch encoder ({rows} x {cols} tokens per frame{scale})"]
    if lmm.get("qformer") is not None:
        queries = {**QFORMER_DEFAULTS, **lmm["qformer"]}["num_queries"]
        stages.append(f"Q-Former ({queries} queries per frame)")
    answer = f" (a multiple-choice question: the option's {choice_answer})" if choice_answer else ""
    line = " -> ".join(
        [
            *stages,
            PROJECTOR_NAMES.get(projector := lmm.get("projector", "linear"), f"{projector} projector"),
            f"tiny T5 trained in full, LITA time tokens, generated answer `[[<ts>, <te>]]`{answer}",
        ]
    )
    llm_path = (lmm.get("llm") or {}).get("path")
    if init_from is not None:
        return f"{line}; trained on from the base `{init_from}`"
    return line if llm_path is None else f"{line}; the T5 started from `{llm_path}`"


def rescore(directory: Path) -> dict[str, Any]:
    """Score the multiple-choice tasks of the base in `directory` again (`question_scores`, on the data config and
    the number of test items its card names) and rewrite its card (`base.json`, then `README.md`, each
    atomically); returns the card."""
    saved = json.loads((directory / BASE_CONFIG_NAME).read_text())
    card = saved["card"]
    config = load_train_config(
        [CONFIG_DIR.parent / name for name in card["config"]["files"]],
        [*BASE_OVERRIDES, *card["config"]["overrides"]],
    )
    card["questions"] = question_scores(load_base_model(directory), config, card["test_videos"])
    atomic_write_text(directory / BASE_CONFIG_NAME, json.dumps(saved, indent=2))
    atomic_write_text(directory / "README.md", card_markdown(card))
    return card


def run(args: argparse.Namespace) -> int:
    if args.rescore is not None:
        print(card_markdown(rescore(Path(args.rescore))))
        return 0
    files = MIXTURE_CONFIGS if args.mixture else BASE_CONFIGS
    config = load_train_config(files, [*BASE_OVERRIDES, f"run.output_dir={args.run}", *args.set])
    summary = trained_summary(config)
    model = load_model(Path(summary["best_checkpoint"]) / "model")
    test = readout_scores(model, config, args.num_test)
    keys = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")
    card = {
        "model": model_line(
            config.model.lmm, config.data.choice_answer if args.mixture else None, config.model.init_from
        ),
        "command": shlex.join(["vtc", "base", *sys.argv[2:]]),
        "config": {"files": [str(path.relative_to(CONFIG_DIR.parent)) for path in files], "overrides": args.set},
        "steps": summary["step"],
        "train_seconds": summary["train_seconds"],
        "data": data_summary(config.data),
        "tasks": {name: count / config.data.num_train for name, count in task_counts(config.data).items()},
        "test_videos": args.num_test,
        "test": {name: {key: metrics[key] for key in keys} for name, metrics in test.items()},
        "questions": question_scores(model, config, args.num_test),
    }
    folder = save_base_model(model, args.out, card)
    atomic_write_text(folder / "README.md", card_markdown(card))
    print(card_markdown(card))
    print(f"base: {folder}")
    return 0
