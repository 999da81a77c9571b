"""`Trainer`: trains a `VideoLMM`, or a compressor (and LoRA adapters) inside a Hugging Face video LLM named by
`model.hf` (`vtc.integrations.training.HFVideoLLM`), on moment retrieval, multiple-choice QA or a mixture of tasks
(`data.task`) with `accelerate` (one process or many, unchanged).

AdamW (STAC: lr 1e-5, weight decay 0.01; as Hugging Face's Trainer, no decay on biases and norm weights), linear
warm-up over the first `warmup_ratio` of the steps then cosine decay to 0 (repeated `cycles` times: warm restarts),
gradient clipping, generation-based
validation (`vtc.eval.predict`) every `eval_every` steps with early stopping on validation mIoU (accuracy for
multiple choice, the mean task score for a mixture),
metrics to `metrics.jsonl`, resumable checkpoints (`vtc.train.checkpoint`) that reproduce an uninterrupted run
bit for bit on the same hardware and process count. A run never replaces nor mixes with another run in its folder
(`vtc.train.run_folder`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from vtc.data.batch import collate
from vtc.eval.predict import TASK_EVALUATIONS
from vtc.integrations.training import HFVideoLLM
from vtc.lmm.answers import CHOICE_QUESTION
from vtc.lmm.base_model import base_model_config, load_base_weights
from vtc.lmm.config import DEFAULT_QUESTION
from vtc.lmm.model import build_model, load_config
from vtc.lmm.tiny import save_tiny_lm
from vtc.train.checkpoint import CheckpointStore
from vtc.train.config import RESOLVED_CONFIG_NAME, DataConfig, TrainConfig, save_train_config
from vtc.train.data import BatchOrder, EncodedSamples, build_datasets, complete_encoder, data_source, features_key
from vtc.train.run_folder import CHECKPOINTS_NAME, METRICS_NAME, prepare_run_folder, read_metrics
from vtc.utils.io import atomic_write_text

RESULTS_NAME = "results.json"


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """LR multiplier at `step`: linear from 0 to 1 over `warmup_steps`, then cosine from 1 to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def restarted_warmup_cosine(step: int, total_steps: int, warmup_ratio: float, cycles: int = 1) -> float:
    """LR multiplier at `step` of `total_steps` cut into `cycles` equal parts (the last may be shorter), each a
    `warmup_cosine` warming up over `warmup_ratio` of its steps (at least one)."""
    cycle_steps = math.ceil(total_steps / cycles)
    start = min(step // cycle_steps, cycles - 1) * cycle_steps
    length = min(cycle_steps, total_steps - start)
    return warmup_cosine(step - start, length, max(math.ceil(warmup_ratio * length), 1))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters: matrices decay, biases and norm weights (1-D) do not."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameter (check llm.mode and the compressor)")
    return [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]


def task_model_config(config: dict[str, Any], task: str) -> dict[str, Any]:
    """A `VideoLMM` config fitted to `data.task`: multiple choice asks its prompt whole (the default moment question
    becomes `{query}`) and has no window for a saliency loss (an error when `saliency_loss` is set). A mixture keeps
    the config: its batches say what each row asks (`SequenceBuilder.questions`), and the saliency loss learns from
    its moment rows only."""
    if task != "choice":
        return config
    if config["saliency_loss"] > 0:
        raise ValueError("saliency_loss learns moment windows, which data.task 'choice' has none of: set it to 0")
    return {**config, "question": CHOICE_QUESTION if config["question"] == DEFAULT_QUESTION else config["question"]}


def hf_model_and_data(config: TrainConfig) -> tuple[HFVideoLLM, Any, Any]:
    """The Hugging Face video LLM of `model.hf` (its budget measured on the first training video) and the train and
    validation datasets, after seeding with `run.seed`."""
    from accelerate.utils import set_seed

    set_seed(config.run.seed)
    train, val = build_datasets(config.data)
    return HFVideoLLM.build(config.model.hf, config.data.task, train[0]["frames"]), train, val


