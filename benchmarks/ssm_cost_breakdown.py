"""Where a state-space compressor's time goes at the prefill benchmark's size: the whole forward, the same forward
with the selective scan left out (its skip term only, as `vtc bench scan`'s `vtc-no-scan`), and its matrix products
alone, each the best of `--repeats` calls in one process, so that the shares are comparable.

The scan's time is the whole minus the no-scan forward; the rest of the no-scan forward beyond the products is
the element-wise work (conv, activations, flips, norms, aggregation). With `--saved-prefill S` (the seconds of
prefill a method saves, from `vtc bench prefill --json`), each part is also printed as a share of it: the products
alone are the floor below which no implementation of the method's architecture goes on this machine.

    .venv/bin/python benchmarks/ssm_cost_breakdown.py --compressor mambamia --saved-prefill 162.2 [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from unittest import mock

import torch
from torch import nn

from vtc.bench.scan import _skip_term_only
from vtc.budget import configure
from vtc.compressors import create_compressor
from vtc.ssm import mamba as mamba_module


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """The least wall-clock seconds of `repeats` calls of `call`, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def linear_calls(model: nn.Module, inputs: tuple) -> list[tuple[nn.Linear, torch.Size]]:
    """Every `nn.Linear` call of one forward of `model(*inputs)` with its input's shape, in call order."""
    calls: list[tuple[nn.Linear, torch.Size]] = []
    hooks = [
        module.register_forward_pre_hook(lambda layer, args: calls.append((layer, args[0].shape)))
        for module in model.modules()
        if isinstance(module, nn.Linear)
    ]
    real_channels_first = mamba_module._channels_first

    def recorded(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        calls.append((linear, x.shape))
        return real_channels_first(linear, x)

    with mock.patch.object(mamba_module, "_channels_first", recorded):
        model(*inputs)
    for hook in hooks:
        hook.remove()
    return calls


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
        whole = best_seconds(lambda: model(*inputs), args.repeats)
        with mock.patch.object(mamba_module, "selective_scan", _skip_term_only):
            no_scan = best_seconds(lambda: model(*inputs), args.repeats)
        products = [(layer, torch.randn(shape)) for layer, shape in linear_calls(model, inputs)]
        gemms = best_seconds(lambda: [layer(x) for layer, x in products], args.repeats)
    parts = {"whole": whole, "scan": whole - no_scan, "matrix products": gemms, "element-wise": no_scan - gemms}
    result = {"compressor": args.compressor, "config": config, "threads": args.threads, "seconds": parts}
    if args.saved_prefill:
        result["share_of_saved_prefill"] = {name: value / args.saved_prefill for name, value in parts.items()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.compressor} {config} at {args.frames} x {args.tokens_per_frame}, d = {args.dim}")
    for name, seconds in parts.items():
        share = f"  {seconds / args.saved_prefill:6.1%} of the saved prefill" if args.saved_prefill else ""
        print(f"{name:>16}: {seconds:7.2f} s{share}")


if __name__ == "__main__":
    main()
