"""`vtc bench scaling`: latency and peak memory of every registered compressor (default config, no-grad forward,
batch 1) as the number of frames doubles, each size in a fresh process (`vtc.bench.measure`).

A method stops at the first size that fails or passes `--limit-seconds` or `--limit-mb` (recorded as "OOM/limit");
the growth exponent (log-log slope between its two largest measured sizes) reads 1 for linear cost, 2 for quadratic.
With `--device cuda` the peak is the GPU's allocation during the call, checked against `--limit-mb` after it.
"""

from __future__ import annotations

import argparse
import math

from vtc.bench import format_table
from vtc.bench.device import add_device_arguments, check_device
from vtc.bench.measure import measure
from vtc.compressors import list_compressors
from vtc.utils.figures import save_figure

LIMIT = "OOM/limit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compressors", nargs="+", default=None, help="default: every registered compressor")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--tokens-per-frame", type=int, default=100)
    parser.add_argument("--min-frames", type=int, default=16)
    parser.add_argument("--max-frames", type=int, default=2048)
    parser.add_argument("--limit-seconds", type=float, default=20.0, help="stop a method past this forward time")
    parser.add_argument("--limit-mb", type=float, default=6144.0, help="stop a method past this peak memory")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="runs/bench/scaling.png", help="PNG of the log-log curves ('' for none)")
    add_device_arguments(parser)


def frame_counts(min_frames: int, max_frames: int) -> list[int]:
    """Powers of two times `min_frames` up to `max_frames`."""
    if not 1 <= min_frames <= max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    return [min_frames * 2**step for step in range(int(math.log2(max_frames / min_frames)) + 1)]


def growth_exponent(points: list[tuple[int, float]]) -> float:
    """Log-log slope between the two largest sizes of `(frames, value)` points; nan with fewer than two."""
    if len(points) < 2 or min(points[-2][1], points[-1][1]) <= 0:
        return float("nan")
    (frames_a, value_a), (frames_b, value_b) = points[-2], points[-1]
    return math.log(value_b / value_a) / math.log(frames_b / frames_a)


def scale_compressor(
    method: str,
    frames: list[int],
    tokens_per_frame: int,
    dim: int,
    limit_seconds: float,
    limit_mb: float,
    threads: int,
    device: str = "cpu",
    dtype: str = "float32",
) -> list[dict]:
    """One row per size of `frames` until the first that fails or passes a limit (that row has status LIMIT)."""
    rows = []
    for num_frames in frames:
        result = measure(
            "vtc.bench.cost:prepare_compressor",
            threads=threads,
            timeout=3 * limit_seconds + 120,  # also covers start-up and building the inputs
            memory_limit_mb=limit_mb if device == "cpu" else None,  # a host limit; on CUDA the GPU peak is checked
            method=method,
            config={},
            num_frames=num_frames,
            tokens_per_frame=tokens_per_frame,
            dim=dim,
            device=device,
            dtype=dtype,
        )
        over = "error" in result or result["seconds"] > limit_seconds or result["peak_mb"] > limit_mb
        rows.append(
            {
                "compressor": method,
                "frames": num_frames,
                "seconds": result["seconds"],
                "peak_mb": result["peak_mb"],
                "status": LIMIT if over else "ok",
                **({"error": result["error"]} if "error" in result else {}),
            }
        )
        if over:
            break
    return rows


def summarize(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method: largest size within the limits and the latency / memory growth exponents."""
    summary = []
    for method in methods:
        done = [row for row in rows if row["compressor"] == method and row["status"] == "ok"]
        summary.append(
            {
                "compressor": method,
                "max_frames_ok": done[-1]["frames"] if done else 0,
                "time_exponent": growth_exponent([(row["frames"], row["seconds"]) for row in done]),
                "memory_exponent": growth_exponent([(row["frames"], row["peak_mb"]) for row in done]),
            }
        )
    return summary


def pivot(rows: list[dict], methods: list[str], frames: list[int], key: str) -> list[dict]:
    """Rows = methods, columns = frame counts, cells = `key` (LIMIT where the method stopped)."""
    table = []
    for method in methods:
        line: dict = {"compressor": method}
        for row in rows:
            if row["compressor"] == method:
                line[str(row["frames"])] = row[key] if row["status"] == "ok" else LIMIT
        table.append(line)
    return table


def plot(rows: list[dict], methods: list[str], path: str) -> str:
    """Log-log latency and peak-memory curves, one line per method; returns the written path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    for index, method in enumerate(methods):
        done = [row for row in rows if row["compressor"] == method and row["status"] == "ok"]
        if not done:
            continue
        style = "-o" if index < 10 else "--s"  # the default colour cycle has 10 colours
        for axis, key in zip(axes, ("seconds", "peak_mb"), strict=True):
            axis.plot([row["frames"] for row in done], [max(row[key], 1e-3) for row in done], style, label=method)
    for axis, label in zip(axes, ("forward latency (s)", "peak memory (MB)"), strict=True):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("frames (100 tokens each)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    written = save_figure(figure, path)
    plt.close(figure)
    return str(written)


def run(args: argparse.Namespace) -> dict:
    device = check_device(args.device)
    methods = args.compressors or list_compressors()
    frames = frame_counts(args.min_frames, args.max_frames)
    rows = []
    for method in methods:
        limits = (args.limit_seconds, args.limit_mb, args.threads)
        rows += scale_compressor(method, frames, args.tokens_per_frame, args.dim, *limits, device, args.dtype)
        if not args.json:
            last = rows[-1]
            print(f"{method}: up to {last['frames']} frames, {last['seconds']:.3g} s, {last['status']}", flush=True)
    summary = summarize(rows, methods)
    result = {
        "benchmark": "scaling",
        "dim": args.dim,
        "tokens_per_frame": args.tokens_per_frame,
        "threads": args.threads,
        "device": device,
        "dtype": args.dtype,
        "limit_seconds": args.limit_seconds,
        "limit_mb": args.limit_mb,
        "rows": rows,
        "summary": summary,
        "plot": plot(rows, methods, args.out) if args.out else None,
    }
    if not args.json:
        columns = ["compressor", *map(str, frames)]
        print("\nforward latency (s)\n" + format_table(pivot(rows, methods, frames, "seconds"), columns))
        print("\npeak memory (MB)\n" + format_table(pivot(rows, methods, frames, "peak_mb"), columns))
        print("\n" + format_table(summary, list(summary[0])))
        if result["plot"]:
            print(f"\nplot: {result['plot']}")
    return result
