"""Motion of the synthetic world's shapes: distractors bouncing around all video long, and the target doing its
one event (appear, disappear, move, change colour, grow, shrink) linearly over its window. Every function draws a
fixed number of random values, so a video is a pure function of its random generator's seed."""

from __future__ import annotations

import numpy as np

from vtc.world.raster import COLOURS, SHAPES, Track

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
MOVES: dict[str, tuple[float, float]] = {
    "moves left": (-1.0, 0.0),
    "moves right": (1.0, 0.0),
    "moves up": (0.0, -1.0),
    "moves down": (0.0, 1.0),
}
MOVE_DISTANCE = 0.4  # of the frame side
RADIUS_RANGE = (0.07, 0.1)  # of the frame side


def bounce(start: np.ndarray, velocity: np.ndarray, times: np.ndarray, low: float, high: float) -> np.ndarray:
    """Positions `[T]` of a point moving at `velocity` from `start` and bouncing between `low` and `high`."""
    span = high - low
    travelled = np.mod(start - low + velocity * times, 2 * span)
    return low + span - np.abs(travelled - span)


def event_progress(times: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """0 before the window, rising linearly to 1 at its end, 1 after."""
    start, end = window
    return np.clip((times - start) / max(end - start, 1e-6), 0.0, 1.0)


def distractor_track(
    rng: np.random.Generator,
    times: np.ndarray,
    size: tuple[int, int],
    target_colour: str,
    target_shape: str,
    number: int,
) -> Track:
    """A shape bouncing around a `size = (height, width)` frame all video long; even `number`s share the target's
    colour, odd ones its shape."""
    height, width = size
    side = float(min(height, width))
    if number % 2 == 0:
        colour, shape = target_colour, str(rng.choice([s for s in SHAPES if s != target_shape]))
    else:
        colour, shape = str(rng.choice([c for c in COLOURS if c != target_colour])), target_shape
    radius = rng.uniform(*RADIUS_RANGE) * side
    speed = rng.uniform(0.05, 0.25, size=2) * side * rng.choice([-1.0, 1.0], size=2)
    x = bounce(rng.uniform(radius, width - radius), speed[0], times, radius, width - radius)
    y = bounce(rng.uniform(radius, height - radius), speed[1], times, radius, height - radius)
    return Track(
        shape=shape,
        x=x.astype(np.float32),
        y=y.astype(np.float32),
        radius=np.full(len(times), radius, dtype=np.float32),
        alpha=np.ones(len(times), dtype=np.float32),
        colour=np.tile(np.asarray(COLOURS[colour], dtype=np.float32), (len(times), 1)),
    )


def target_track(
    rng: np.random.Generator,
    times: np.ndarray,
    size: tuple[int, int],
    shape: str,
    colour: str,
    event: str,
    window: tuple[float, float],
    new_colour: str,
) -> Track:
    """The target in a `size = (height, width)` frame: still outside its event, doing `event` linearly over
    `window` (turning `new_colour` when the event is "changes colour")."""
    height, width = size
    progress = event_progress(times, window).astype(np.float32)
    radius = rng.uniform(*RADIUS_RANGE) * float(min(height, width))
    step_x, step_y = MOVES.get(event, (0.0, 0.0))
    margin = 1.8 * radius
    low_x = margin + max(-step_x, 0.0) * MOVE_DISTANCE * width
    high_x = width - margin - max(step_x, 0.0) * MOVE_DISTANCE * width
    low_y = margin + max(-step_y, 0.0) * MOVE_DISTANCE * height
    high_y = height - margin - max(step_y, 0.0) * MOVE_DISTANCE * height
    x0, y0 = rng.uniform(low_x, max(high_x, low_x)), rng.uniform(low_y, max(high_y, low_y))
    x = x0 + step_x * MOVE_DISTANCE * width * progress
    y = y0 + step_y * MOVE_DISTANCE * height * progress
    scale = {"grows": 1.0 + 0.8 * progress, "shrinks": 1.6 - 0.9 * progress}.get(event, np.ones_like(progress))
    alpha = {"appears": progress, "disappears": 1.0 - progress}.get(event, np.ones_like(progress))
    start_rgb = np.asarray(COLOURS[colour], dtype=np.float32)
    end_rgb = np.asarray(COLOURS[new_colour], dtype=np.float32) if event == "changes colour" else start_rgb
    rgb = start_rgb + (end_rgb - start_rgb) * progress[:, None]
    return Track(shape, x.astype(np.float32), y.astype(np.float32), radius * scale, alpha, rgb)


def card_track(count: int, size: tuple[int, int], colour: str, shape: str) -> Track:
    """A big still shape in the middle of a `size = (height, width)` frame, for `count` frames (the needle)."""
    height, width = size
    return Track(
        shape=shape,
        x=np.full(count, width / 2, dtype=np.float32),
        y=np.full(count, height / 2, dtype=np.float32),
        radius=np.full(count, 0.3 * min(height, width), dtype=np.float32),
        alpha=np.ones(count, dtype=np.float32),
        colour=np.tile(np.asarray(COLOURS[colour], dtype=np.float32), (count, 1)),
    )
