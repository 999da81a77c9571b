"""An object-centric perception encoder for the synthetic benchmark, pre-trained on the renderer's scene labels.

The video LLMs of the papers freeze a vision encoder that was pre-trained on millions of images, so its tokens
already say which objects a frame holds. No such encoder exists for the synthetic world, and a CPU cannot train
one from the answer text alone (`benchmarks/frame_probe.py`). `SceneEncoder` is the stand-in: a small fully
convolutional network that labels every pixel with its object class (background or one of the 24 colour x shape
pairs), trained with the renderer's per-pixel labels (`pretrain_scene_encoder`, a few CPU minutes) and then frozen.
Its tokens read the soft segmentation out as one slot per class: a background slot and 24 object slots, each
`[colour one-hot, shape one-hot, area, centre x, centre y]` plus the change of (area, x, y) from the previous
and to the next frame, the temporal context that a video encoder adds to each frame.
"""

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
from safetensors.torch import load_file
from torch import Tensor, nn

from vtc.compressors.base import atomic_save_safetensors, atomic_write_text
from vtc.data.synthetic import COLOURS, NUM_OBJECT_CLASSES, SHAPES, SyntheticMoments, object_class_index
from vtc.encoders.base import VisionEncoder
from vtc.encoders.hf import check_frames

STATE = 3  # area, centre x, centre y
# Feature scales that bring each part of a slot to about unit size (a shape covers ~2% of the frame and moves
# ~0.2 of the [-1, 1] range between sampled frames): tokens far smaller than the text embeddings are ignored.
AREA_SCALE, CHANGE_SCALE = 50.0, 5.0
PRETRAIN_SEED = 2_000_003  # videos of their own: training, validation and test splits use other seeds


def class_attributes() -> Tensor:
    """`[classes, colours + shapes]`: the colour and shape one-hots of every object class (zeros for background)."""
    colours = torch.arange(len(COLOURS)).repeat_interleave(len(SHAPES))
    shapes = torch.arange(len(SHAPES)).repeat(len(COLOURS))
    classes = object_class_index(colours, shapes)
    rows = torch.zeros(NUM_OBJECT_CLASSES, len(COLOURS) + len(SHAPES))
    rows[classes, colours] = 1.0
    rows[classes, len(COLOURS) + shapes] = 1.0
    return rows


def slot_states(probabilities: Tensor) -> Tensor:
    """Soft segmentation `[T, C, H, W]` -> per-class `[T, C, 3]` (`AREA_SCALE` x area as a share of the frame,
    centre x, y in [-1, 1]; the centre of an absent class is 0)."""
    height, width = probabilities.shape[-2:]
    area = probabilities.sum((-2, -1))
    ys = torch.linspace(-1, 1, height, device=probabilities.device)
    xs = torch.linspace(-1, 1, width, device=probabilities.device)
    centre_y = (probabilities.sum(-1) * ys).sum(-1) / area.clamp(min=1.0)
    centre_x = (probabilities.sum(-2) * xs).sum(-1) / area.clamp(min=1.0)
    return torch.stack([area / (height * width) * AREA_SCALE, centre_x, centre_y], dim=-1)


def temporal_changes(states: Tensor) -> Tensor:
    """`[T, C, S]` -> `[T, C, 2S]`: `CHANGE_SCALE` x the change from the previous frame and to the next one (0 at
    the ends)."""
    step = (states[1:] - states[:-1]) * CHANGE_SCALE
    zero = torch.zeros_like(states[:1])
    return torch.cat([torch.cat([zero, step]), torch.cat([step, zero])], dim=-1)


class SceneEncoder(VisionEncoder):
    """uint8 frames `[T, H, W, 3]` -> `[T, 25, 19]` object slots (see the module docstring); frozen once trained."""

    def __init__(self, width: int = 32, path: str | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for dilation in (1, 1, 2, 4, 1):
            layers += [nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation), nn.GELU()]
            channels = width
        self.segmenter = nn.Sequential(*layers, nn.Conv2d(width, NUM_OBJECT_CLASSES, 1))
        self.register_buffer("attributes", class_attributes(), persistent=False)
        self.tokens_per_frame = NUM_OBJECT_CLASSES
        self.output_dim = self.attributes.shape[1] + 3 * STATE
        if path is not None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"scene encoder weights {path} not found (see cached_scene_encoder)")
            self.segmenter.load_state_dict(load_file(path), strict=True)

    def segment(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> per-pixel class logits `[T, classes, H, W]`."""
        pixels = frames.to(self.attributes.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        return self.segmenter(pixels)

    def encode(self, frames: Tensor) -> Tensor:
        """uint8 `[T, H, W, 3]` -> `[T, 25, 19]`: per class, its attributes, state and the state's changes."""
        check_frames(frames)
        states = slot_states(self.segment(frames).softmax(dim=1))
        attributes = self.attributes.expand(len(frames), -1, -1)
        return torch.cat([attributes, states, temporal_changes(states)], dim=-1)


def pretrain_scene_encoder(
    encoder: SceneEncoder,
    moments: SyntheticMoments,
    steps: int = 300,
    frames_per_step: int = 32,
    lr: float = 3e-3,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, float]:
    """Train `encoder.segmenter` to label pixels with their object class, on frames of fresh `moments` videos.

    Each step renders `frames_per_step` frames (two from each of `frames_per_step / 2` videos), weights the
    rare object pixels up (1 / sqrt(class frequency) within the batch) and takes one AdamW step under a cosine
    schedule. Returns the last loss, the object-pixel accuracy on 64 held-out frames and the seconds taken.
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
    cache_dir: str | Path, synthetic: dict[str, Any], width: int = 32, steps: int = 300
) -> tuple[Path, dict[str, Any]]:
    """Weights of a `SceneEncoder(width)` pre-trained for `steps` on fresh videos with the `synthetic` settings.

    Trained once (deterministically, without touching the caller's random state) and kept in `cache_dir` under a
    name derived from the settings, with its report beside it; later calls return the cached file. Returns the
    weights' path and the report (loss, held-out object-pixel accuracy, seconds).
    """
    settings = {"synthetic": {k: v for k, v in synthetic.items() if k != "seed"}, "width": width, "steps": steps}
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
