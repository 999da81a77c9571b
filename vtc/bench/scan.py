"""`vtc bench scan`: our Mamba mixer against transformers' MambaMixer torch path, mambapy's parallel
scan, and our own sequential reference loop, at the sizes of the foundation issue (batch 2, hidden 256, expand 2,
state 16, fp32). `vtc-no-scan` is our mixer on the path `vtc` takes with the selective scan left out (its skip and
gate kept): the floor that no scan algorithm can go below on that path. `vtc-chunked-no-scan` is the same floor of
the pure-PyTorch mixer (the floor before the fused CPU mixer: its copies, conv and activations around the scan).

`vtc` is the mixer with `backend="auto"` (on a CPU where numba imports, the fused mixer of `vtc.ssm.mixer_numba`
under no_grad and the fused Numba scan when training, else the chunked scan; on CUDA with `mamba_ssm`, its fused
kernels), `vtc-chunked` the same mixer held to the pure-PyTorch path; with
`--device cuda` the table adds `vtc` against `vtc-chunked`, and `--parity` compares the two on the same inputs (max
abs difference of outputs and input grads).

The distance from the floor is measured on its own as well (`floor` in the JSON): `vtc`, `vtc-no-scan` and
`vtc-chunked-no-scan` forwards at the long length prepared in one process and called in turn (`--floor-repeats`
times each, the medians), so that the machine's drift from one measurement to the next does not enter their ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
from collections.abc import Callable
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vtc.bench import format_table
from vtc.bench.device import add_device_arguments, check_device, torch_dtype
from vtc.bench.measure import measure, measure_interleaved
from vtc.ssm import dispatch
from vtc.ssm import mamba as mamba_module

IMPLEMENTATIONS = (
    "vtc",
    "vtc-chunked",
    "vtc-reference",
    "vtc-no-scan",
    "vtc-chunked-no-scan",
    "transformers",
    "mambapy",
)
# every other vtc implementation: "chunked"
BACKEND_OF = {"vtc": "auto", "vtc-reference": "reference", "vtc-no-scan": "auto"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="calls per measurement in one process; the median")
    parser.add_argument(
        "--floor-repeats", type=int, default=7, help="interleaved calls of the mixer and its floor, each; the medians"
    )
    parser.add_argument("--quick", action="store_true", help="small lengths, for a smoke run")
    parser.add_argument(
        "--skip-reference", action="store_true", help="leave out the sequential loop (minutes at L=2048)"
    )
    parser.add_argument(
        "--parity", action="store_true", help="only compare the fused CUDA path with the chunked one (max abs diff)"
    )
    add_device_arguments(parser)


def build(implementation: str, hidden: int, state: int) -> torch.nn.Module:
    """A Mamba-1 mixer of `implementation` with identical weights across implementations (seed 0)."""
    from vtc.ssm import Mamba

    torch.manual_seed(0)
    ours = Mamba(hidden, d_state=state, expand=2, backend=BACKEND_OF.get(implementation, "chunked"))
    if implementation.endswith("no-scan"):
        return MixerWithoutScan(ours)
    if implementation.startswith("vtc"):
        return ours
    if implementation == "transformers":
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        config = MambaConfig(
            hidden_size=hidden, state_size=state, intermediate_size=2 * hidden, use_mambapy=False, use_bias=False
        )
        mixer = MambaMixer(config, layer_idx=0)
        mixer.load_state_dict(ours.state_dict())
        return mixer
    from mambapy.mamba import MambaBlock, MambaConfig

    mixer = MambaBlock(MambaConfig(d_model=hidden, n_layers=1, d_state=state, expand_factor=2, pscan=True))
    mixer.load_state_dict(ours.state_dict())
    return mixer


def _skip_term_only(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, **options):
    """Stands in for `selective_scan` in the mixer: the skip term `D u` gated by `silu(z)`, with no scan."""
    y = u * D[:, None] * F.silu(z)
    return (y, options["initial_state"]) if options.get("return_last_state") else y


def _fused_skip_term_only(u, dt, dt_bias, A, BC, D, xz, reverse, accumulate, y) -> None:
    """Stands in for the fused mixer's scan kernel (`vtc.ssm.mixer_numba._scan_kernel`, its arguments): writes (or
    adds) the skip term `D u` gated by `silu(z)` into `y`, with no scan."""
    u, xz, y = torch.from_numpy(u), torch.from_numpy(xz), torch.from_numpy(y)
    gated = u * torch.from_numpy(D) * F.silu(xz[..., u.shape[-1] :])
    y.add_(gated) if accumulate else y.copy_(gated)


class MixerWithoutScan(nn.Module):
    """`vtc.ssm.Mamba`'s own forward on its backend's path, unchanged except that the selective scan (of the PyTorch
    mixer, and of the fused CPU mixer where it runs) is replaced by its skip term."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer

    def forward(self, hidden_states: Tensor) -> Tensor:
        """`[B, L, d_model] -> [B, L, d_model]`."""
        with contextlib.ExitStack() as patches:
            patches.enter_context(mock.patch.object(mamba_module, "selective_scan", _skip_term_only))
            if dispatch.kernel("numba_mixer") is not None:
                fused = importlib.import_module("vtc.ssm.mixer_numba")
                patches.enter_context(mock.patch.object(fused, "_scan_kernel", _fused_skip_term_only))
            return self.mixer(hidden_states)


