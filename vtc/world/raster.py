"""Rasterisation of the synthetic world: the shapes and colours it draws, a textured background, alpha
compositing of one moving shape (with its per-pixel object class, the labels a perception encoder learns from), and
H.264 mp4 writing of the rendered frames."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (60, 100, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 60, 210),
    "cyan": (40, 220, 230),
}

NUM_OBJECT_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # background + every (colour, shape)


@dataclass
class Track:
    """Per-frame state of one shape: centre `x, y`, `radius` (pixels), `alpha` in [0, 1], `colour [T, 3]`."""

    shape: str
    x: np.ndarray
    y: np.ndarray
    radius: np.ndarray
    alpha: np.ndarray
    colour: np.ndarray


def shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Boolean mask of `shape` at offsets `dx, dy` (`[T, H, W]`) from its centre; `radius` broadcasts."""
    if shape == "circle":
        return dx * dx + dy * dy <= radius * radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) <= 0.85 * radius
    if shape == "triangle":  # apex up, base at +0.8 radius
        return (dy >= -radius) & (dy <= 0.8 * radius) & (np.abs(dx) <= (dy + radius) / 1.8)
    if shape == "star":  # five points: radius modulated by the angle
        angle = np.arctan2(dy, dx) + np.pi / 2
        reach = radius * (0.6 + 0.4 * np.cos(5 * angle))
        return dx * dx + dy * dy <= reach * reach
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render_background(rng: np.random.Generator, times: np.ndarray, height: int, width: int) -> np.ndarray:
    """A dark, blocky texture drifting at a random velocity: `[T, H, W, 3]` float32 in [0, 255]."""
    cells = 8
    side = 2 * max(height, width)
    texture = rng.random((cells, cells), dtype=np.float32)
    texture = np.repeat(np.repeat(texture, ceil_to(side, cells), axis=0), ceil_to(side, cells), axis=1)
    velocity = rng.uniform(-6, 6, size=2) * max(height, width) / 64
    rows = (np.arange(height)[None, :] + (velocity[0] * times)[:, None]).astype(np.int64) % texture.shape[0]
    cols = (np.arange(width)[None, :] + (velocity[1] * times)[:, None]).astype(np.int64) % texture.shape[1]
    shade = texture[rows[:, :, None], cols[:, None, :]]
    tint = rng.uniform(30, 80, size=3).astype(np.float32)
    return (tint * (0.6 + 0.8 * shade[..., None])).astype(np.float32)


def ceil_to(value: int, parts: int) -> int:
    """Smallest block size such that `parts` blocks cover `value`."""
    return -(-value // parts)


def composite(frames: np.ndarray, track: Track, labels: np.ndarray | None = None) -> None:
    """Alpha-blend one shape into `frames [T, H, W, 3]` in place; where it is at least half opaque, also write its
    per-frame `object_class` into `labels [T, H, W]` (when given)."""
    height, width = frames.shape[1:3]
    dy = np.arange(height, dtype=np.float32)[None, :, None] - track.y[:, None, None]
    dx = np.arange(width, dtype=np.float32)[None, None, :] - track.x[:, None, None]
    mask = shape_mask(track.shape, dx, dy, track.radius[:, None, None])
    weight = (mask * track.alpha[:, None, None]).astype(np.float32)[..., None]
    frames *= 1 - weight
    frames += weight * track.colour[:, None, None, :]
    if labels is not None:
        visible = mask & (track.alpha >= 0.5)[:, None, None]
        labels[visible] = np.broadcast_to(object_class(track)[:, None, None], visible.shape)[visible]


def object_class_index(colour: Any, shape: Any) -> Any:
    """Class of a (colour, shape) pair given as names or as indices into `COLOURS` / `SHAPES` (index arrays too):
    1 + colour * len(SHAPES) + shape; 0 is the background."""
    colour = list(COLOURS).index(colour) if isinstance(colour, str) else colour
    shape = SHAPES.index(shape) if isinstance(shape, str) else shape
    return 1 + colour * len(SHAPES) + shape


def object_class(track: Track) -> np.ndarray:
    """Per-frame class `[T]` of a shape: its `object_class_index` with the nearest named colour."""
    palette = np.asarray(list(COLOURS.values()), dtype=np.float32)
    nearest = np.argmin(((track.colour[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    return object_class_index(nearest, track.shape)


def write_mp4(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write `frames [T, H, W, 3]` uint8 RGB as H.264 yuv420p mp4 (odd sides edge-padded), atomically."""
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 [T>0, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    path = Path(path)
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    temporary = path.with_name(f".{path.name}.tmp.mp4")
    try:
        with av.open(str(temporary), mode="w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = padded.shape[2], padded.shape[1]
            stream.pix_fmt = "yuv420p"
            for frame in padded:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode(None))
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
