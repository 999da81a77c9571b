"""`--device` and `--dtype` of every benchmark: the flags, the check that CUDA is there, and synchronised timing."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from vtc.utils.checks import check_choice

DEVICES = ("cpu", "cuda")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device cpu|cuda` (default cpu) and `--dtype float32|float16|bfloat16` (default float32)."""
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where models and inputs live")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32", help="models' and inputs' dtype")


def check_device(device: str) -> str:
    """`device` if this machine has it; refuses `cuda` without a usable GPU (ValueError naming what was seen)."""
    check_choice("device", device, DEVICES)
    if device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise ValueError(f"--device cuda: torch.cuda.is_available() is False here ({build}); use --device cpu")
    return device


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a `--dtype` name."""
    return DTYPES[check_choice("dtype", name, tuple(DTYPES))]


def synchronized(call: Callable[[], None], device: str) -> Callable[[], None]:
    """`call` followed by a device synchronisation, so that timing it times the work."""
    if not device.startswith("cuda"):
        return call

    def timed() -> None:
        call()
        torch.cuda.synchronize(device)

    return timed