def prepare(
    implementation: str,
    mode: str,
    length: int,
    batch: int,
    hidden: int,
    state: int,
    device: str = "cpu",
    dtype: str = "float32",
) -> Callable[[], None]:
    """The call to time: forward under no_grad (`mode="forward"`) or forward + backward of a sum, on `device` in
    `dtype` (inputs drawn on the CPU, so every device sees the same numbers)."""
    mixer = build(implementation, hidden, state).to(device, torch_dtype(dtype))
    warm_up = torch.randn(batch, 64, hidden, device=device, dtype=torch_dtype(dtype), requires_grad=mode != "forward")
    mixer(warm_up).sum().backward() if mode != "forward" else mixer(warm_up)
    x = torch.randn(batch, length, hidden, generator=torch.Generator().manual_seed(1)).to(device, torch_dtype(dtype))
    if mode == "forward":
        mixer.eval()

        def call() -> None:
            with torch.no_grad():
                mixer(x)

        return call
    x.requires_grad_(True)

    def call() -> None:
        mixer(x).sum().backward()

    return call


def parity(length: int, batch: int, hidden: int, state: int, device: str, dtype: str) -> dict:
    """Max abs difference between `vtc` (fused kernels) and `vtc-chunked` on the same weights and inputs: of the
    outputs and of the input gradients, with the output scale they compare to."""
    kernels = dispatch.available_kernels()
    if dispatch.scan_backend("auto", device, kernels, has_state=False) != "cuda":
        raise ValueError(
            f"--parity compares mamba_ssm's fused scan with the chunked one; on {device!r} (fused kernels importable: "
            f"{sorted(kernels) or 'none'}) there is no fused scan (needs --device cuda and pip install vtc[cuda])"
        )
    x = torch.randn(batch, length, hidden, generator=torch.Generator().manual_seed(1))
    results = {}
    for implementation in ("vtc", "vtc-chunked"):
        inputs = x.to(device, torch_dtype(dtype)).requires_grad_(True)
        output = build(implementation, hidden, state).to(device, torch_dtype(dtype))(inputs)
        output.float().sum().backward()
        results[implementation] = (output.detach().float(), inputs.grad.float())
    (fused_y, fused_grad), (chunked_y, chunked_grad) = results["vtc"], results["vtc-chunked"]
    return {
        "length": length,
        "dtype": dtype,
        "kernels": sorted(kernels),
        "max_abs_diff": float((fused_y - chunked_y).abs().max()),
        "max_abs_output": float(chunked_y.abs().max()),
        "grad_max_abs_diff": float((fused_grad - chunked_grad).abs().max()),
        "max_abs_grad": float(chunked_grad.abs().max()),
    }


