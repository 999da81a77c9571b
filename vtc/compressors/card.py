"""What a compressor declares about itself, in its own file: a `MethodCard`.

The registry registers its presets, `vtc info` shows its family and builds its paper config, the budget solver
(`vtc.budget.configure`) searches its knobs, and `Compressor.supports_streaming` asks its streaming rule; none of them
keeps a list of methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from vtc.compressors.grid import square_grid


class Family(str, Enum):
    """How a method gets its parameters."""

    STATE_SPACE = "state-space trained"
    ATTENTION = "attention trained"  # trained without a state-space model: attention, learned maps, convolutions
    TRAINING_FREE = "training-free"  # parameter-free


@dataclass(frozen=True)
class Knob:
    """One config key that sets a method's token count, searched by the budget solver.

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
        """The config value of the integer `setting` for a video of `num_frames` frames."""
        return setting if self.value is None else self.value(setting, num_frames)


@dataclass(frozen=True)
class MethodCard:
    """A compressor's facts, declared once as its class attribute `card`.

    Attributes:
        family: how it gets its parameters.
        knobs: the config keys that set its token count, each searched by the budget solver; empty only when the
            count is fixed by the input alone (`tests/test_budget.py` checks that).
        presets: further registered names of the class, each with its default overrides.
        paper_config: the configuration of its paper (`vtc info NAME --paper` builds it); None when it has none.
        paper_source: where in the paper `paper_config` comes from, one line.
        streaming: whether it streams (`init_state` / `step_frame`): a bool, or a rule on the full config for methods
            that stream only in some configurations.
    """

    family: Family
    knobs: tuple[Knob, ...] = ()
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    paper_config: dict[str, Any] | None = None
    paper_source: str = ""
    streaming: bool | Callable[[dict[str, Any]], bool] = False

    def __post_init__(self) -> None:
        if (self.paper_config is None) != (not self.paper_source):
            raise ValueError("a paper_config needs its paper_source, and a paper_source its paper_config")

    def streams(self, config: dict[str, Any]) -> bool:
        """Whether the compressor built with `config` (defaults filled in) streams."""
        return self.streaming(config) if callable(self.streaming) else self.streaming


# Knob settings shared by several methods: `(num_frames, tokens_per_frame, config) -> range`.


def up_to_frames(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Frame counts, fewest first."""
    return range(1, num_frames + 1)


def up_to_tokens(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Tokens per frame, fewest first."""
    return range(1, tokens_per_frame + 1)


def up_to_all_tokens(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Tokens per video, fewest first."""
    return range(1, num_frames * tokens_per_frame + 1)


def frames_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Temporal pools or strides, largest (fewest tokens) first."""
    return range(num_frames, 0, -1)


def tokens_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Patches per query, largest (fewest tokens) first."""
    return range(tokens_per_frame, 0, -1)


def grid_side(tokens_per_frame: int, config: dict[str, Any]) -> int:
    """The longer side of a frame's patch grid (`config["grid"]`, or square)."""
    grid = config.get("grid")
    return max(square_grid(tokens_per_frame, None if grid is None else tuple(grid)))


def side_down(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Square spatial pools, largest (fewest tokens) first."""
    return range(grid_side(tokens_per_frame, config), 0, -1)


def side_up(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """Square output grids, smallest first."""
    return range(1, grid_side(tokens_per_frame, config) + 1)


def side_up_on_grid(num_frames: int, tokens_per_frame: int, config: dict[str, Any]) -> range:
    """`side_up` where the frame's tokens form a grid (`config["grid"]`, or square N); none where they do not (a
    Q-Former's queries), so that a method that also has other knobs is searched on those alone."""
    try:
        return side_up(num_frames, tokens_per_frame, config)
    except ValueError:
        return range(0)
