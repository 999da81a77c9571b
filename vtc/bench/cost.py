"""Per-sample cost of a module call: parameters, FLOPs and MACs, latency, and peak memory.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over the whole call: it counts the matrix products
(linear, matmul, bmm, convolutions, scaled-dot-product attention) at 2 FLOPs per multiply-accumulate, so
MACs = FLOPs / 2; element-wise work (norms, activations, the selective scan's recurrence) is not counted.
Latency is the median of a few timed calls in this process; peak memory needs a process of its own (a process's
high-water mark never goes down), so `compressor_cost` measures it through `vtc.bench.measure`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vtc.bench.measure import measure
from vtc.compressors import create_compressor


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(parameter.numel() for parameter in module.parameters())


def count_flops(call: Callable[[], Any]) -> int:
    """FLOPs of one `call()` as counted by `FlopCounterMode` (2 per multiply-accumulate).

    The call runs with autograd enabled: the counter's module tracker fails on parameters fed to a submodule under
    `no_grad`. The forward FLOPs are the same; the graph is dropped with the output.
    """
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        call()
    return counter.get_total_flops()


def median_seconds(call: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls after `warmup` untimed ones."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def module_cost(module: nn.Module, *inputs: Any, repeats: int = 5, **kwargs: Any) -> dict[str, float]:
    """Cost of `module(*inputs, **kwargs)`, timed under `no_grad`, per sample (the first input's dim 0 is the batch).

    Returns:
        `{"parameters", "flops", "macs", "latency_s"}`: whole-module parameters, and FLOPs, MACs and median seconds
        of one call divided by the batch size.
    """
    if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() == 0:
        raise ValueError("the first input must be a batched tensor [B, ...]")
    batch = inputs[0].shape[0]

    def call() -> None:
        with torch.no_grad():
            module(*inputs, **kwargs)

    flops = count_flops(lambda: module(*inputs, **kwargs))
    return {
        "parameters": count_parameters(module),
        "flops": flops / batch,
        "macs": flops / 2 / batch,
        "latency_s": median_seconds(call, repeats) / batch,
    }


def compressor_inputs(num_frames: int, tokens_per_frame: int, dim: int, batch: int = 1) -> torch.Tensor:
    """Random visual tokens `[batch, num_frames, tokens_per_frame, dim]` (seed 0)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, num_frames, tokens_per_frame, dim, generator=generator)


def prepare_compressor(
    method: str, config: dict[str, Any], num_frames: int, tokens_per_frame: int, dim: int, batch: int = 1
) -> Callable[[], None]:
    """The call `vtc.bench.measure` times: one no-grad forward of `method` in eval mode on random tokens."""
    torch.manual_seed(0)
    model = create_compressor(method, dim=dim, **config).eval()
    tokens = compressor_inputs(num_frames, tokens_per_frame, dim, batch)

    def call() -> None:
        with torch.no_grad():
            model(tokens)

    return call


def compressor_cost(
    method: str,
    config: dict[str, Any],
    num_frames: int,
    tokens_per_frame: int,
    dim: int,
    batch: int = 1,
    repeats: int = 3,
    threads: int = 1,
) -> dict[str, float]:
    """Per-sample cost of one compressor forward: `module_cost`'s figures, output tokens, and `peak_mb` of the
    call measured in a fresh process (`nan` with an `"error"` key when that process failed)."""
    torch.manual_seed(0)
    model = create_compressor(method, dim=dim, **config).eval()
    cost = module_cost(model, compressor_inputs(num_frames, tokens_per_frame, dim, batch), repeats=repeats)
    cost["output_tokens"] = model.num_output_tokens(num_frames, tokens_per_frame)
    memory = measure(
        "vtc.bench.cost:prepare_compressor",
        threads=threads,
        method=method,
        config=config,
        num_frames=num_frames,
        tokens_per_frame=tokens_per_frame,
        dim=dim,
        batch=batch,
    )
    cost["peak_mb"] = memory["peak_mb"]
    if "error" in memory:
        cost["error"] = memory["error"]
    return cost
