"""Synthetic ground-truth benchmark: procedurally rendered videos whose target event we know exactly.

Each video (numpy only, vectorised over frames) shows a moving textured background, `num_distractors` shapes
moving throughout, and one target shape that does one event in `[start, end]`: it appears, disappears, moves
left/right/up/down, changes colour, grows or shrinks. Every distractor shares the target's colour or its shape
(never both), so the query ("the red circle moves left") needs the binding of colour, shape and time: a single
frame or a bag of frames is not enough.

Variants: `"moment"` (query + window), `"choice"` ("what does the red circle do?", 4 options) and `"needle"`
(a brief inserted segment of plain-screen frames showing one shape, asked about as a moment and as a 4-way
choice). Every sample is a pure function of `(seed, index)`; defaults are near Charades-STA (30 s videos, ~8 s
events).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (60, 100, 240),
    "yellow": (240, 220, 40),
    "magenta": (220, 60, 210),
    "cyan": (40, 220, 230),
}
EVENTS: tuple[str, ...] = (
    "appears",
    "disappears",
    "moves left",
    "moves right",
    "moves up",
    "moves down",
    "changes colour",
    "grows",
    "shrinks",
)
VARIANTS: tuple[str, ...] = ("moment", "choice", "needle")
MOVES: dict[str, tuple[float, float]] = {
    "moves left": (-1.0, 0.0),
    "moves right": (1.0, 0.0),
    "moves up": (0.0, -1.0),
    "moves down": (0.0, 1.0),
}
MOVE_DISTANCE = 0.4  # of the frame side
RADIUS_RANGE = (0.07, 0.1)  # of the frame side
NUM_OPTIONS = 4


@dataclass
class SyntheticVideo:
    """One rendered sample: `frames [T, H, W, 3]` uint8, `timestamps [T]` seconds, target `window` (s, e), and
    when asked for, the scene's `labels [T, H, W]` (`object_class` of the top shape at each pixel, 0 elsewhere)."""

    video_id: str
    frames: np.ndarray
    timestamps: np.ndarray
    query: str
    window: tuple[float, float]
    duration: float
    event: str
    question: str | None = None
    options: list[str] | None = None
    answer: int | None = None
    labels: np.ndarray | None = None


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


def bounce(start: np.ndarray, velocity: np.ndarray, times: np.ndarray, low: float, high: float) -> np.ndarray:
    """Positions `[T]` of a point moving at `velocity` from `start` and bouncing between `low` and `high`."""
    span = high - low
    travelled = np.mod(start - low + velocity * times, 2 * span)
    return low + span - np.abs(travelled - span)


