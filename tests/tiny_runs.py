"""Overrides that make `vtc compare` / `vtc demo` runs tiny: a few steps, videos and a 2-step scene encoder."""

from __future__ import annotations

from pathlib import Path


def tiny_run_overrides(cache_dir: Path) -> list[str]:
    """Training-config overrides for an end-to-end run in seconds, caching the scene encoder in `cache_dir`."""
    return [
        "optim.max_steps=2",
        "run.eval_every=2",
        "data.num_val=2",
        "data.num_train=8",
        "model.lmm.encoder.width=4",
        "model.lmm.encoder.pretrain_steps=2",
        f"run.cache_dir={cache_dir}",
    ]
