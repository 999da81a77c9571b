"""The cost of a trained model on one sample: parameters, FLOPs/MACs of the training forward, answer latency, and
the peak memory of one answer measured in a fresh process."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch

from vtc.bench.cost import count_flops, count_parameters
from vtc.bench.measure import measure
from vtc.data.batch import collate
from vtc.eval.predict import predict_windows
from vtc.train.checkpoint import load_model


def prepare_predict(checkpoint: str, sample: dict[str, Any]) -> Any:
    """For `vtc.bench.measure`: load a trained model and return one answer's generation (peak memory of inference)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = load_model(Path(checkpoint)).eval()

    def call() -> None:
        with torch.no_grad():
            predict_windows(model, [sample], [0], batch_size=1)

    return call


def run_cost(
    model: Any, sample: dict[str, Any], checkpoint: Path, repeats: int = 3, measure_memory: bool = True
) -> dict[str, float | None]:
    """Whole-model cost of one sample: parameters, FLOPs/MACs of the training forward, answer latency, peak MB (in a
    fresh process, a few seconds of start-up each; None without `measure_memory`)."""
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
    memory = {"peak_mb": None}
    if measure_memory:
        threads = torch.get_num_threads()
        memory = measure(f"{__name__}:prepare_predict", threads=threads, checkpoint=str(checkpoint), sample=sample)
    return {
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "gflops": flops / 1e9,
        "gmacs": flops / 2e9,
        "latency_s": statistics.median(latencies),
        "peak_mb": memory["peak_mb"],
    }
