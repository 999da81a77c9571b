"""The synthetic ground-truth benchmark: procedurally rendered videos whose target event we know exactly.

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
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vtc.world.raster import COLOURS, SHAPES, composite, render_background
from vtc.world.tracks import EVENTS, card_track, distractor_track, target_track

VARIANTS: tuple[str, ...] = ("moment", "choice", "needle")
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
        target_colour, target_shape, event, window = self.draw_target(rng)
        new_colour = str(rng.choice([c for c in COLOURS if c != target_colour]))
        frames = render_background(rng, times, self.height, self.width)
        label_map = np.zeros(frames.shape[:3], dtype=np.int64) if labels else None
        size = (self.height, self.width)
        for distractor in range(self.num_distractors):
            track = distractor_track(rng, times, size, target_colour, target_shape, distractor)
            composite(frames, track, label_map)
        target = target_track(rng, times, size, target_shape, target_colour, event, window, new_colour)
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

    def insert_needle(self, rng: np.random.Generator, video: SyntheticVideo) -> None:
        """Replace a brief segment by plain-screen frames showing one big shape; ask about it."""
        frames_needed = max(round(self.needle_length * self.fps), 1)
        first = int(rng.integers(0, max(self.num_frames - frames_needed, 0) + 1))
        last = min(first + frames_needed, self.num_frames)
        colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
        count = last - first
        card = card_track(count, (self.height, self.width), colour, shape)
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
