"""Measurements in a fresh process: wall time and peak resident memory of one callable.

Each measurement runs in a spawned interpreter so that its peak memory is its own, and the figure reported is the
peak resident size during the measured call minus the resident size just before it. The peak is the process's
`VmHWM`, reset just before the call (Linux `clear_refs`), not `ru_maxrss`: that one keeps the parent's resident size
across the spawn's exec and would report the parent's memory, not the call's.

With `exact_host_memory`, the child first fixes glibc's allocator thresholds (`mallopt`): every block of 64 KiB or
more is mapped on its own and unmapped when freed, and freed heap tops are trimmed. By default glibc raises its mmap
threshold after each free (up to 32 MiB) and keeps freed blocks on its heaps, so the resident peak of a long loop of
same-sized allocations drifts with fragmentation; the fixed thresholds make it the live memory's peak (at the cost
of a page fault per large allocation, so timings taken this way are not comparable to the others).

When the prepared call uses CUDA (CUDA is initialised once it is built), each call is followed by a synchronisation
and the peak is the GPU's (`torch.cuda.max_memory_allocated` during the call minus the allocation before it); the host
figure is then reported as `host_peak_mb`.

`measure_interleaved` times several variants of one call in a single fresh process, in turn (a, b, a, b, ...): a
drift of the machine's speed during the run then slows every variant alike, so their ratio is steadier than the
ratio of two separate measurements (no memory figure).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import multiprocessing
import resource
import statistics
import time
from typing import Any


def _resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _reset_peak() -> None:
    """Restart this process's peak resident size (`VmHWM`) from its current size (Linux >= 4.0; else kept)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
EXACT_MMAP_THRESHOLD = 64 * 1024


def _fix_allocator_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds (see the module docstring); False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, EXACT_MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, EXACT_MMAP_THRESHOLD)
    )


def _peak_mb() -> float:
    """This process's peak resident size (`VmHWM`, of this executable image only), in MB."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:")) / 1024


def _reset_gpu_peak() -> float:
    """Finish queued GPU work, restart the GPU's peak-allocation counter; the MB allocated now."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated() / 2**20


def _limit_memory(limit_mb: float) -> tuple[int, int]:
    """Let this process allocate at most `limit_mb` more data memory (allocations past it fail, the process lives);
    returns the previous limits."""
    with open("/proc/self/status") as handle:
        data_kb = next(int(line.split()[1]) for line in handle if line.startswith("VmData:"))
    previous = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (data_kb * 1024 + int(limit_mb * 2**20), previous[1]))
    return previous


def _child(
    target: str,
    kwargs: dict,
    threads: int,
    queue,
    repeats: int = 1,
    memory_limit_mb: float | None = None,
    exact_host_memory: bool = False,
) -> None:
    if exact_host_memory and not _fix_allocator_thresholds():
        queue.put({"seconds": float("nan"), "peak_mb": float("nan"), "error": "exact_host_memory needs glibc"})
        return
    import torch

    torch.set_num_threads(threads)
    module_name, function_name = target.split(":")
    prepare = getattr(importlib.import_module(module_name), function_name)
    call = prepare(**kwargs)  # builds models and inputs, returns the thing to time
    cuda = torch.cuda.is_initialized()
    gpu_before = _reset_gpu_peak() if cuda else 0.0
    before = _resident_mb()
    _reset_peak()
    previous_limits = None if memory_limit_mb is None else _limit_memory(memory_limit_mb)
    times = []
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    except (MemoryError, RuntimeError) as error:  # an allocation past the memory limit
        failure = str(error).splitlines()[0][:200]
    else:
        failure = None
    finally:
        if previous_limits is not None:  # reporting needs memory of its own (the queue's feeder thread)
            resource.setrlimit(resource.RLIMIT_DATA, previous_limits)
    if failure is not None:
        queue.put({"seconds": float("nan"), "peak_mb": float("nan"), "error": failure})
        return
    host_peak = max(_peak_mb() - before, 0.0)
    if cuda:
        gpu_peak = max(torch.cuda.max_memory_allocated() / 2**20 - gpu_before, 0.0)
        queue.put({"seconds": statistics.median(times), "peak_mb": gpu_peak, "host_peak_mb": host_peak})
        return
    queue.put({"seconds": statistics.median(times), "peak_mb": host_peak})


def measure(
    target: str,
    threads: int = 2,
    timeout: float = 3600,
    repeats: int = 1,
    memory_limit_mb: float | None = None,
    exact_host_memory: bool = False,
    **kwargs: Any,
) -> dict[str, float]:
    """Run `module:function(**kwargs)()` in a fresh process; `{"seconds", "peak_mb"}` of the returned call (and
    `"host_peak_mb"` when it ran on CUDA, `peak_mb` then being the GPU's).

    `seconds` is the median of `repeats` calls. With `memory_limit_mb`, an allocation past that much new memory
    fails and the result carries an `"error"` (as it does on a timeout or a crash) instead of exhausting the machine.
    `exact_host_memory` fixes the allocator's thresholds first (module docstring).
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_child, args=(target, kwargs, threads, queue, repeats, memory_limit_mb, exact_host_memory)
    )
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        return {"seconds": float("nan"), "peak_mb": float("nan"), "error": f"timed out after {timeout} s"}
    if process.exitcode != 0:
        return {"seconds": float("nan"), "peak_mb": float("nan"), "error": f"exit code {process.exitcode}"}
    return queue.get()


def measure_interleaved(
    target: str, variants: dict[str, dict[str, Any]], threads: int = 2, repeats: int = 5, timeout: float = 3600
) -> dict[str, float]:
    """`module:function(**kwargs)()` for each named variant's kwargs, prepared in one fresh process and called in
    turn `repeats` times: `{name: median seconds}` (NaN for every name on a timeout or a crash)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_interleaved_child, args=(target, variants, threads, repeats, queue))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
    if process.exitcode != 0:
        return dict.fromkeys(variants, float("nan"))
    return queue.get()


def _interleaved_child(target: str, variants: dict[str, dict[str, Any]], threads: int, repeats: int, queue) -> None:
    import torch

    torch.set_num_threads(threads)
    module_name, function_name = target.split(":")
    prepare = getattr(importlib.import_module(module_name), function_name)
    calls = {name: prepare(**kwargs) for name, kwargs in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    queue.put({name: statistics.median(values) for name, values in times.items()})
