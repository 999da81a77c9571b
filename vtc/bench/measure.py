"""Measurements in a fresh process: wall time and peak resident memory of one callable.

Each measurement runs in a spawned interpreter so that its peak memory is its own (the high-water mark of a process
never goes down), and the figure reported is the peak minus the resident size just before the measured call.
"""

from __future__ import annotations

import importlib
import multiprocessing
import resource
import time
from typing import Any


def _resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(target: str, kwargs: dict, threads: int, queue) -> None:
    import torch

    torch.set_num_threads(threads)
    module_name, function_name = target.split(":")
    prepare = getattr(importlib.import_module(module_name), function_name)
    call = prepare(**kwargs)  # builds models and inputs, returns the thing to time
    before = _resident_mb()
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_mb": max(peak - before, 0.0)})


def measure(target: str, threads: int = 2, timeout: float = 3600, **kwargs: Any) -> dict[str, float]:
    """Run `module:function(**kwargs)()` in a fresh process; `{"seconds", "peak_mb"}` of the returned call."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, kwargs, threads, queue))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        return {"seconds": float("nan"), "peak_mb": float("nan"), "error": f"timed out after {timeout} s"}
    if process.exitcode != 0:
        return {"seconds": float("nan"), "peak_mb": float("nan"), "error": f"exit code {process.exitcode}"}
    return queue.get()
