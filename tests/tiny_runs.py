"""Tiny `vtc compare` / `vtc demo` runs: overrides for a few steps, videos and a 2-step scene encoder, and a tiny
saved base model to adapt from."""

from __future__ import annotations

import json
import os
from pathlib import Path

# Tiny synthetic videos: 4 frames of 16 x 16 pixels, one distractor.
TINY_SYNTHETIC = {"duration": 4.0, "fps": 1.0, "frame_size": 16, "num_distractors": 1, "event_length": [1, 2]}
# A training config that runs in seconds: tiny encoder and T5, 2 frames of 8 tiny videos, 10 steps.
TINY_TRAINING = {
    "model": {
        "tiny_lm": {"kind": "t5", "hidden": 16, "layers": 1, "heads": 2},
        "lmm": {
            "encoder": {"type": "tiny", "image_size": 16, "patch_size": 8, "dim": 16, "depth": 1, "heads": 2},
            "compressor": {"name": "none"},
            "projector": "linear",
            "llm": {"mode": "full"},
            "max_new_tokens": 6,
        },
    },
    "data": {"source": "synthetic", "synthetic": TINY_SYNTHETIC, "num_train": 8, "num_val": 2, "num_frames": 2},
    "optim": {"lr": 1e-3, "batch_size": 2, "max_steps": 10},
    "run": {"eval_every": 5, "save_every": 1, "log_every": 1, "progress": False},
}


# The environment of a `vtc` subprocess in a test: one thread, this checkout importable.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def config_in(template: dict, output_dir: Path, **data: object) -> dict:
    """A deep copy of the training config `template` writing to `output_dir`, its `data` section updated."""
    raw = json.loads(json.dumps(template))
    raw["data"] = {**raw["data"], **data}
    raw["run"]["output_dir"] = str(output_dir)
    return raw


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def tiny_base_overrides(cache_dir: Path, num_train: int, num_val: int) -> list[str]:
    """`vtc base --set` overrides that train a tiny base (patch encoder, 4-query Q-Former, 1-layer T5) in 2 steps."""
    return [
        "model.tiny_lm={kind: t5, hidden: 16, layers: 1, heads: 2}",
        "model.lmm.qformer={num_queries: 4, hidden: 8, depth: 1, num_heads: 2}",
        "model.lmm.encoder={type: patch, grid: 2, width: 4, pretrain_steps: 2}",
        f"data.synthetic={json.dumps(TINY_SYNTHETIC)}",
        "data.num_frames=2",
        "model.lmm.time_tokens=2",
        f"data.num_train={num_train}",
        f"data.num_val={num_val}",
        "optim.batch_size=2",
        "optim.max_steps=2",
        "run.eval_every=2",
        "run.progress=false",
        f"run.cache_dir={cache_dir}",
    ]


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


def save_tiny_base(folder: Path, cache_dir: Path) -> tuple[Path, list[str]]:
    """A tiny base (2 x 2 patch encoder -> 4-query Q-Former -> MLP -> 1-layer T5) saved in `folder`, and the
    overrides that adapt from it in seconds on `TINY_SYNTHETIC` videos of 2 frames."""
    from vtc.lmm.base_model import save_base_model
    from vtc.lmm.model import build_model
    from vtc.lmm.tiny import save_tiny_lm
    from vtc.world.pretrain import cached_scene_encoder

    weights, _ = cached_scene_encoder(cache_dir, TINY_SYNTHETIC, width=4, steps=2)
    lm = save_tiny_lm(folder / "lm", "t5", 16, 1, 2)
    base = build_model(
        {
            "encoder": {"type": "patch", "grid": 2, "width": 4, "path": str(weights)},
            "qformer": {"num_queries": 4, "hidden": 8, "num_heads": 2},
            "projector": "mlp",
            "llm": {"path": str(lm), "mode": "full"},
            "time_tokens": 2,
        }
    )
    overrides = [
        "data.num_frames=2",
        f"data.synthetic={json.dumps(TINY_SYNTHETIC)}",
        "optim.max_steps=2",
        "run.eval_every=2",
        "data.num_train=4",
        "data.num_val=2",
        "optim.batch_size=2",
        f"run.cache_dir={cache_dir}",
    ]
    return save_base_model(base, folder / "base", card={}), overrides
