"""Pre-training of the `SceneEncoder`'s segmenter on the renderer's per-pixel labels, and the cache of its weights
(trained once per setting, kept in `run.cache_dir`)."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vtc.utils.io import atomic_save_safetensors, atomic_write_text
from vtc.world.raster import NUM_OBJECT_CLASSES
from vtc.world.scene_encoder import DEFAULT_WIDTH, SceneEncoder
from vtc.world.synthetic import SyntheticMoments

PRETRAIN_SEED = 2_000_003  # videos of their own: training, validation and test splits use other seeds
SEGMENTER_VERSION = "unet-factorised-1"  # part of the cache key of pre-trained weights
DEFAULT_PRETRAIN_STEPS = 2300


def pretrain_scene_encoder(
    encoder: SceneEncoder,
    moments: SyntheticMoments,
    steps: int = DEFAULT_PRETRAIN_STEPS,
    frames_per_step: int = 4,
    lr: float = 3e-3,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train `encoder.segmenter` to label pixels with their object class, on frames of fresh `moments` videos.

    Each step renders `frames_per_step` frames (two from each of `frames_per_step / 2` videos), weights the
    rare object pixels up (1 / sqrt(class frequency) within the batch) and takes one AdamW step under a cosine
    schedule. Many small steps learn faster per CPU second than few large ones (the defaults: ~2 minutes on one
    thread for ~97% of object pixels right). Returns the last loss, the object-pixel accuracy on 64 held-out
    frames and the seconds taken.
    """
    started = time.perf_counter()
    optimizer = torch.optim.AdamW(encoder.segmenter.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    videos_per_step = max(frames_per_step // 2, 1)
    rng = np.random.default_rng(moments.seed)
    loss = torch.tensor(0.0)
    encoder.train()
    for step in range(steps):
        frames, labels = labelled_frames(moments, range(step * videos_per_step, (step + 1) * videos_per_step), rng)
        counts = torch.bincount(labels.flatten(), minlength=NUM_OBJECT_CLASSES).float()
        weight = (counts.sum() / counts.clamp(min=1)).sqrt()
        # `segment` gives log-probabilities, which cross-entropy's log-softmax leaves as they are: the weighted NLL
        loss = nn.functional.cross_entropy(encoder.segment(frames), labels, weight=weight / weight.mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, loss.item())
    encoder.eval().requires_grad_(False)
    frames, labels = labelled_frames(moments, range(len(moments) - 32, len(moments)), rng)
    with torch.no_grad():
        predicted = encoder.segment(frames).argmax(dim=1)
    objects = labels > 0
    accuracy = (predicted[objects] == labels[objects]).float().mean().item()
    return {"loss": loss.item(), "object_accuracy": accuracy, "seconds": time.perf_counter() - started}


def labelled_frames(moments: SyntheticMoments, indices: range, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """Two random frames of each video `indices` of `moments`: uint8 `[F, H, W, 3]` and class labels `[F, H, W]`."""
    frames, labels = [], []
    for index in indices:
        picked = np.sort(rng.choice(moments.num_frames, size=2, replace=False))
        video = moments.render(index % len(moments), picked, labels=True)
        frames.append(video.frames)
        labels.append(video.labels)
    return torch.from_numpy(np.concatenate(frames)), torch.from_numpy(np.concatenate(labels))


def cached_scene_encoder(
    cache_dir: str | Path,
    synthetic: dict[str, Any],
    width: int = DEFAULT_WIDTH,
    steps: int = DEFAULT_PRETRAIN_STEPS,
) -> tuple[Path, dict[str, Any]]:
    """Weights of a `SceneEncoder(width)` pre-trained for `steps` on fresh videos with the `synthetic` settings.

    Trained once (deterministically, without touching the caller's random state) and kept in `cache_dir` under a
    name derived from the settings, with its report beside it; later calls return the cached file. Returns the
    weights' path and the report (loss, held-out object-pixel accuracy, seconds).
    """
    settings = {
        "synthetic": {k: v for k, v in synthetic.items() if k != "seed"},
        "width": width,
        "steps": steps,
        "segmenter": SEGMENTER_VERSION,  # weights of an older architecture are not reused
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"scene-encoder-{key}.safetensors"
    report_path = path.with_suffix(".json")
    if path.exists() and report_path.exists():
        return path, json.loads(report_path.read_text())
    moments = SyntheticMoments(num_videos=10**7, **{**settings["synthetic"], "seed": PRETRAIN_SEED})
    with torch.random.fork_rng():
        torch.manual_seed(PRETRAIN_SEED)
        encoder = SceneEncoder(width)
        report = {**pretrain_scene_encoder(encoder, moments, steps), "settings": settings}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors({k: v.contiguous() for k, v in encoder.segmenter.state_dict().items()}, path)
    atomic_write_text(report_path, json.dumps(report, indent=2))
    return path, report
