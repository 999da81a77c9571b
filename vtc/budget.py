"""Token budgets: the config of a compressor whose output is closest to, and not above, a total token count.

Each method lists the config keys ("knobs") that set its token count in `KNOBS`; one search serves them all. A knob
is a sequence of integer settings ordered so that the token count never decreases, and a function turning a setting
into the config value (a pool size, a keep ratio, ...). Every count is the class's own `num_output_tokens`, computed
on a model built on the meta device (no memory, no weights). With several knobs each is searched with the others at
their base values, and the closest count wins (earlier knobs on ties).

A method registered later gets a budget by adding one `KNOBS` entry; `tests/test_budget.py` fails until it has one.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vtc.compressors import create_compressor
from vtc.compressors.base import square_grid

PROBE_DIM = 64  # width of the meta-device models that count tokens when the base config names no `dim`


@dataclass(frozen=True)
class Knob:
    """One config key searched for a budget.

    Attributes:
        key: the config key it sets.
        settings: `(num_frames, tokens_per_frame, config) -> range` of integer settings, ordered so that the token
            count never decreases along it (`config` is the model's full config, defaults filled in).
        value: `(setting, num_frames) -> config value`; the setting itself when None.
    """

    key: str
    settings: Callable[[int, int, dict[str, Any]], range]
    value: Callable[[int, int], Any] | None = None

    def config_value(self, setting: int, num_frames: int) -> Any:
        return setting if self.value is None else self.value(setting, num_frames)


def _grid_side(tokens_per_frame: int, config: dict[str, Any]) -> int:
    """The longer side of a frame's patch grid."""
    grid = config.get("grid")
    return max(square_grid(tokens_per_frame, None if grid is None else tuple(grid)))


def _up_to_frames(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    return range(1, num_frames + 1)


def _up_to_tokens(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    return range(1, tokens_per_frame + 1)


def _frames_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Temporal pools or strides, largest (fewest tokens) first."""
    return range(num_frames, 0, -1)


def _tokens_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Patches per query, largest (fewest tokens) first."""
    return range(tokens_per_frame, 0, -1)


def _side_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Square spatial pools, largest (fewest tokens) first."""
    return range(_grid_side(tokens_per_frame, config), 0, -1)


def _side_up(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Square output grids, smallest first."""
    return range(1, _grid_side(tokens_per_frame, config) + 1)


def _tome_tokens(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    return range(1, (tokens_per_frame if config["scope"] == "frame" else num_frames * tokens_per_frame) + 1)


def _stac_keep(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    return range(1, (tokens_per_frame if config["axis"] == "slots" else num_frames) + 1)


def _all_tokens(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    return range(1, num_frames * tokens_per_frame + 1)


TSTAR_KNOBS = (
    Knob("frame_ratio", _frames_down, lambda stride, _: 1 / stride),  # keeps every stride-th frame's queries
    Knob("query_interval", _tokens_down),
)

KNOBS: dict[str, tuple[Knob, ...]] = {
    "none": (),
    "frame-mean": (),
    "avgpool2d": (Knob("pool", _side_down),),
    "bilinear": (Knob("size", _side_up),),
    "avgpool3d": (Knob("temporal_pool", _frames_down), Knob("pool", _side_down)),
    "cabstractor": (Knob("grid_out", _side_up, lambda side, _: (side, side)),),
    "tokenlearner": (Knob("num_tokens", _up_to_tokens),),
    "tome": (Knob("num_tokens", _tome_tokens),),
    "resampler2d": (Knob("num_queries", _up_to_tokens),),
    "resampler3d": (Knob("num_queries", _all_tokens),),
    "stac": (Knob("keep", _stac_keep),),
    "tstar": TSTAR_KNOBS,
    "mambamia": TSTAR_KNOBS,
    "storm": (Knob("temporal_pool", _frames_down), Knob("spatial_pool", _side_down)),
    "taa": (Knob("keep_ratio", _up_to_frames, lambda kept, frames: kept / frames),),  # frames kept / T
}


def count_tokens(method: str, num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> int:
    """Exact output tokens per video of `method` with `config` (inference mode), from the class itself."""
    frozen = tuple(sorted((key, tuple(value) if isinstance(value, list) else value) for key, value in config.items()))
    return _count_frozen(method, num_frames, tokens_per_frame, frozen)


@functools.lru_cache(maxsize=65536)
def _count_frozen(method: str, num_frames: int, tokens_per_frame: int, config: tuple[tuple[str, Any], ...]) -> int:
    """`count_tokens` on a hashable config, cached: a search asks for the same settings again and again."""
    return _meta_model(method, dict(config)).num_output_tokens(num_frames, tokens_per_frame)


def _meta_model(method: str, config: dict[str, Any]) -> torch.nn.Module:
    with torch.device("meta"):
        model = create_compressor(method, **{"dim": PROBE_DIM, **config})
    return model.eval()


def _knob_trials(
    method: str, knob: Knob, num_frames: int, tokens_per_frame: int, config: dict[str, Any]
) -> tuple[int, Callable[[int], tuple[dict[str, Any], int]]]:
    """How many settings `knob` has, and `trial(index) -> (config, exact count)` of its index-th setting."""
    settings = knob.settings(num_frames, tokens_per_frame, _meta_model(method, config).config)

    def trial(index: int) -> tuple[dict[str, Any], int]:
        candidate = {**config, knob.key: knob.config_value(settings[index], num_frames)}
        return candidate, count_tokens(method, num_frames, tokens_per_frame, candidate)

    return len(settings), trial


def configure(
    method: str, num_frames: int, tokens_per_frame: int, budget: int, **base_config: Any
) -> tuple[dict[str, Any], int]:
    """The config of `method` with the most output tokens that is not above `budget`, and that exact count.

    Args:
        method: a registered compressor name with an entry in `KNOBS`.
        num_frames, tokens_per_frame: the video's T and N.
        budget: total output tokens allowed for one video.
        base_config: the rest of the config (kept; the searched knob overrides its key).

    Raises:
        ValueError: non-positive sizes, a method without knobs, or a budget below the method's fewest tokens.
    """
    if min(num_frames, tokens_per_frame, budget) < 1:
        raise ValueError(
            f"num_frames, tokens_per_frame and budget must be >= 1, got {num_frames}, {tokens_per_frame}, {budget}"
        )
    if method not in KNOBS:
        raise ValueError(f"no budget knob for compressor {method!r}; add it to vtc.budget.KNOBS")
    if not KNOBS[method]:
        fixed = count_tokens(method, num_frames, tokens_per_frame, base_config)
        if fixed > budget:
            raise ValueError(
                f"{method} always outputs {fixed} tokens for {num_frames} x {tokens_per_frame}; "
                f"it cannot fit a budget of {budget}"
            )
        return dict(base_config), fixed
    found, fewest = [], []
    for knob in KNOBS[method]:
        size, trial = _knob_trials(method, knob, num_frames, tokens_per_frame, base_config)
        fits = bisect.bisect_right(range(size), budget, key=lambda index: trial(index)[1])  # counts never decrease
        if fits:
            found.append(trial(fits - 1))
        else:
            fewest.append(trial(0)[1])
    if not found:
        raise ValueError(
            f"{method} cannot go below {min(fewest)} tokens for {num_frames} x {tokens_per_frame} frames x tokens "
            f"(knobs: {', '.join(knob.key for knob in KNOBS[method])}); budget was {budget}"
        )
    return max(found, key=lambda result: result[1])  # the first knob wins ties
