"""`vtc compare`: train and evaluate compressors on the same data, at the same token budgets, with the same encoder,
language model, recipe and seeds; one table per budget (accuracy, tokens to the LLM, parameters, FLOPs/MACs,
latency, peak memory) written as JSON + Markdown + an accuracy-vs-tokens plot under the run folder.

Every run starts from the same frozen stage-1 encoder (the `scene` encoder of `configs/model/tiny.yaml`, pre-trained
once and cached in `run.cache_dir`, or whatever the model config names) and the same tiny language model written
once per comparison, so that only the compressor and its budget differ. The uncompressed model (`"none"`) is trained
once per seed and reported beside every budget.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vtc.bench import save_figure
from vtc.bench.cost import count_flops, count_parameters
from vtc.bench.measure import measure
from vtc.budget import configure
from vtc.compressors import list_compressors
from vtc.compressors.base import atomic_write_text
from vtc.data.synthetic import SyntheticMoments
from vtc.train.checkpoint import load_model
from vtc.train.config import TrainConfig, load_train_config
from vtc.train.data import SyntheticSamples, collate
from vtc.train.trainer import Trainer, predict_windows, score

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIGS = (CONFIG_DIR / "model" / "tiny.yaml", CONFIG_DIR / "data" / "synthetic.yaml")
METRIC_KEYS = ("mIoU", "R1@0.3", "R1@0.5", "R1@0.7")


@dataclass
class CompareSettings:
    """What to compare and how long to train each run."""

    methods: list[str] = field(default_factory=list_compressors)
    budgets: list[float] = field(default_factory=lambda: [1 / 2, 1 / 8, 1 / 32])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    config_files: list[str] = field(default_factory=lambda: [str(path) for path in DEFAULT_CONFIGS])
    overrides: list[str] = field(default_factory=list)
    num_test: int = 100
    output_dir: str = "runs/compare"
    progress: bool = True


def base_config(settings: CompareSettings, run_dir: Path, seed: int, compressor: dict[str, Any]) -> TrainConfig:
    """The training config of one run: the shared files and overrides, plus this run's compressor and seed."""
    run_overrides = [
        f"run.output_dir={run_dir}",
        f"run.seed={seed}",
        "run.progress=false",
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


def train_and_evaluate(config: TrainConfig, test: SyntheticSamples, tokens: tuple[int, int]) -> dict[str, Any]:
    """Train one run, score its best checkpoint on the test split, and measure its cost."""
    started = time.perf_counter()
    summary = Trainer(config).fit()
    train_seconds = time.perf_counter() - started
    checkpoint = Path(summary["best_checkpoint"]) / "model"
    model = load_model(checkpoint)
    metrics = score(predict_windows(model, test, range(len(test)), config.run.eval_batch_size))
    compressor = model.compressor
    return {
        "metrics": metrics,
        "llm_tokens": compressor.num_output_tokens(*tokens),
        "compressor_parameters": count_parameters(compressor),
        "train_seconds": round(train_seconds, 1),
        "steps": summary["step"],
        "checkpoint": str(checkpoint),
        **run_cost(model, test.sample(0), checkpoint),
    }


def blind_baseline(train: SyntheticMoments, test: SyntheticSamples) -> dict[str, Any]:
    """The best video-blind answer: the mean training window, predicted for every test query."""
    windows = torch.tensor([train.window(index) for index in range(len(train))], dtype=torch.float64)
    start, end = windows.mean(dim=0).tolist()
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
    test_data = {**probe.data.synthetic, "seed": probe.data.val_seed + 1}
    test = SyntheticSamples(SyntheticMoments(num_videos=settings.num_test, **test_data), num_frames, cache=True)
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
    for index, (budget, method, compressor) in enumerate(plan, start=1):
        for seed in settings.seeds:
            run_dir = output / "runs" / budget.replace("/", "_") / method / f"seed{seed}"
            if settings.progress:
                print(f"[{index}/{len(plan)}] {method:<13} budget {budget:<12} seed {seed}", flush=True)
            config = base_config(settings, run_dir, seed, compressor)
            result = train_and_evaluate(config, test, (num_frames, per_frame))
            runs.append({"budget": budget, "method": method, "seed": seed, "compressor": compressor, **result})
            if settings.progress:
                print(
                    f"    mIoU {result['metrics']['mIoU']:.2f}  tokens {result['llm_tokens']}  "
                    f"trained {result['train_seconds']} s",
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
            f"| blind: mean training window [{start:.1f}, {end:.1f}] s, no video | 0 | "
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
    axis.axhline(result["blind"]["mIoU"], linestyle="--", color="gray", label="blind: mean training window")
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
    defaults = CompareSettings()
    parser.add_argument("--methods", nargs="+", default=defaults.methods, choices=list_compressors())
    parser.add_argument(
        "--budgets", nargs="+", type=float, default=defaults.budgets, help="fractions of the uncompressed token count"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=defaults.seeds)
    parser.add_argument("--config", nargs="+", default=defaults.config_files, help="training config YAML files")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training config override, e.g. optim.max_steps=300 (repeatable)",
    )
    parser.add_argument("--num-test", type=int, default=defaults.num_test, help="held-out test videos")
    parser.add_argument("--out", default=defaults.output_dir, help="run folder")


def run(args: argparse.Namespace) -> int:
    settings = CompareSettings(
        methods=args.methods, budgets=args.budgets, seeds=args.seeds, config_files=args.config,
        overrides=args.set, num_test=args.num_test, output_dir=args.out,
    )  # fmt: skip
    result = compare(settings)
    print(markdown(result))
    print(f"results: {Path(args.out) / 'compare.json'}\nplot:    {Path(args.out) / 'accuracy_vs_tokens.png'}")
    return 0


__all__ = ["CompareSettings", "compare"]
