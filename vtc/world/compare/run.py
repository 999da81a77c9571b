"""Running a comparison: settings and presets, the grid of (budget, method, seed) runs, reuse of runs already
finished with the same config, and aggregation over seeds (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vtc.bench.cost import count_parameters
from vtc.budget import configure
from vtc.compressors import Family, compressor_class, takes_argument
from vtc.encoders import build_encoder
from vtc.eval.predict import per_query_iou, predict_windows, score
from vtc.eval.stats import mean_interval
from vtc.lmm.base_model import base_model_config, load_base_model
from vtc.lmm.qformer import QFORMER_DEFAULTS
from vtc.train.checkpoint import load_model
from vtc.train.config import RESOLVED_CONFIG_NAME, TrainConfig, load_train_config
from vtc.train.data import complete_encoder
from vtc.train.trainer import Trainer
from vtc.utils.io import atomic_write_text
from vtc.world.compare.blind import blind_baseline
from vtc.world.compare.costs import run_cost
from vtc.world.compare.intervals import REFERENCE_BUDGET, REFERENCE_METHOD, retention_of, runs_of
from vtc.world.compare.presets import DEFAULT_CONFIGS, PRESETS
from vtc.world.compare.report import METRIC_KEYS, write_outputs
from vtc.world.source import SyntheticSamples, synthetic_test_samples
from vtc.world.synthetic import SyntheticMoments

UNTRAINED = " (no training)"  # the suffix of a training-free method evaluated on the base as it is
FINISHED_NAME = "compare_run.json"  # a finished run's summary and wall time, written after training
Plan = list[tuple[str, str, dict[str, Any]]]  # (budget name, method, compressor config) per grid row


@dataclass
class CompareSettings:
    """What to compare and how long to train each run (defaults: the `"scratch"` preset). With `base` (a base model
    folder, `vtc.lmm.base_model`), every run adapts from it (`model.init_from`) and the training-free methods are
    also evaluated on it without any training (rows `"METHOD (no training)"`; `"none (no training)"` is the base);
    the `untrained` methods are evaluated that way only. A method with a `seed` argument (`random`) gets each run's
    seed; an untrained method without one is evaluated once and stands for every seed (its model is the same)."""

    methods: list[str] = field(default_factory=lambda: list(PRESETS["scratch"]["methods"]))
    untrained: list[str] = field(default_factory=list)
    budgets: list[float] = field(default_factory=lambda: list(PRESETS["scratch"]["budgets"]))
    seeds: list[int] = field(default_factory=lambda: list(PRESETS["scratch"]["seeds"]))
    config_files: list[str] = field(default_factory=lambda: [str(path) for path in DEFAULT_CONFIGS])
    overrides: list[str] = field(default_factory=lambda: list(PRESETS["scratch"]["overrides"]))
    num_test: int = 100
    output_dir: str = "runs/compare"
    progress: bool = True
    base: str | None = None
    measure_memory: bool = True  # each run's peak inference memory, in a fresh process (seconds of start-up each)
    merge: list[str] = field(default_factory=list)  # compare.json files of this comparison run with other seeds

    @classmethod
    def preset(cls, name: str, **changes: Any) -> CompareSettings:
        """The settings of preset `name` with `changes` (overrides are appended to the preset's)."""
        values = {key: list(value) if isinstance(value, list) else value for key, value in PRESETS[name].items()}
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
    if settings.base is not None:
        run_overrides.append(f"model.init_from={settings.base}")
    config = load_train_config(settings.config_files, [*settings.overrides, *run_overrides])
    config.model.lmm = {**config.model.lmm, "compressor": compressor}
    return config


def model_config(config: TrainConfig) -> dict[str, Any]:
    """The run's `VideoLMM` config as training builds it: the base's under `model.lmm` when it adapts from one."""
    lmm = config.model.lmm
    return lmm if config.model.init_from is None else base_model_config(config.model.init_from, lmm)


def tokens_per_frame(config: TrainConfig) -> int:
    """Tokens per frame N that the compressor sees: the qformer's queries when the model has one, else the
    `tokens_per_frame` of the configured encoder, completed by the data source as training completes it (a `scene`
    or `patch` encoder's segmenter is pre-trained once here, and cached)."""
    lmm = model_config(config)
    if lmm.get("qformer") is not None:
        return int({**QFORMER_DEFAULTS, **lmm["qformer"]}["num_queries"])
    if lmm.get("encoder") is None:
        raise ValueError("vtc compare needs an encoder in the model config to know the token grid")
    return build_encoder(complete_encoder(lmm["encoder"], config)).tokens_per_frame


def provides_attention(lmm: dict[str, Any]) -> bool:
    """Whether a `VideoLMM` config gives its compressor the encoder's attention: an encoder with `attention: true`
    and no Q-Former (whose queries have none)."""
    return lmm.get("qformer") is None and bool((lmm.get("encoder") or {}).get("attention"))


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
    config: TrainConfig,
    test: SyntheticSamples,
    tokens: tuple[int, int],
    shared_features: dict[str, Any],
    measure_memory: bool = True,
) -> dict[str, Any]:
    """Train one run (frozen-encoder features shared with the other runs), score its best checkpoint on the test
    split, and measure its cost. A folder holding an unfinished run, or one trained with another config, is archived
    beside it (`Trainer.fit(overwrite=True)`) and trained anew."""
    summary = finished_run(config)
    reused = summary is not None
    if summary is None:
        started = time.perf_counter()
        summary = Trainer(config, shared_features=shared_features).fit(overwrite=True)
        summary["train_seconds"] = round(time.perf_counter() - started, 1)
        atomic_write_text(Path(config.run.output_dir) / FINISHED_NAME, json.dumps(summary, indent=2) + "\n")
    checkpoint = Path(summary["best_checkpoint"]) / "model"
    return evaluate(checkpoint, summary, reused, config, test, tokens, measure_memory)