class Trainer:
    """Train a `VideoLMM` from a `TrainConfig`; `fit()` returns the run summary (also written to
    `results.json`). Run it directly (one process) or under `accelerate launch` / `torchrun` (several).

    `shared_features` (a dict the caller keeps) lets runs in one process share the frozen encoder's features of
    the same data (`vtc compare` encodes each video once for all its runs)."""

    def __init__(
        self,
        config: TrainConfig,
        accelerator: Any = None,
        shared_features: dict[str, dict[int, dict[str, Any]]] | None = None,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config = config
        # Without a GPU, accelerate needs `cpu=True` to see a torchrun / `accelerate launch` group (gloo).
        self.accelerator = accelerator or Accelerator(
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        self.output_dir = Path(config.run.output_dir)
        self.store = CheckpointStore(self.output_dir / CHECKPOINTS_NAME, self.accelerator)
        self.shared_features = {} if shared_features is None else shared_features

    # ------------------------------------------------------------------------------------------------ setup

    def model_config(self) -> dict[str, Any]:
        """The `VideoLMM` config: the base's with `model.lmm` on top when `model.init_from` names one; `llm.path`
        pointing at the run's tiny LM when `model.tiny_lm` is set (its vocabulary holding the data source's words);
        the encoder config completed by the data source; fitted to the data's task (`task_model_config`)."""
        lmm = dict(self.config.model.lmm)
        if self.config.model.init_from is not None:
            lmm = base_model_config(self.config.model.init_from, lmm)
        if self.config.model.tiny_lm is not None:
            path = self.output_dir / "tiny_lm"
            if self.accelerator.is_main_process and not (path / "config.json").exists():
                words = data_source(self.config.data.source).words
                save_tiny_lm(path, **{"extra_words": words, **self.config.model.tiny_lm})
            self.accelerator.wait_for_everyone()
            lmm["llm"] = {**lmm.get("llm", {}), "path": str(path.resolve())}
        if lmm.get("encoder"):
            lmm["encoder"] = self.completed_encoder(lmm["encoder"])
        return task_model_config(load_config(lmm), self.config.data.task)

    def completed_encoder(self, encoder: dict[str, Any]) -> dict[str, Any]:
        """The encoder config completed by the data source (`complete_encoder`): on the main process first, so
        that whatever it prepares once (pre-trained weights) is cached before the other processes ask for it."""
        if self.accelerator.is_main_process:
            complete_encoder(encoder, self.config)
        self.accelerator.wait_for_everyone()
        return complete_encoder(encoder, self.config)

    def features_cache(self, split: str, encoder_config: dict[str, Any], data: DataConfig) -> dict[int, dict[str, Any]]:
        """The feature cache of a split: shared through `shared_features` when the encoder weights are pinned."""
        key = features_key(split, encoder_config, data)
        return {} if key is None else self.shared_features.setdefault(key, {})

    def setup(self) -> None:
        from accelerate.utils import set_seed

        config, accelerator = self.config, self.accelerator
        if accelerator.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_train_config(config, self.output_dir / RESOLVED_CONFIG_NAME)
        if config.model.hf is not None:
            self.model, self.train_data, self.val_data = hf_model_and_data(config)
        else:
            model_config = self.model_config()
            set_seed(config.run.seed)
            self.model = build_model(model_config)
            if config.model.init_from is not None:
                load_base_weights(self.model, config.model.init_from)
            frozen_encoder = self.model.encoder is not None and not self.model.config["encoder_trainable"]
            if config.data.cache_in_memory and frozen_encoder:
                data = dataclasses.replace(config.data, cache_in_memory=False)
                caches = [self.features_cache(split, model_config["encoder"], data) for split in ("train", "val")]
                self.train_data, self.val_data = (
                    EncodedSamples(samples, self.model.encoder, cache)
                    for samples, cache in zip(build_datasets(data), caches, strict=True)
                )
            else:
                self.train_data, self.val_data = build_datasets(config.data)
        optim = config.optim
        optimizer = torch.optim.AdamW(
            parameter_groups(self.model, optim.weight_decay), lr=optim.lr, betas=tuple(optim.betas)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: restarted_warmup_cosine(step, optim.max_steps, optim.warmup_ratio, optim.cycles)
        )
        self.wrapped, self.optimizer = accelerator.prepare(self.model, optimizer)
        self.order = BatchOrder(
            len(self.train_data),
            optim.batch_size,
            config.run.seed,
            accelerator.num_processes,
            accelerator.process_index,
        )
        self.step, self.best, self.stale_evals = 0, -1.0, 0

    def resume(self) -> None:
        """Continue from the newest intact checkpoint; drop metric lines the interrupted run wrote after it (and a
        torn last line)."""
        state = self.store.load(self.model, self.optimizer, self.scheduler)
        self.order.load_state_dict(state["order"])
        self.step, self.best, self.stale_evals = state["step"], state["best"], state["stale_evals"]
        metrics_path = self.output_dir / METRICS_NAME
        if self.accelerator.is_main_process and metrics_path.exists():
            kept = [record for record in read_metrics(metrics_path)[0] if record["step"] <= self.step]
            atomic_write_text(metrics_path, "".join(json.dumps(record) + "\n" for record in kept))

    # --------------------------------------------------------------------------------------------- running

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to `metrics.jsonl` (main process)."""
        if self.accelerator.is_main_process:
            with open(self.output_dir / METRICS_NAME, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def evaluate(self) -> tuple[dict[str, float | int], list[dict]]:
        """Validation metrics of the data's task (each process predicts its share; predictions gathered everywhere)."""
        from accelerate.utils import gather_object

        accelerator, evaluation = self.accelerator, TASK_EVALUATIONS[self.config.data.task]
        indices = list(range(accelerator.process_index, len(self.val_data), accelerator.num_processes))
        records = evaluation.predict(self.model, self.val_data, indices, self.config.run.eval_batch_size)
        records = gather_object(records) if accelerator.num_processes > 1 else records
        return evaluation.score(records), records

    def train_step(self) -> float:
        """One optimisation step; returns the loss averaged over processes."""
        batch = collate([self.train_data[index] for index in self.order.next_indices()])
        loss = self.wrapped(batch)
        self.accelerator.backward(loss)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.accelerator.clip_grad_norm_(params, self.config.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return self.accelerator.reduce(loss.detach(), reduction="mean").item()

    def checkpoint(self, best: bool) -> None:
        state = {"order": self.order.state_dict(), "best": self.best, "stale_evals": self.stale_evals}
        self.store.save(self.step, self.model, self.optimizer, self.scheduler, state, best)

    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
        """Train until `max_steps` or early stopping; returns (and writes) the summary. A folder that holds a run
        needs `resume` (same config but for `run_folder.SAFE_TO_CHANGE`) or `overwrite` (the old run archived)."""
        from tqdm.auto import tqdm

        prepare_run_folder(self.config, self.accelerator, resume, overwrite)
        self.setup()
        if resume:
            self.resume()
        run, optim = self.config.run, self.config.optim
        metric = TASK_EVALUATIONS[self.config.data.task].metric
        started = time.perf_counter()
        progress = tqdm(
            total=optim.max_steps,
            initial=self.step,
            disable=not (run.progress and self.accelerator.is_main_process),
            desc="train",
        )
        self.wrapped.train()
        stopped_early = False
        while self.step < optim.max_steps and not stopped_early:
            loss = self.train_step()
            self.step += 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
            if self.step % run.log_every == 0:
                lr = self.scheduler.get_last_lr()[0]
                self.log({"step": self.step, "epoch": self.order.epoch, "loss": loss, "lr": lr})
            evaluate_now = self.step % run.eval_every == 0 or self.step == optim.max_steps
            if evaluate_now:
                metrics, _ = self.evaluate()
                improved = metrics[metric] > self.best
                self.best = max(self.best, float(metrics[metric]))
                self.stale_evals = 0 if improved else self.stale_evals + 1
                stopped_early = run.patience is not None and self.stale_evals >= run.patience
                self.log({"step": self.step, "split": "val", **metrics})
                self.checkpoint(best=improved)
            elif run.save_every and self.step % run.save_every == 0:
                self.checkpoint(best=False)
        progress.close()
        summary = {
            "step": self.step,
            "stopped_early": stopped_early,
            f"best_{metric}": self.best,
            "best_checkpoint": str(self.store.pointer("best")),
            "last_checkpoint": str(self.store.pointer("last")),
            "train_seconds_this_process": round(time.perf_counter() - started, 2),
            "num_processes": self.accelerator.num_processes,
        }
        if self.accelerator.is_main_process:
            atomic_write_text(self.output_dir / RESULTS_NAME, json.dumps(summary, indent=2) + "\n")
        return summary
