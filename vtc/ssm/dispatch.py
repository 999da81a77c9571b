"""Which implementation runs: the fused CUDA kernels of `mamba_ssm` / `causal_conv1d`, the fused CPU scan compiled
with Numba (`vtc.ssm.scan_numba`), or the pure-PyTorch code.

The decisions are pure functions of the device type, the set of kernels that import, whether a carried state
enters and whether a gradient is wanted, so they are tested without a GPU. `kernel(name)` imports a kernel once
(None when it does not import). A fresh state (no state passed) is the case the fused CUDA sequence kernels take;
a carried state goes to the PyTorch scan (`selective_scan_fn` has no initial state), except for Mamba-2's kernel,
which takes one. On a CPU the Numba scan takes both; and where no gradient is wanted, a Mamba-1 mixer's whole pass
after `in_proj` runs fused (`vtc.ssm.mixer_numba`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

BACKENDS = ("auto", "reference", "chunked", "numba", "cuda")
SSD_BACKENDS = ("auto", "chunked", "cuda")
# Device types the fused kernels run on (they are CUDA kernels; tests widen this to run fakes on CPU tensors).
KERNEL_DEVICES: tuple[str, ...] = ("cuda",)
# name -> (module, attribute) of each fused kernel, as `mamba_ssm.modules.mamba_simple` / `mamba2` import them, and
# the CPU scan, which imports where `numba` does (`pip install vtc[fast]`).
KERNELS = {
    "selective_scan": ("mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),
    "state_update": ("mamba_ssm.ops.triton.selective_state_update", "selective_state_update"),
    "ssd": ("mamba_ssm.ops.triton.ssd_combined", "mamba_chunk_scan_combined"),
    "causal_conv1d": ("causal_conv1d", "causal_conv1d_fn"),
    "numba_scan": ("vtc.ssm.scan_numba", "numba_scan"),
    "numba_mixer": ("vtc.ssm.mixer_numba", "fused_mixer"),
}


@functools.cache
def kernel(name: str) -> Callable | None:
    """The fused kernel `name` (a key of `KERNELS`), or None when its package does not import."""
    module_name, attribute = KERNELS[name]
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except Exception:  # ImportError, or a CUDA extension that fails to load
        return None


def available_kernels() -> frozenset[str]:
    """Names of the kernels of `KERNELS` that import here."""
    return frozenset(name for name in KERNELS if kernel(name) is not None)


def fused(name: str, device_type: str, kernels: frozenset[str]) -> bool:
    """True when kernel `name` is importable and runs on tensors of `device_type`."""
    return device_type in KERNEL_DEVICES and name in kernels


def scan_backend(requested: str, device_type: str, kernels: frozenset[str], has_state: bool) -> str:
    """Backend of `selective_scan` (Mamba-1): "auto" takes `selective_scan_fn` (Gu & Dao 2023, Sec. 3.3.2, the
    hardware-aware scan) on its device when no state is carried in, else the Numba scan on a CPU where it imports,
    else the chunked PyTorch scan."""
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}")
    available = fused("selective_scan", device_type, kernels)
    cpu_scan = device_type == "cpu" and "numba_scan" in kernels
    if requested == "auto":
        return "cuda" if available and not has_state else "numba" if cpu_scan else "chunked"
    if requested == "numba" and not cpu_scan:
        raise RuntimeError("backend='numba' needs numba installed (pip install vtc[fast]) and CPU tensors")
    if requested == "cuda" and not available:
        raise RuntimeError("backend='cuda' needs mamba_ssm installed (pip install vtc[cuda]) and CUDA tensors")
    if requested == "cuda" and has_state:
        raise ValueError("mamba_ssm's selective_scan_fn takes no initial_state; use backend='chunked'")
    return requested


def ssd_backend(requested: str, device_type: str, kernels: frozenset[str]) -> str:
    """Backend of `ssd_scan` (Mamba-2): "auto" takes `mamba_chunk_scan_combined` (Dao & Gu 2024, Sec. 6, the SSD
    algorithm fused) on its device, with or without a carried state (the kernel takes one), else chunked PyTorch."""
    if requested not in SSD_BACKENDS:
        raise ValueError(f"backend must be one of {SSD_BACKENDS}, got {requested!r}")
    available = fused("ssd", device_type, kernels)
    if requested == "cuda" and not available:
        raise RuntimeError("backend='cuda' needs mamba_ssm installed (pip install vtc[cuda]) and CUDA tensors")
    return "cuda" if requested == "cuda" or (requested == "auto" and available) else "chunked"


def use_conv_kernel(requested: str, device_type: str, kernels: frozenset[str], has_state: bool) -> bool:
    """True when the causal depthwise convolution runs as `causal_conv1d_fn`: backend "auto" or "cuda" (an explicit
    PyTorch backend keeps the whole mixer in PyTorch), importable, on its device, and no carried convolution inputs
    (the kernel's own initial-state path needs a channel-last layout we do not keep)."""
    return requested in ("auto", "cuda") and fused("causal_conv1d", device_type, kernels) and not has_state


def use_step_kernel(requested: str, device_type: str, kernels: frozenset[str]) -> bool:
    """True when a one-token Mamba-1 step runs as `selective_state_update` (Gu & Dao 2023, eqs. 2a-2b, one recurrent
    step): backend "auto" or "cuda", the kernel importable and on its device."""
    return requested in ("auto", "cuda") and fused("state_update", device_type, kernels)


def use_cpu_mixer(requested: str, device_type: str, kernels: frozenset[str], wants_grad: bool) -> bool:
    """True when a Mamba-1 mixer with a fresh state runs conv1d, SiLU, the scan, its skip and gate as the fused CPU
    kernels of `vtc.ssm.mixer_numba` (`mamba_inner_fn`'s job on CUDA): backend "auto" or "numba", CPU tensors, Numba
    importable, and no gradient wanted (the kernels have no backward; training keeps the PyTorch mixer with the
    differentiable Numba scan)."""
    return requested in ("auto", "numba") and device_type == "cpu" and "numba_mixer" in kernels and not wants_grad