def event_progress(times: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """0 before the window, rising linearly to 1 at its end, 1 after."""
    start, end = window
    return np.clip((times - start) / max(end - start, 1e-6), 0.0, 1.0)


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


NUM_OBJECT_CLASSES = 1 + len(COLOURS) * len(SHAPES)  # background + every (colour, shape)


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


def phrase(event: str, new_colour: str | None) -> str:
    """The verb phrase of an event ("moves left", "turns blue")."""
    return f"turns {new_colour}" if event == "changes colour" else event


class SyntheticMoments(Dataset):
    """The procedural benchmark as a map-style dataset (see the module docstring).

    Args:
        num_videos: dataset length.
        duration: video length in seconds.
        fps: frames per second (T = round(duration * fps)).
        frame_size: `side` or `(height, width)` in pixels.
        num_distractors: distractor shapes, each sharing the target's colour or shape.
        event_length: `(min, max)` seconds of the target event (uniform), capped at `duration`.
        variant: `"moment"`, `"choice"` or `"needle"`.
        needle_length: seconds of the needle segment (at least one frame).
        seed: base seed; sample `i` is a pure function of `(seed, i)`.

    `__getitem__` returns a dict: `frames` uint8 `[T, H, W, 3]`, `timestamps` float32 `[T]`, `window` float32
    `[2]`, `query`, `duration`, `video_id`, `qid`, `event`, and for `"choice"` / `"needle"` also `question`,
    `options` (4 strings) and `answer` (index).
    """

    def __init__(
        self,
        num_videos: int = 1000,
        duration: float = 30.0,
        fps: float = 2.0,
        frame_size: int | tuple[int, int] = 64,
        num_distractors: int = 4,
        event_length: tuple[float, float] = (4.0, 12.0),
        variant: str = "moment",
        needle_length: float = 1.0,
        seed: int = 0,
    ) -> None:
        height, width = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        if num_videos < 0 or duration <= 0 or fps <= 0 or min(height, width) < 16 or num_distractors < 0:
            raise ValueError(
                "need num_videos >= 0, duration > 0, fps > 0, frame_size >= 16 and num_distractors >= 0, got "
                f"{num_videos}, {duration}, {fps}, {frame_size}, {num_distractors}"
            )
        if not 0 < event_length[0] <= event_length[1]:
            raise ValueError(f"event_length must be (min, max) with 0 < min <= max, got {event_length}")
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.num_videos = num_videos
        self.duration = float(duration)
        self.fps = float(fps)
        self.height, self.width = int(height), int(width)
        self.num_distractors = num_distractors
        self.event_length = (float(event_length[0]), float(event_length[1]))
        self.variant = variant
        self.needle_length = float(needle_length)
        self.seed = seed
        self.num_frames = max(round(self.duration * self.fps), 1)

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict[str, Any]:
        video = self.render(index)
        item: dict[str, Any] = {
            "qid": f"{video.video_id}",
            "video_id": video.video_id,
            "frames": torch.from_numpy(video.frames),
            "timestamps": torch.from_numpy(video.timestamps),
            "query": video.query,
            "window": torch.tensor(video.window, dtype=torch.float32),
            "duration": video.duration,
            "event": video.event,
        }
        if video.options is not None:
            item.update(question=video.question, options=video.options, answer=video.answer)
        return item

    def render(self, index: int, frame_indices: np.ndarray | None = None, labels: bool = False) -> SyntheticVideo:
        """Render sample `index` (numpy arrays); only the frames at `frame_indices` (all when None); with `labels`,
        also the per-pixel object classes (the supervision of a stage-1 perception encoder).

        Every random draw has a fixed size, so a subset is the same pixels as rendering the whole video and selecting
        from it, at a fraction of the cost (a trainer that samples 16 of 60 frames renders 16). The needle variant
        rewrites a stretch of the whole timeline, so it renders every frame and then selects.
        """
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        rng = np.random.default_rng([self.seed, index])
        times = (np.arange(self.num_frames) / self.fps).astype(np.float32)
        if frame_indices is not None and self.variant != "needle":
            times = times[frame_indices]
        side = float(min(self.height, self.width))
        target_colour, target_shape, event, window = self.draw_target(rng)
        new_colour = str(rng.choice([c for c in COLOURS if c != target_colour]))
        frames = render_background(rng, times, self.height, self.width)
        label_map = np.zeros(frames.shape[:3], dtype=np.int64) if labels else None
        for distractor in range(self.num_distractors):
            track = self.distractor_track(rng, times, side, target_colour, target_shape, distractor)
            composite(frames, track, label_map)
        target = self.target_track(rng, times, side, target_shape, target_colour, event, window, new_colour)
        composite(frames, target, label_map)
        name = f"the {target_colour} {target_shape}"
        query = f"{name} {phrase(event, new_colour)}"
        video = SyntheticVideo(
            video_id=f"synth{self.seed}_{index:06d}",
            frames=frames,
            timestamps=times,
            query=query,
            window=window,
            duration=self.duration,
            event=event,
            labels=label_map,
        )
        if self.variant == "choice":
            video.question = f"what does {name} do?"
            correct = phrase(event, new_colour)
            other_colours = [c for c in COLOURS if c != target_colour]
            wrong = [phrase(e, str(rng.choice(other_colours))) for e in EVENTS if e != event]
            self.set_options(rng, video, correct, wrong)
        elif self.variant == "needle":
            self.insert_needle(rng, video)
        if frame_indices is not None and self.variant == "needle":
            video.frames, video.timestamps = video.frames[frame_indices], video.timestamps[frame_indices]
            video.labels = None if video.labels is None else video.labels[frame_indices]
        video.frames = np.clip(video.frames, 0, 255).astype(np.uint8)
        return video

    def draw_target(self, rng: np.random.Generator) -> tuple[str, str, str, tuple[float, float]]:
        """The first draws of every sample: target colour, shape, event and its window."""
        target_colour, target_shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        return target_colour, target_shape, str(rng.choice(EVENTS)), self.draw_window(rng)

    def window(self, index: int) -> tuple[float, float]:
        """Ground-truth window of sample `index`, without rendering it (the same draws as `render`)."""
        if not 0 <= index < self.num_videos:
            raise IndexError(f"index {index} out of range for {self.num_videos} videos")
        return self.draw_target(np.random.default_rng([self.seed, index]))[3]

    def draw_window(self, rng: np.random.Generator) -> tuple[float, float]:
        """Event window: length uniform in `event_length` (<= duration), start uniform; on a 0.1 s grid."""
        length = min(rng.uniform(*self.event_length), self.duration)
        start = rng.uniform(0.0, self.duration - length)
        start, end = round(start, 1), round(start + length, 1)
        end = min(max(end, start + 0.1), self.duration)
        return start, end

    def distractor_track(
        self,
        rng: np.random.Generator,
        times: np.ndarray,
        side: float,
        target_colour: str,
        target_shape: str,
        number: int,
    ) -> Track:
        """A shape bouncing around all video long; even `number`s share the colour, odd ones the shape."""
        if number % 2 == 0:
            colour, shape = target_colour, str(rng.choice([s for s in SHAPES if s != target_shape]))
        else:
            colour, shape = str(rng.choice([c for c in COLOURS if c != target_colour])), target_shape
        radius = rng.uniform(*RADIUS_RANGE) * side
        speed = rng.uniform(0.05, 0.25, size=2) * side * rng.choice([-1.0, 1.0], size=2)
        x = bounce(rng.uniform(radius, self.width - radius), speed[0], times, radius, self.width - radius)
        y = bounce(rng.uniform(radius, self.height - radius), speed[1], times, radius, self.height - radius)
        return Track(
            shape=shape,
            x=x.astype(np.float32),
            y=y.astype(np.float32),
            radius=np.full(len(times), radius, dtype=np.float32),
            alpha=np.ones(len(times), dtype=np.float32),
            colour=np.tile(np.asarray(COLOURS[colour], dtype=np.float32), (len(times), 1)),
        )

    def target_track(
        self,
        rng: np.random.Generator,
        times: np.ndarray,
        side: float,
        shape: str,
        colour: str,
        event: str,
        window: tuple[float, float],
        new_colour: str,
    ) -> Track:
        """The target: still outside its event, doing `event` linearly over `window`."""
        progress = event_progress(times, window).astype(np.float32)
        radius = rng.uniform(*RADIUS_RANGE) * side
        step_x, step_y = MOVES.get(event, (0.0, 0.0))
        margin = 1.8 * radius
        low_x = margin + max(-step_x, 0.0) * MOVE_DISTANCE * self.width
        high_x = self.width - margin - max(step_x, 0.0) * MOVE_DISTANCE * self.width
        low_y = margin + max(-step_y, 0.0) * MOVE_DISTANCE * self.height
        high_y = self.height - margin - max(step_y, 0.0) * MOVE_DISTANCE * self.height
        x0, y0 = rng.uniform(low_x, max(high_x, low_x)), rng.uniform(low_y, max(high_y, low_y))
        x = x0 + step_x * MOVE_DISTANCE * self.width * progress
        y = y0 + step_y * MOVE_DISTANCE * self.height * progress
        scale = {"grows": 1.0 + 0.8 * progress, "shrinks": 1.6 - 0.9 * progress}.get(event, np.ones_like(progress))
        alpha = {"appears": progress, "disappears": 1.0 - progress}.get(event, np.ones_like(progress))
        start_rgb = np.asarray(COLOURS[colour], dtype=np.float32)
        end_rgb = np.asarray(COLOURS[new_colour], dtype=np.float32) if event == "changes colour" else start_rgb
        rgb = start_rgb + (end_rgb - start_rgb) * progress[:, None]
        return Track(shape, x.astype(np.float32), y.astype(np.float32), radius * scale, alpha, rgb)

    def insert_needle(self, rng: np.random.Generator, video: SyntheticVideo) -> None:
        """Replace a brief segment by plain-screen frames showing one big shape; ask about it."""
        frames_needed = max(round(self.needle_length * self.fps), 1)
        first = int(rng.integers(0, max(self.num_frames - frames_needed, 0) + 1))
        last = min(first + frames_needed, self.num_frames)
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        count = last - first
        card = Track(
            shape=shape,
            x=np.full(count, self.width / 2, dtype=np.float32),
            y=np.full(count, self.height / 2, dtype=np.float32),
            radius=np.full(count, 0.3 * min(self.height, self.width), dtype=np.float32),
            alpha=np.ones(count, dtype=np.float32),
            colour=np.tile(np.asarray(COLOURS[colour], dtype=np.float32), (count, 1)),
        )
        plain = np.full((count, self.height, self.width, 3), 128.0, dtype=np.float32)
        card_labels = np.zeros(plain.shape[:3], dtype=np.int64) if video.labels is not None else None
        composite(plain, card, card_labels)
        video.frames[first:last] = plain
        if video.labels is not None:
            video.labels[first:last] = card_labels
        video.window = (round(first / self.fps, 2), round(min(last / self.fps, self.duration), 2))
        video.event = "needle"
        video.query = f"a {colour} {shape} flashes on a plain grey screen"
        video.question = "which shape flashed briefly on a plain grey screen?"
        wrong = [f"a {c} {s}" for c in COLOURS for s in SHAPES if (c, s) != (colour, shape)]
        self.set_options(rng, video, f"a {colour} {shape}", wrong)

    @staticmethod
    def set_options(rng: np.random.Generator, video: SyntheticVideo, correct: str, wrong: list[str]) -> None:
        """Four options: `correct` and three distinct wrong ones, shuffled; sets `options` and `answer`."""
        picked = [wrong[i] for i in rng.choice(len(wrong), size=NUM_OPTIONS - 1, replace=False)]
        options = [correct, *picked]
        order = rng.permutation(NUM_OPTIONS)
        video.options = [options[i] for i in order]
        video.answer = int(np.flatnonzero(order == 0)[0])


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
