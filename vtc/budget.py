"""Token budgets: the config of a compressor whose output is closest to, and not above, a total token count.

Each method declares the config keys ("knobs", `vtc.compressors.Knob`) that set its token count in its `MethodCard`;
one search serves them all. A knob is a sequence of integer settings ordered so that the token count never decreases,
and a function turning a setting into the config value (a pool size, a keep ratio, ...). Every count is the class's
own `num_output_tokens`, computed on a model built on the meta device (no memory, no weights). Several knobs are
searched jointly: the solver walks the first knob from its most tokens down and bisects the last, so a method reaches
a count that no knob reaches alone (MambaMia's 8 frames x 32 queries at 1/4: every frame with a query every 4
patches, where a frame ratio of 1/3 and one knob at a time reach only 48 of 64 tokens). Among configs with the same
count the earlier knob keeps its higher setting: a card lists first the knob whose resolution matters most.

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
        base_config: the rest of the config (kept; the knobs override their keys).

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
    applying = tuple(
        knob for knob in method_knobs if _knob_trials(method, knob, num_frames, tokens_per_frame, base_config)[0]
    )  # a knob with no setting on this input (a grid size where the tokens form no grid) is left out
    if not applying:
        raise ValueError(f"no knob of {method} applies to {num_frames} x {tokens_per_frame} frames x tokens")
    found = _search(method, applying, num_frames, tokens_per_frame, budget, base_config)
    if found is None:
        fewest = _extreme(method, applying, num_frames, tokens_per_frame, base_config, highest=False)[1]
        raise ValueError(
            f"{method} cannot go below {fewest} tokens for {num_frames} x {tokens_per_frame} frames x tokens "
            f"(knobs: {', '.join(knob.key for knob in method_knobs)}); budget was {budget}"
        )
    return found


def _search(
    method: str,
    method_knobs: tuple[Knob, ...],
    num_frames: int,
    tokens_per_frame: int,
    budget: int,
    config: dict[str, Any],
) -> tuple[dict[str, Any], int] | None:
    """The config setting `method_knobs` with the most tokens not above `budget` (the earlier knob higher on ties),
    or None where none fits. Counts never decrease along any knob, so the last knob is bisected, and the walk down the
    first stops at an exact fit or once the rest at their highest cannot beat the best found."""
    first, rest = method_knobs[0], method_knobs[1:]
    size, trial = _knob_trials(method, first, num_frames, tokens_per_frame, config)
    if not rest:
        fits = bisect.bisect_right(range(size), budget, key=lambda index: trial(index)[1])
        return trial(fits - 1) if fits else None
    best: tuple[dict[str, Any], int] | None = None
    for index in reversed(range(size)):
        candidate = trial(index)[0]
        ceiling = _extreme(method, rest, num_frames, tokens_per_frame, candidate, highest=True)
        if best is not None and ceiling[1] <= best[1]:
            break
        found = (
            ceiling if ceiling[1] <= budget else _search(method, rest, num_frames, tokens_per_frame, budget, candidate)
        )
        if found is not None and (best is None or found[1] > best[1]):
            best = found
        if best is not None and best[1] == budget:
            break
    return best


def _extreme(
    method: str,
    method_knobs: tuple[Knob, ...],
    num_frames: int,
    tokens_per_frame: int,
    config: dict[str, Any],
    highest: bool,
) -> tuple[dict[str, Any], int]:
    """`config` with every knob of `method_knobs` at its highest (most tokens) or lowest setting, and its count."""
    for knob in method_knobs:
        size, trial = _knob_trials(method, knob, num_frames, tokens_per_frame, config)
        config = trial(size - 1 if highest else 0)[0]
    return config, count_tokens(method, num_frames, tokens_per_frame, config)
