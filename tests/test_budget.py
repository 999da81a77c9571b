"""Token budgets: every registered method, several budgets, exact counts from the classes themselves."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import Tensor

from vtc.budget import configure, count_tokens, knobs
from vtc.compressors import (
    CompressedTokens,
    Compressor,
    Family,
    Knob,
    MethodCard,
    compressor_class,
    create_compressor,
    list_compressors,
)
from vtc.compressors.card import side_up_on_grid

FRAMES, PER_FRAME = 8, 16  # small enough to try every setting of every knob
BUDGETS = (1, 5, 8, 20, 40, 64, 128)


def all_counts(method: str, frames: int, per_frame: int) -> list[list[int]]:
    """The token count of every setting of every knob of `method` (base config at its defaults), in knob order."""
    config = create_compressor(method, dim=16).config
    return [
        [
            count_tokens(method, frames, per_frame, {knob.key: knob.config_value(setting, frames)})
            for setting in knob.settings(frames, per_frame, config)
        ]
        for knob in knobs(method)
    ] or [[count_tokens(method, frames, per_frame, {})]]


def count_changing_arguments(cls: type[Compressor], frames: int, per_frame: int) -> list[str]:
    """The numeric constructor arguments of `cls` (but `dim`) whose other values change its token count."""
    with torch.device("meta"):
        base = cls(dim=16).num_output_tokens(frames, per_frame)
        changing = []
        for name, parameter in inspect.signature(cls).parameters.items():
            default = parameter.default
            if name == "dim" or isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            for value in (default + 1, default * 2, default / 2) if isinstance(default, float) else (default + 1,):
                try:
                    model = cls(dim=16, **{name: value})
                except ValueError:
                    continue
                if model.num_output_tokens(frames, per_frame) != base:
                    changing.append(name)
                    break
    return changing


@pytest.mark.parametrize("method", list_compressors())
def test_a_method_without_knobs_has_a_count_fixed_by_the_input(method):
    if not knobs(method):
        changing = count_changing_arguments(compressor_class(method), FRAMES, PER_FRAME)
        assert not changing, f"{method} declares no budget knob but {changing} change its token count: add knobs"


def test_the_fixed_count_check_catches_a_method_without_knobs():
    class KeepsFirst(Compressor):
        def __init__(self, dim: int, keep: int = 2) -> None:
            super().__init__(dim)
            self.keep = keep

        def compress(self, tokens: Tensor, timestamps: Tensor, frame_mask: Tensor) -> CompressedTokens:
            raise NotImplementedError

        def num_output_tokens(self, num_frames: int, tokens_per_frame: int) -> int:
            return num_frames * min(self.keep, tokens_per_frame)

    assert count_changing_arguments(KeepsFirst, FRAMES, PER_FRAME) == ["keep"]


def every_setting_count(method: str, frames: int, per_frame: int) -> list[int]:
    """The token count of every combination of `method`'s knob settings (base config at its defaults)."""
    config = create_compressor(method, dim=16).config
    counts = [{}]
    for knob in knobs(method):
        settings = knob.settings(frames, per_frame, config)
        if settings:
            values = [knob.config_value(setting, frames) for setting in settings]
            counts = [{**trial, knob.key: value} for trial in counts for value in values]
    return [count_tokens(method, frames, per_frame, trial) for trial in counts]


@pytest.mark.parametrize("method", list_compressors())
def test_configure_is_the_closest_fit_of_any_setting(method):
    for counts in all_counts(method, FRAMES, PER_FRAME):
        assert counts == sorted(counts), f"{method}: a knob's settings are not ordered by token count"
    counts = every_setting_count(method, FRAMES, PER_FRAME)
    for budget in BUDGETS:
        fitting = [count for count in counts if count <= budget]
        if not fitting:
            with pytest.raises(ValueError, match="cannot"):
                configure(method, FRAMES, PER_FRAME, budget)
            continue
        config, count = configure(method, FRAMES, PER_FRAME, budget)
        assert count == max(fitting) <= budget
        assert count_tokens(method, FRAMES, PER_FRAME, config) == count


@pytest.mark.parametrize(
    ("method", "frames", "per_frame", "budget", "expected"),
    [
        ("mambamia", 8, 32, 64, {"frame_ratio": 1.0, "query_interval": 4}),  # one knob at a time reached 48
        ("uniform", 8, 100, 200, {"size": 10, "num_frames": 2}),  # whole frames, not avgpool2d's 8 at 5 x 5
        ("avgpool3d", 16, 100, 400, {"temporal_pool": 1, "pool": 2}),  # every frame kept
    ],
)
def test_knobs_are_searched_jointly_and_the_first_keeps_its_highest_setting_on_ties(
    method, frames, per_frame, budget, expected
):
    assert configure(method, frames, per_frame, budget) == (expected, budget)


