"""`vtc bench streaming`: peak memory of streaming compression (`init_state` / `step_frame`) as the video grows.

Every registered compressor that streams with its default config is measured, plus the streaming variants of those
that stream only in one setting (`STREAMING_VARIANTS`). Frames are made one at a time and each frame's output is
dropped, as a consumer that forwards tokens on would; so the figure is the compressor's own memory, which should be
flat in the number of frames (goal: <= 5% growth from the shortest to the longest video, or under `FLOOR_MB` where the
base is a few MB and 5% of it is measurement noise). Each run is a fresh process (`vtc.bench.measure`); on the CPU
with the allocator's thresholds fixed (`exact_host_memory`), so that the peak is the live memory's and not glibc's
drifting retention of freed blocks.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import torch

from vtc.bench import format_table
from vtc.bench.device import add_device_arguments, check_device, torch_dtype
from vtc.bench.measure import measure
from vtc.compressors import create_compressor, list_compressors

FLOOR_MB = 1.0  # growth this small is flat whatever the base (a tiny model's peak is a few MB)

# Compressors whose default config looks at future frames but that stream in another setting.
STREAMING_VARIANTS: dict[str, dict[str, Any]] = {
    "tstar": {"block": "mamba"},  # causal Mamba instead of the bidirectional MambaMia block
    "taa": {"keep_ratio": None, "threshold": 1.0},  # a fixed delta-time threshold instead of a whole-video ratio
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compressors", nargs="+", default=None, help="default: every one that can stream")
    parser.add_argument("--frames", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--tokens-per-frame", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    add_device_arguments(parser)


def streaming_configs(methods: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """`{name: config}` of the compressors (all registered, or `methods`) that stream, default config first."""
    configs = {}
    for method in methods or list_compressors():
        for config in ({}, STREAMING_VARIANTS.get(method)):
            if config is None:
                continue
            with torch.device("meta"):
                model = create_compressor(method, dim=64, **config)
            if model.supports_streaming:
                configs[method] = config
                break
    return configs


def prepare_stream(
    method: str,
    config: dict[str, Any],
    num_frames: int,
    tokens_per_frame: int,
    dim: int,
    device: str = "cpu",
    dtype: str = "float32",
) -> Callable[[], None]:
    """The call `vtc.bench.measure` times: `num_frames` frames `[1, N, D]` made (on the CPU, then moved to `device`
    in `dtype`) and compressed one at a time, outputs dropped."""
    torch.manual_seed(0)
    model = create_compressor(method, dim=dim, **config).eval().to(device, torch_dtype(dtype))
    generator = torch.Generator().manual_seed(0)

    def call() -> None:
        with torch.no_grad():
            state = model.init_state(1, torch.device(device))
            for index in range(num_frames):
                frame = torch.randn(1, tokens_per_frame, dim, generator=generator).to(device, torch_dtype(dtype))
                _, state = model.step_frame(frame, torch.tensor([float(index)], device=device), state)

    return call


def run(args: argparse.Namespace) -> dict:
    device = check_device(args.device)
    configs = streaming_configs(args.compressors)
    columns = ["compressor", *(f"peak_mb_{frames}" for frames in args.frames), "growth_mb", "growth", "flat"]
    rows = []
    for method, config in configs.items():
        row: dict[str, Any] = {"compressor": method, "config": config}
        for num_frames in args.frames:
            result = measure(
                "vtc.bench.streaming:prepare_stream",
                threads=args.threads,
                method=method,
                config=config,
                num_frames=num_frames,
                tokens_per_frame=args.tokens_per_frame,
                dim=args.dim,
                device=device,
                dtype=args.dtype,
                exact_host_memory=device == "cpu",
            )
            row[f"peak_mb_{num_frames}"] = result["peak_mb"]
            row[f"seconds_{num_frames}"] = result["seconds"]
        first, last = row[f"peak_mb_{args.frames[0]}"], row[f"peak_mb_{args.frames[-1]}"]
        row["growth_mb"] = last - first
        row["growth"] = last / first - 1 if first > 0 else float("nan")
        row["flat"] = bool(row["growth"] <= 0.05 or row["growth_mb"] <= FLOOR_MB)
        rows.append(row)
        if not args.json:
            print(format_table(rows[-1:], columns), flush=True)
    result = {
        "benchmark": "streaming",
        "tokens_per_frame": args.tokens_per_frame,
        "dim": args.dim,
        "threads": args.threads,
        "device": device,
        "dtype": args.dtype,
        "exact_host_memory": device == "cpu",
        "frames": args.frames,
        "rows": rows,
    }
    if not args.json:
        print("\n" + (format_table(rows, columns) if rows else "no compressor streams"))
    return result
