"""Where a state-space compressor's time goes at the prefill benchmark's size: one forward profiled
(`torch.profiler`), split into the selective scan (the fused kernel, with its skip term and gate), the matrix
products (`aten::mm` / `addmm` / `bmm`) and the rest (conv, activations, flips, norms, copies, aggregation); and the
best wall time of `--repeats` plain forwards in the same process.

With `--saved-prefill S` (the seconds of prefill the method saves at that size, from `vtc bench prefill --json`:
`uncompressed_prefill_s - prefill_s`), each part is also a share of it. The products and the scan are the floor of
the method's architecture on this machine: no implementation of the same layers goes below them.

    .venv/bin/python benchmarks/ssm_cost_breakdown.py --compressor mambamia --saved-prefill 162.2 [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from unittest import mock

import torch

from vtc.budget import configure
from vtc.compressors import create_compressor
from vtc.ssm import mamba as mamba_module

PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")
SCAN = "selective_scan"


def profiled_parts(model: torch.nn.Module, inputs: tuple) -> dict[str, float]:
    """Seconds of one forward of `model(*inputs)`: `whole`, `scan`, `matrix products` and `rest`."""
    real_scan = mamba_module.selective_scan

    def labelled_scan(*args, **kwargs):
        with torch.profiler.record_function(SCAN):
            return real_scan(*args, **kwargs)

    with mock.patch.object(mamba_module, "selective_scan", labelled_scan), torch.profiler.profile() as profile:
        start = time.perf_counter()
        model(*inputs)
        whole = time.perf_counter() - start
    events = profile.key_averages()
    scan = sum(event.cpu_time_total for event in events if event.key == SCAN) / 1e6
    products = sum(event.self_cpu_time_total for event in events if event.key in PRODUCTS) / 1e6
    return {"whole": whole, "scan": scan, "matrix products": products, "rest": whole - scan - products}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compressor", default="mambamia")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--tokens-per-frame", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--budget", type=int, default=1600)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--saved-prefill", type=float, default=None, help="seconds of prefill the method saves")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = configure(args.compressor, args.frames, args.tokens_per_frame, args.budget)[0]
    model = create_compressor(args.compressor, dim=args.dim, **config).eval()
    tokens = torch.randn(1, args.frames, args.tokens_per_frame, args.dim)
    inputs = (tokens, torch.arange(float(args.frames))[None], torch.ones(1, args.frames, dtype=torch.bool))
    with torch.no_grad():
        model(*inputs)  # warm-up: compiled kernels loaded, memory touched
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(*inputs)
            times.append(time.perf_counter() - start)
        parts = {"best of plain forwards": min(times), **profiled_parts(model, inputs)}
    result = {"compressor": args.compressor, "config": config, "threads": args.threads, "seconds": parts}
    if args.saved_prefill:
        result["share_of_saved_prefill"] = {name: value / args.saved_prefill for name, value in parts.items()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.compressor} {config} at {args.frames} x {args.tokens_per_frame}, d = {args.dim}")
    for name, seconds in parts.items():
        share = f"  {seconds / args.saved_prefill:6.1%} of the saved prefill" if args.saved_prefill else ""
        print(f"{name:>22}: {seconds:7.2f} s{share}")


if __name__ == "__main__":
    main()