def untrained_and_evaluate(
    config: TrainConfig, test: SyntheticSamples, tokens: tuple[int, int], measure_memory: bool = True
) -> dict[str, Any]:
    """Put a training-free compressor into the base (`model.init_from`) with no training, save that model as the
    run's checkpoint (its config and weights beside the trained runs'), and score and cost it as they are."""
    checkpoint = Path(config.run.output_dir) / "untrained" / "model"
    model = load_base_model(config.model.init_from, {"compressor": config.model.lmm["compressor"]})
    model.save_pretrained(checkpoint)
    summary = {"train_seconds": 0.0, "step": 0}
    return evaluate(checkpoint, summary, False, config, test, tokens, measure_memory)


def evaluate(
    checkpoint: Path,
    summary: dict[str, Any],
    reused: bool,
    config: TrainConfig,
    test: SyntheticSamples,
    tokens: tuple[int, int],
    measure_memory: bool = True,
) -> dict[str, Any]:
    """Score the model saved in `checkpoint` on the test split and measure its cost: one run's record."""
    model = load_model(checkpoint)
    records = predict_windows(model, test, range(len(test)), config.run.eval_batch_size)
    compressor = model.compressor
    return {
        "metrics": score(records),
        "ious": list(per_query_iou(records).values()),  # per test video, in test order: for paired intervals
        "llm_tokens": compressor.num_output_tokens(*tokens),
        "compressor_parameters": count_parameters(compressor),
        "train_seconds": summary["train_seconds"],
        "reused": reused,
        "steps": summary["step"],
        "checkpoint": str(checkpoint),
        **run_cost(model, test.sample(0), checkpoint, measure_memory=measure_memory),
    }


