"""`vtc compare`: train and evaluate compressors on the same data, at the same token budgets, with the same encoder,
language model, recipe and seeds; one table per budget (accuracy, tokens to the LLM, parameters, FLOPs/MACs,
latency, peak memory) written as JSON + Markdown + an accuracy-vs-tokens plot under the run folder.

Every run starts from the same frozen stage-1 encoder (the `scene` encoder of `configs/model/tiny.yaml`, pre-trained
once and cached in `run.cache_dir`, or whatever the model config names) and the same tiny language model written
once per comparison, so that only the compressor and its budget differ. The uncompressed model (`"none"`) is trained
once per seed and reported beside every budget. The frozen encoder's features of each video are computed once for
all runs, and a run already finished in the folder with the same config is reused (`finished_run`), so a stopped
comparison, or one given more methods or budgets, trains only what is missing. `PRESETS` holds the default
(`"quick"`, within 30 minutes on 2 CPU cores) and the full grid (`"full"`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vtc.bench.cost import count_flops, count_parameters
from vtc.bench.measure import measure
from vtc.budget import configure
from vtc.compressors import list_compressors
from vtc.data.synthetic import SyntheticMoments
from vtc.train.checkpoint import load_model
from vtc.train.config import RESOLVED_CONFIG_NAME, TrainConfig, load_train_config
from vtc.train.data import SyntheticSamples, collate, synthetic_test_samples
from vtc.train.trainer import Trainer, predict_windows, score
from vtc.utils.figures import save_figure
from vtc.utils.io import atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIGS = (CONFIG_DIR / "model" / "tiny.yaml", CONFIG_DIR / "data" / "synthetic.yaml")
FINISHED_NAME = "compare_run.json"  # a finished run's summary and wall time, written after training
METRIC_KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")


PRESETS: dict[str, dict[str, Any]] = {
    # Sized to finish within 30 minutes on a 2-core CPU, fresh machine included (scene-encoder pre-training and
    # encoding): the papers' SSM compressors against the baselines they claim to beat, at one budget, two seeds,
    # on 8 frames per video (16 cost twice as much per step, and the uncompressed run is the costliest).
    "quick": {
        "methods": ["none", "stac", "mambamia", "tome", "tokenlearner"],
        "budgets": [1 / 4],
        "seeds": [0, 1],
        "overrides": ["data.num_frames=8", "optim.max_steps=800", "run.eval_every=100", "data.num_train=1500"],
    },
    # Every registered method at 1/2, 1/8 and 1/32 of the tokens with the benchmark's full recipe (hours here).
    "full": {"methods": list_compressors(), "budgets": [1 / 2, 1 / 8, 1 / 32], "seeds": [0, 1], "overrides": []},
}


@dataclass
class CompareSettings:
    """What to compare and how long to train each run (defaults: the `"quick"` preset)."""

    methods: list[str] = field(default_factory=lambda: list(PRESETS["quick"]["methods"]))
    budgets: list[float] = field(default_factory=lambda: list(PRESETS["quick"]["budgets"]))
    seeds: list[int] = field(default_factory=lambda: list(PRESETS["quick"]["seeds"]))
    config_files: list[str] = field(default_factory=lambda: [str(path) for path in DEFAULT_CONFIGS])
    overrides: list[str] = field(default_factory=lambda: list(PRESETS["quick"]["overrides"]))
    num_test: int = 100
    output_dir: str = "runs/compare"
    progress: bool = True

    @classmethod
    def preset(cls, name: str, **changes: Any) -> CompareSettings:
        """The settings of preset `name` with `changes` (overrides are appended to the preset's)."""
        values = {key: list(value) for key, value in PRESETS[name].items()}
        values["overrides"] += changes.pop("overrides", [])
        return cls(**{**values, **changes})


def base_config(settings: CompareSettings, run_dir: Path, seed: int, compressor: dict[str, Any]) -> TrainConfig:
    """The training config of one run: the shared files and overrides, plus this run's compressor and seed."""
    run_overrides = [
        f"run.output_dir={run_dir}",
        f"run.seed={seed}",
        f"run.progress={str(settings.progress).lower()}",  # a progress bar per run
        "data.cache_in_memory=true",
    ]
    config = load_train_config(settings.config_files, [*settings.overrides, *run_overrides])
    config.model.lmm = {**config.model.lmm, "compressor": compressor}
    return config


def tokens_per_frame(config: TrainConfig) -> int:
    """Tokens per frame N that the compressor sees: the configured encoder's `tokens_per_frame`."""
    from vtc.encoders import build_encoder

    encoder_config = config.model.lmm.get("encoder")
    if encoder_config is None:
        raise ValueError("vtc compare needs an encoder in the model config to know the token grid")
    options = {key: value for key, value in encoder_config.items() if key != "pretrain_steps"}  # a trainer option
    return build_encoder(options).tokens_per_frame


def prepare_predict(checkpoint: str, sample: dict[str, Any]) -> Any:
    """For `vtc.bench.measure`: load a trained model and return one answer's generation (peak memory of inference)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = load_model(Path(checkpoint)).eval()

    def call() -> None:
        with torch.no_grad():
            predict_windows(model, [sample], [0], batch_size=1)

    return call


def run_cost(model: Any, sample: dict[str, Any], checkpoint: Path, repeats: int = 3) -> dict[str, float]:
    """Whole-model cost of one sample: parameters, FLOPs/MACs of the training forward, answer latency, peak MB."""
    batch = collate([sample])
    model.eval()
    with torch.no_grad():
        flops = count_flops(lambda: model(batch))
    latencies = []
    predict_windows(model, [sample], [0], batch_size=1)  # warm-up: the first call in a process pays one-off set-up
    for _ in range(repeats):
        started = time.perf_counter()
        predict_windows(model, [sample], [0], batch_size=1)
        latencies.append(time.perf_counter() - started)
    memory = measure(
        "vtc.compare:prepare_predict",
        threads=torch.get_num_threads(),
        checkpoint=str(checkpoint),
        sample=sample,
    )
    return {
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "latency_s": statistics.median(latencies),
        "peak_mb": memory["peak_mb"],
    }


def finished_run(config: TrainConfig) -> dict[str, Any] | None:
    """The record of a run already trained in `config.run.output_dir` with this exact config (so that a comparison
    that was stopped, or one that adds budgets or methods, does not train it again); else None."""
    output = Path(config.run.output_dir)
    record, saved = output / FINISHED_NAME, output / RESOLVED_CONFIG_NAME
    if not (record.exists() and saved.exists()):
        return None
    previous = load_train_config([saved])
    if dataclasses.replace(previous, run=dataclasses.replace(previous.run, progress=config.run.progress)) != config:
        return None  # trained with other settings (whether it showed a progress bar does not matter)
    finished = json.loads(record.read_text())
    return finished if Path(finished["best_checkpoint"]).exists() else None


def train_and_evaluate(
    config: TrainConfig, test: SyntheticSamples, tokens: tuple[int, int], shared_features: dict[str, Any]
) -> dict[str, Any]:
    """Train one run (frozen-encoder features shared with the other runs), score its best checkpoint on the test
    split, and measure its cost."""
    summary = finished_run(config)
    reused = summary is not None
    if summary is None:
        started = time.perf_counter()
        summary = Trainer(config, shared_features=shared_features).fit()
        summary["train_seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_text(Path(config.run.output_dir) / FINISHED_NAME, json.dumps(summary, indent=2) + "\n")
    checkpoint = Path(summary["best_checkpoint"]) / "model"
    model = load_model(checkpoint)
    metrics = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    compressor = model.compressor
    return {
        "metrics": metrics,
        "llm_tokens": compressor.num_output_tokens(*tokens),
        "compressor_parameters": count_parameters(compressor),
        "train_seconds": summary["train_seconds"],
        "reused": reused,
        "steps": summary["step"],
        "checkpoint": str(checkpoint),
        **run_cost(model, test.sample(0), checkpoint),
    }


def best_constant_window(windows: np.ndarray, duration: float, step: float = 0.5) -> tuple[float, float]:
    """Of the windows on a `step`-second grid of `[0, duration]`, the one with the highest mean IoU with the ground
    truth `windows [N, 2]`: the strongest answer that ignores the video."""
    grid = np.arange(0.0, duration + step / 2, step)
    starts, ends = np.meshgrid(grid, grid, indexing="ij")
    starts, ends = starts[ends > starts], ends[ends > starts]  # [C] candidates
    overlap = np.minimum(ends[:, None], windows[None, :, 1]) - np.maximum(starts[:, None], windows[None, :, 0])
    overlap = overlap.clip(min=0.0)
    union = (ends - starts)[:, None] + (windows[:, 1] - windows[:, 0])[None, :] - overlap
    best = int((overlap / union).mean(axis=1).argmax())
    return float(starts[best]), float(ends[best])


def blind_baseline(train: SyntheticMoments, test: SyntheticSamples) -> dict[str, Any]:
    """The best video-blind answer: the constant window of highest mean IoU on the training windows
    (`best_constant_window`), predicted for every test query."""
    windows = np.array([train.window(index) for index in range(len(train))], dtype=np.float64)
    start, end = best_constant_window(windows, train.duration)
    records = [
        {
            "qid": sample["qid"],
            "pred_relevant_windows": [[start, end, 1.0]],
            "relevant_windows": [list(sample["window"])],
        }
        for sample in (test[index] for index in range(len(test)))
    ]
    metrics = score(records)
    row: dict[str, Any] = {"seeds": 1, "llm_tokens": 0, "window": [start, end]}
    for key in (*METRIC_KEYS, "mAP"):
        row[key], row[f"{key}_std"] = metrics[key], 0.0
    return row


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (sample standard deviation, 0 for one seed) of each metric over seeds; costs averaged."""
    row: dict[str, Any] = {"seeds": len(runs)}
    for key in (*METRIC_KEYS, "mAP"):
        values = [run["metrics"][key] for run in runs]
        row[key] = statistics.fmean(values)
        row[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    for key in ("llm_tokens", "parameters", "compressor_parameters", "gflops", "gmacs", "latency_s", "peak_mb"):
        row[key] = statistics.fmean(run[key] for run in runs)
    row["train_seconds"] = sum(run["train_seconds"] for run in runs)
    return row


def compare(settings: CompareSettings) -> dict[str, Any]:
    """Run the comparison; returns (and writes) `{"settings", "tables": {budget: {method: row}}, "runs"}`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    output = Path(settings.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    probe = base_config(settings, output / "probe", settings.seeds[0], {"name": "none"})
    num_frames, per_frame = probe.data.num_frames, tokens_per_frame(probe)
    uncompressed = num_frames * per_frame
    test = synthetic_test_samples(probe.data, settings.num_test, cache=True)
    plan: list[tuple[str, str, dict[str, Any]]] = [("uncompressed", "none", {"name": "none"})]
    skipped: dict[str, dict[str, str]] = {}
    for fraction in settings.budgets:
        budget = max(int(uncompressed * fraction), 1)
        for method in settings.methods:
            if method == "none":
                continue
            try:
                compressor_config, _ = configure(method, num_frames, per_frame, budget)
            except ValueError as error:
                skipped.setdefault(budget_name(fraction), {})[method] = str(error)
                continue
            compressor_config.pop("dim", None)
            plan.append((budget_name(fraction), method, {"name": method, **compressor_config}))
    runs: list[dict[str, Any]] = []
    shared_features: dict[str, Any] = {}  # every video encoded once by the frozen encoder, for all runs
    for index, (budget, method, compressor) in enumerate(plan, start=1):
        for seed in settings.seeds:
            run_dir = output / "runs" / budget.replace("/", "_") / method / f"seed{seed}"
            if settings.progress:
                print(f"[{index}/{len(plan)}] {method:<13} budget {budget:<12} seed {seed}", flush=True)
            config = base_config(settings, run_dir, seed, compressor)
            result = train_and_evaluate(config, test, (num_frames, per_frame), shared_features)
            runs.append({"budget": budget, "method": method, "seed": seed, "compressor": compressor, **result})
            if settings.progress:
                print(
                    f"    mIoU {result['metrics']['mIoU']:.2f}  tokens {result['llm_tokens']}  "
                    f"trained {result['train_seconds']} s" + (" (reused: trained before)" if result["reused"] else ""),
                    flush=True,
                )
    tables: dict[str, dict[str, Any]] = {}
    for budget in dict.fromkeys(run["budget"] for run in runs):
        methods = dict.fromkeys(run["method"] for run in runs if run["budget"] == budget)
        tables[budget] = {
            method: aggregate([r for r in runs if r["budget"] == budget and r["method"] == method])
            for method in methods
        }
    train_moments = SyntheticMoments(num_videos=probe.data.num_train, **probe.data.synthetic)
    result = {
        "blind": blind_baseline(train_moments, test),
        "settings": settings.__dict__,
        "video": {"frames": num_frames, "tokens_per_frame": per_frame, "uncompressed_tokens": uncompressed},
        "test_videos": len(test),
        "tables": tables,
        "skipped": skipped,
        "runs": runs,
    }
    write_outputs(result, output)
    return result


def budget_name(fraction: float) -> str:
    """`0.125` -> `"1/8"` for the usual fractions, else the decimal."""
    inverse = 1 / fraction
    return f"1/{round(inverse)}" if math.isclose(inverse, round(inverse)) else f"{fraction:g}"


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
    atomic_write_text(output / "compare.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(output / "compare.md", markdown(result))
    plot(result, output / "accuracy_vs_tokens.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="quick",
        help="quick: 5 methods at 1/4, 2 seeds, 8 frames, 800 steps (<= 30 min on 2 CPU cores); full: every method "
        "at 1/2, 1/8, 1/32 with the full recipe (hours). --methods / --budgets / --seeds replace the preset's",
    )
    parser.add_argument("--methods", nargs="+", choices=list_compressors())
    parser.add_argument("--budgets", nargs="+", type=float, help="fractions of the uncompressed token count")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument(
        "--config", nargs="+", default=CompareSettings().config_files, help="training config YAML files"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training config override after the preset's, e.g. optim.max_steps=300 (repeatable)",
    )
    parser.add_argument("--num-test", type=int, default=CompareSettings().num_test, help="held-out test videos")
    parser.add_argument("--out", default=CompareSettings().output_dir, help="run folder")


def run(args: argparse.Namespace) -> int:
    chosen = {"methods": args.methods, "budgets": args.budgets, "seeds": args.seeds}
    settings = CompareSettings.preset(
        args.preset,
        **{key: value for key, value in chosen.items() if value is not None},
        config_files=args.config,
        overrides=args.set,
        num_test=args.num_test,
        output_dir=args.out,
    )
    result = compare(settings)
    print(markdown(result))
    print(f"results: {Path(args.out) / 'compare.json'}\nplot:    {Path(args.out) / 'accuracy_vs_tokens.png'}")
    return 0


__all__ = ["PRESETS", "CompareSettings", "compare"]