def cases(quick: bool, skip_reference: bool = False, device: str = "cpu") -> list[tuple[str, int, str, str]]:
    """(mode, length, ours, baseline) pairs the issue asks for; on CUDA also the fused path against the chunked."""
    long, short = (1024, 256) if quick else (8192, 2048)
    pairs = [
        ("forward", long, "vtc", "transformers"),
        ("forward", long, "vtc-no-scan", "transformers"),
        ("forward+backward", long, "vtc", "mambapy"),
        ("forward+backward", short, "vtc", "vtc-reference"),
        ("forward", short, "vtc", "transformers"),
        ("forward+backward", short, "vtc", "mambapy"),
    ]
    if device == "cuda":
        pairs += [("forward", long, "vtc", "vtc-chunked"), ("forward+backward", long, "vtc", "vtc-chunked")]
    return [pair for pair in pairs if not (skip_reference and pair[3] == "vtc-reference")]


def run(args: argparse.Namespace) -> dict:
    device = check_device(args.device)
    sizes = {"batch": args.batch, "hidden": args.hidden, "state": args.state}
    torch.set_num_threads(args.threads)
    long = 1024 if args.quick else 8192
    checks = [parity(long, **sizes, device=device, dtype=args.dtype)] if args.parity or device == "cuda" else []
    if not args.json and checks:
        print(format_table(checks, list(checks[0])), flush=True)
    if args.parity:
        return {"benchmark": "scan", "device": device, "dtype": args.dtype, **sizes, "parity": checks}
    settings = {"device": device, "dtype": args.dtype, **sizes}
    rows = []
    for mode, length, ours, baseline in cases(args.quick, args.skip_reference, device):
        results = {
            name: measure(
                "vtc.bench.scan:prepare",
                threads=args.threads,
                repeats=args.repeats,
                implementation=name,
                mode=mode,
                length=length,
                **settings,
            )
            for name in (ours, baseline)
        }
        rows.append(
            {
                "mode": mode,
                "length": length,
                "implementation": ours,
                "baseline": baseline,
                "vtc_s": results[ours]["seconds"],
                "baseline_s": results[baseline]["seconds"],
                "speedup": results[baseline]["seconds"] / results[ours]["seconds"],
                "vtc_peak_mb": results[ours]["peak_mb"],
                "baseline_peak_mb": results[baseline]["peak_mb"],
                "memory_ratio": results[ours]["peak_mb"] / max(results[baseline]["peak_mb"], 1e-9),
            }
        )
        if not args.json:
            print(format_table(rows[-1:], list(rows[-1])), flush=True)
    result = {
        "benchmark": "scan",
        "threads": args.threads,
        "repeats": args.repeats,
        **settings,
        "rows": rows,
        "floor": distance_from_floor(long, args.floor_repeats, args.threads, settings),
        "parity": checks,
    }
    if not args.json:
        print()
        print(format_table(rows, list(rows[0])))
        print(format_table([result["floor"]], list(result["floor"])))
    return result


def distance_from_floor(length: int, repeats: int, threads: int, settings: dict) -> dict:
    """The mixer's forward over its `vtc-no-scan` floor (`ratio`) and over the PyTorch mixer's
    (`vtc-chunked-no-scan`, `pytorch_floor_ratio`), called in turn in one process (module docstring)."""
    seconds = measure_interleaved(
        "vtc.bench.scan:prepare",
        {
            name: {"implementation": name, "mode": "forward", "length": length, **settings}
            for name in ("vtc", "vtc-no-scan", "vtc-chunked-no-scan")
        },
        threads=threads,
        repeats=repeats,
    )
    return {
        "length": length,
        "repeats": repeats,
        "vtc_s": seconds["vtc"],
        "floor_s": seconds["vtc-no-scan"],
        "ratio": seconds["vtc"] / seconds["vtc-no-scan"],
        "pytorch_floor_s": seconds["vtc-chunked-no-scan"],
        "pytorch_floor_ratio": seconds["vtc"] / seconds["vtc-chunked-no-scan"],
    }