def aggregate(runs: list[dict[str, Any]], reference: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's mean over seeds and the half-width of its 95% Student-t interval (`KEY_ci`, None for one seed);
    the retention of the `reference` runs' mIoU (the uncompressed model's) with its bootstrap interval
    (`intervals.retention_of`); costs averaged."""
    row: dict[str, Any] = {"seeds": len(runs)}
    for key in (*METRIC_KEYS, "mAP"):
        interval = mean_interval([run["metrics"][key] for run in runs])
        row[key], row[f"{key}_ci"] = interval.mean, interval.half_width
    row.update(retention_of(runs, reference))
    for key in ("llm_tokens", "parameters", "compressor_parameters", "gflops", "gmacs", "latency_s", "peak_mb"):
        values = [run[key] for run in runs]
        row[key] = None if None in values else statistics.fmean(values)  # peak_mb: None when not measured
    row["train_seconds"] = sum(run["train_seconds"] for run in runs)
    return row


def budget_name(fraction: float) -> str:
    """`0.125` -> `"1/8"` for the usual fractions, else the decimal."""
    inverse = 1 / fraction
    return f"1/{round(inverse)}" if math.isclose(inverse, round(inverse)) else f"{fraction:g}"


def plan_runs(
    settings: CompareSettings, num_frames: int, per_frame: int, attention: bool
) -> tuple[Plan, dict[str, dict[str, str]]]:
    """The grid: the uncompressed model once, then every method at every budget (a fraction of the
    `num_frames * per_frame` tokens) with the compressor config that fits it (`vtc.budget.configure`); a method
    that cannot fit a budget, or that needs the encoder's attention where the model has none (`attention`), is
    skipped, with the reason, under that budget's name."""
    uncompressed = num_frames * per_frame
    plan: Plan = [("uncompressed", "none", {"name": "none"})]
    if settings.base is not None:
        plan.append(("uncompressed", f"none{UNTRAINED}", {"name": "none"}))
    untrained_only = [] if settings.base is None else settings.untrained
    skipped: dict[str, dict[str, str]] = {}
    for fraction in settings.budgets:
        budget = max(int(uncompressed * fraction), 1)
        for method in dict.fromkeys([*settings.methods, *untrained_only]):  # once, if named in both
            if method == "none":
                continue
            try:
                if compressor_class(method).uses_attention and not attention:
                    raise ValueError("it needs the encoder's attention, which this model's tokens (queries) lack")
                compressor_config, _ = configure(method, num_frames, per_frame, budget)
            except ValueError as error:
                skipped.setdefault(budget_name(fraction), {})[method] = str(error)
                continue
            compressor_config.pop("dim", None)
            compressor = {"name": method, **compressor_config}
            if method in settings.methods:
                plan.append((budget_name(fraction), method, compressor))
            training_free = compressor_class(method).card.family is Family.TRAINING_FREE
            if settings.base is not None and (training_free or method in untrained_only):
                plan.append((budget_name(fraction), f"{method}{UNTRAINED}", compressor))
    return plan, skipped


def run_grid(
    settings: CompareSettings, plan: Plan, test: SyntheticSamples, tokens: tuple[int, int]
) -> list[dict[str, Any]]:
    """Train (or reuse) and evaluate every row of `plan` with every seed; one record per run."""
    output = Path(settings.output_dir)
    runs: list[dict[str, Any]] = []
    shared_features: dict[str, Any] = {}  # every video encoded once by the frozen encoder, for all runs
    for index, (budget, method, compressor) in enumerate(plan, start=1):
        untrained = method.endswith(UNTRAINED)
        seeded = takes_argument(compressor["name"], "seed")
        evaluated_once: dict[str, Any] | None = None
        for seed in settings.seeds:
            run_dir = output / "runs" / budget.replace("/", "_") / method.replace(" ", "_") / f"seed{seed}"
            if settings.progress:
                print(f"[{index}/{len(plan)}] {method:<13} budget {budget:<12} seed {seed}", flush=True)
            if seeded:
                compressor = {**compressor, "seed": seed}
            config = base_config(settings, run_dir, seed, compressor)
            if untrained and not seeded and evaluated_once is not None:
                result = {**evaluated_once, "reused": True}  # the same model whatever the seed
            elif untrained:
                result = evaluated_once = untrained_and_evaluate(config, test, tokens, settings.measure_memory)
            else:
                result = train_and_evaluate(config, test, tokens, shared_features, settings.measure_memory)
            runs.append({"budget": budget, "method": method, "seed": seed, "compressor": compressor, **result})
            if settings.progress:
                print(
                    f"    mIoU {result['metrics']['mIoU']:.2f}  tokens {result['llm_tokens']}  "
                    f"trained {result['train_seconds']} s" + (" (reused)" if result["reused"] else ""),
                    flush=True,
                )
    return runs


