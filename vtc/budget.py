"""Token budgets: the config of a compressor whose output is closest to, and not above, a total token count.

Each method declares the config keys ("knobs", `vtc.compressors.Knob`) that set its token count in its `MethodCard`;
one search serves them all. A knob is a sequence of integer settings ordered so that the token count never decreases,
and a function turning a setting into the config value (a pool size, a keep ratio, ...). Every count is the class's
own `num_output_tokens`, computed on a model built on the meta device (no memory, no weights). With several knobs each
is searched with the others at their base values, and the closest count wins (earlier knobs on ties).

A method without knobs has a count fixed by the input; `tests/test_budget.py` fails for a method that declares no
knobs but whose count depends on its config.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from typing import Any

import torch

from vtc.compressors import Knob, compressor_class, create_compressor, list_compressors

PROBE_DIM = 64  # width of the meta-device models that count tokens when the base config names no `dim`


def knobs(method: str) -> tuple[Knob, ...]:
    """The budget knobs that the registered compressor `method` (or its preset's class) declares."""
    if method not in list_compressors():
        raise ValueError(f"no budget knob for compressor {method!r}: it is not registered")
    return compressor_class(method).card.knobs


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
        method: a registered compressor name.
        num_frames, tokens_per_frame: the video's T and N.
        budget: total output tokens allowed for one video.
        base_config: the rest of the config (kept; the searched knob overrides its key).

    Raises:
        ValueError: non-positive sizes, an unknown method, or a budget below the method's fewest tokens.
    """
    if min(num_frames, tokens_per_frame, budget) < 1:
        raise ValueError(
            f"num_frames, tokens_per_frame and budget must be >= 1, got {num_frames}, {tokens_per_frame}, {budget}"
        )
    method_knobs = knobs(method)
    if not method_knobs:
        fixed = count_tokens(method, num_frames, tokens_per_frame, base_config)
        if fixed > budget:
            raise ValueError(
                f"{method} always outputs {fixed} tokens for {num_frames} x {tokens_per_frame}; "
                f"it cannot fit a budget of {budget}"
            )
        return dict(base_config), fixed
    found, fewest = [], []
    for knob in method_knobs:
        size, trial = _knob_trials(method, knob, num_frames, tokens_per_frame, base_config)
        if size == 0:  # a knob with no setting on this input (a grid size where the tokens form no grid)
            continue
        fits = bisect.bisect_right(range(size), budget, key=lambda index: trial(index)[1])  # counts never decrease
        if fits:
            found.append(trial(fits - 1))
        else:
            fewest.append(trial(0)[1])
    if not found and not fewest:
        raise ValueError(f"no knob of {method} applies to {num_frames} x {tokens_per_frame} frames x tokens")
    if not found:
        raise ValueError(
            f"{method} cannot go below {min(fewest)} tokens for {num_frames} x {tokens_per_frame} frames x tokens "
            f"(knobs: {', '.join(knob.key for knob in method_knobs)}); budget was {budget}"
        )
    return max(found, key=lambda result: result[1])  # the first knob wins ties