@pytest.mark.parametrize("method", list_compressors())
def test_configured_model_outputs_the_counted_tokens(method):
    budget = 40 if method != "none" else FRAMES * PER_FRAME
    config, count = configure(method, FRAMES, PER_FRAME, budget)
    model = create_compressor(method, dim=16, **config).eval()
    with torch.no_grad():
        tokens = torch.randn(1, FRAMES, PER_FRAME, 16, generator=torch.Generator().manual_seed(0))
        out = model(tokens, attention=tokens.norm(dim=-1))  # the encoder's attention, for visionzip
    assert count <= budget
    assert out.tokens.shape[1] == count


@pytest.mark.parametrize("frames", [8, 25, 41, 128])
def test_taa_count_is_exact_for_every_keep_ratio_setting(frames):
    """The knob's setting is the number of frames kept: k frames of 4 anchors count exactly 4 k tokens."""
    (knob,) = knobs("taa")
    settings = knob.settings(frames, PER_FRAME, create_compressor("taa", dim=16).config)
    assert list(settings) == list(range(1, frames + 1))
    for kept in settings:
        assert count_tokens("taa", frames, PER_FRAME, {knob.key: knob.config_value(kept, frames)}) == 4 * kept
        assert configure("taa", frames, PER_FRAME, 4 * kept) == ({knob.key: kept / frames}, 4 * kept)


@pytest.mark.parametrize("method", ["tome", "stac", "storm", "avgpool2d", "taa", "resampler3d"])
@pytest.mark.parametrize("fraction", [2, 8, 32])
def test_realistic_budgets_next_setting_exceeds(method, fraction):
    if method not in list_compressors():
        pytest.skip(f"{method} is not registered")
    frames, per_frame = 128, 100
    budget = frames * per_frame // fraction
    config, count = configure(method, frames, per_frame, budget)
    assert count <= budget
    full = create_compressor(method, dim=16).config
    chosen = []
    for knob in knobs(method):
        settings = knob.settings(frames, per_frame, full)
        values = [knob.config_value(setting, frames) for setting in settings]
        if config.get(knob.key) in values:
            index = values.index(config[knob.key])
            trial = {**config, knob.key: values[index + 1]} if index + 1 < len(values) else None
            chosen.append(trial is None or count_tokens(method, frames, per_frame, trial) > budget)
    assert any(chosen), f"{method}: no knob sits at its last setting within budget {budget}"


def test_bad_arguments():
    with pytest.raises(ValueError, match="budget"):
        configure("tome", FRAMES, PER_FRAME, 0)
    with pytest.raises(ValueError, match="always outputs"):
        configure("none", FRAMES, PER_FRAME, FRAMES * PER_FRAME - 1)
    with pytest.raises(ValueError, match="no budget knob"):
        configure("no-such-method", FRAMES, PER_FRAME, 10)
    with pytest.raises(ValueError, match=r"taa cannot go below 4 tokens for 8 x 16 .*budget was 3"):
        configure("taa", FRAMES, PER_FRAME, 3)  # one frame of 4 anchors is the fewest


def test_a_grid_knob_is_skipped_where_the_tokens_form_no_grid(monkeypatch):
    assert configure("uniform", 8, 32, 64) == ({"num_frames": 2}, 64)  # 32 queries: frames only, no pooling
    grid_only = MethodCard(family=Family.TRAINING_FREE, knobs=(Knob("size", side_up_on_grid),))
    monkeypatch.setattr(compressor_class("uniform"), "card", grid_only)
    with pytest.raises(ValueError, match="no knob of uniform applies to 8 x 32"):
        configure("uniform", 8, 32, 64)
    assert configure("uniform", 8, 36, 8 * 9) == ({"size": 3}, 8 * 9)  # a 6 x 6 grid pooled to 3 x 3


TRAINING_FREE_VIDEO = [
    *("random", "uniform", "dycoke", "vidcom2", "fastvid", "holitom", "prunevid", "divprune", "visionzip"),
]


@pytest.mark.parametrize("method", TRAINING_FREE_VIDEO)
@pytest.mark.parametrize(("frames", "per_frame"), [(16, 100), (64, 196)])
@pytest.mark.parametrize("fraction", [2, 4, 8, 16])
def test_training_free_video_methods_hit_the_budget_exactly(method, frames, per_frame, fraction):
    """Issue #17's sizes: 16 x 100 (MambaMia's grid) and 64 x 196 (LLaVA-OV's) at 1/2 to 1/16 of the tokens, on a
    video with static positions and scene changes (what the merging methods react to)."""
    budget = frames * per_frame // fraction
    config, count = configure(method, frames, per_frame, budget)
    assert count == budget
    generator = torch.Generator().manual_seed(0)
    scenes = torch.randn(1, 4, 1, per_frame, 8, generator=generator).expand(1, 4, frames // 4, per_frame, 8)
    tokens = scenes.reshape(1, frames, per_frame, 8) + 0.1 * torch.randn(1, frames, per_frame, 8, generator=generator)
    tokens[:, :, : per_frame // 2] = tokens[:, :1, : per_frame // 2]  # half the positions static throughout
    out = create_compressor(method, dim=8, **config)(tokens, attention=tokens.norm(dim=-1))
    assert out.tokens.shape == (1, budget, 8) and out.mask.all()
    assert (out.frame_index[:, 1:] >= out.frame_index[:, :-1]).all()