def tables_of(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`{budget: {method: row}}`, each row aggregated over the method's seeds at that budget (run order kept), its
    retention measured against the uncompressed model's runs."""
    reference = runs_of(runs, REFERENCE_BUDGET, REFERENCE_METHOD)
    tables: dict[str, dict[str, Any]] = {}
    for budget in dict.fromkeys(run["budget"] for run in runs):
        methods = dict.fromkeys(run["method"] for run in runs if run["budget"] == budget)
        tables[budget] = {method: aggregate(runs_of(runs, budget, method), reference) for method in methods}
    return tables


# Settings that may differ between the parts of one comparison run with different seeds (`merged_runs`).
PER_PART_SETTINGS = ("seeds", "output_dir", "progress", "measure_memory", "merge")


def merged_runs(settings: CompareSettings, test_videos: int) -> list[dict[str, Any]]:
    """The runs recorded in `settings.merge` (the `compare.json` of the same comparison run elsewhere with other
    seeds: another session or machine), to be aggregated with this one's. Raises `ValueError` where a file's
    settings differ from `settings` in anything but `PER_PART_SETTINGS`, its test set differs, or a seed repeats."""
    own = {key: value for key, value in dataclasses.asdict(settings).items() if key not in PER_PART_SETTINGS}
    seen, runs = set(settings.seeds), []
    for path in settings.merge:
        earlier = json.loads(Path(path).read_text())
        theirs = {key: value for key, value in earlier["settings"].items() if key not in PER_PART_SETTINGS}
        different = sorted(key for key in own.keys() | theirs.keys() if own.get(key) != theirs.get(key))
        if different:
            details = "; ".join(f"{key}: {theirs.get(key)!r} there, {own.get(key)!r} here" for key in different)
            raise ValueError(f"{path} is another comparison and cannot be merged ({details})")
        if earlier["test_videos"] != test_videos:
            raise ValueError(f"{path} was scored on {earlier['test_videos']} test videos, this one on {test_videos}")
        repeated = seen & set(earlier["settings"]["seeds"])
        if repeated:
            raise ValueError(f"{path} repeats seed(s) {sorted(repeated)}; each seed may come from one part only")
        seen |= set(earlier["settings"]["seeds"])
        runs += earlier["runs"]
    return runs


def compare(settings: CompareSettings) -> dict[str, Any]:
    """Run the comparison; returns (and writes) `{"blind", "settings", "video", "test_videos", "tables": {budget:
    {method: row}}, "skipped", "runs"}`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    output = Path(settings.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    probe = base_config(settings, output / "probe", settings.seeds[0], {"name": "none"})
    num_frames, per_frame = probe.data.num_frames, tokens_per_frame(probe)
    test = synthetic_test_samples(probe.data, settings.num_test, cache=True)
    earlier = merged_runs(settings, len(test))  # checked before any training
    plan, skipped = plan_runs(settings, num_frames, per_frame, provides_attention(model_config(probe)))
    runs = sorted([*earlier, *run_grid(settings, plan, test, (num_frames, per_frame))], key=lambda run: run["seed"])
    seeds = sorted({run["seed"] for run in runs})
    train_moments = SyntheticMoments(num_videos=probe.data.num_train, **probe.data.synthetic)
    result = {
        "blind": blind_baseline(train_moments, test),
        "settings": {**dataclasses.asdict(settings), "seeds": seeds},
        "video": {"frames": num_frames, "tokens_per_frame": per_frame, "uncompressed_tokens": num_frames * per_frame},
        "test_videos": len(test),
        "tables": tables_of(runs),
        "skipped": skipped,
        "runs": runs,
    }
    write_outputs(result, output)
    return result
