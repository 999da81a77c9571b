"""The contract every registered compressor meets, on its defaults or on a small config from `SMALL_KWARGS`.

Every test is parametrised over `vtc.list_compressors()`, so a newly registered method is checked with no edit here;
add a `SMALL_KWARGS` entry only to make its test config smaller (or its output count data independent).
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

import pytest
import torch

import vtc
from vtc.compressors import Compressor, Family, compressor_class, create_compressor

DIM, FRAMES, PER_FRAME, BATCH = 32, 3, 16, 2

SMALL_KWARGS: dict[str, dict[str, Any]] = {
    "none": {},
    "tome": {"num_tokens": 6},
    "tokenlearner": {"num_tokens": 3, "bottleneck": 8},
    "avgpool2d": {},
    "bilinear": {"size": 2},
    "avgpool3d": {"temporal_pool": 2},
    "frame-mean": {},
    "cabstractor": {"depth": 1, "hidden_dim": 16},
    "resampler2d": {"num_queries": 3, "depth": 1, "num_heads": 4},
    "resampler3d": {"num_queries": 5, "depth": 1, "num_heads": 4},
    "stac": {"keep": 4, "num_heads": 2, "d_state": 4},
    "tstar": {"query_interval": 5, "num_layers": 1, "num_heads": 4, "d_state": 4},
    "mambamia": {"num_layers": 1, "d_state": 4},
    "storm": {"temporal_pool": 2, "d_state": 4},
    "taa": {"keep_ratio": None, "threshold": 0.0, "d_state": 4},
}

NAMES = vtc.list_compressors()


def make(name: str) -> Compressor:
    torch.manual_seed(0)
    return create_compressor(name, dim=DIM, **SMALL_KWARGS.get(name, {})).eval()


def video(frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(BATCH, frames, PER_FRAME, DIM)


def attention(tokens: torch.Tensor) -> torch.Tensor:
    """`[B, T, N]` stand-in for the encoder's attention (the token norms), passed to every compressor: those with
    `uses_attention` (visionzip) require it, every other one ignores it."""
    return tokens.detach().float().norm(dim=-1)


def test_small_configs_name_registered_compressors():
    assert sorted(set(SMALL_KWARGS) - set(NAMES)) == []


def test_baselines_are_registered():
    expected = {"none", "tome", "tokenlearner", "avgpool2d", "bilinear", "avgpool3d", "frame-mean"}
    expected |= {"cabstractor", "resampler2d", "resampler3d"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_full_mask_gives_exactly_num_output_tokens(name):
    model = make(name)
    tokens = video()
    out = model(tokens, attention=attention(tokens))
    expected = model.num_output_tokens(FRAMES, PER_FRAME)
    assert out.tokens.shape == (BATCH, expected, DIM)
    assert out.mask.shape == out.frame_index.shape == out.timestamps.shape == (BATCH, expected)
    assert out.mask.all()


@pytest.mark.parametrize("name", NAMES)
def test_frame_index_is_in_time_order(name):
    tokens = video(frames=5)
    out = make(name)(tokens, attention=attention(tokens))
    for row in range(BATCH):
        frames = out.frame_index[row][out.mask[row] & (out.frame_index[row] >= 0)]
        assert (frames[1:] >= frames[:-1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_masked_frames_never_leak(name):
    model = make(name)
    tokens = video()
    frame_mask = torch.tensor([[True, False, True], [True, True, False]])
    first = model(tokens, frame_mask=frame_mask, attention=attention(tokens))
    changed = tokens.clone()
    changed[~frame_mask] = torch.randn_like(changed[~frame_mask]) * 10
    second = model(changed, frame_mask=frame_mask, attention=attention(changed))
    torch.testing.assert_close(first.tokens, second.tokens)
    torch.testing.assert_close(first.timestamps, second.timestamps)
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.frame_index, second.frame_index)
    assert not (first.frame_index[0] == 1).any() and not (first.frame_index[1] == 2).any()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_and_the_input(name):
    model = make(name).train()
    tokens = video().requires_grad_(True)
    out = model(tokens, attention=attention(tokens))
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} gets a zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_single_frame(name):
    model = make(name)
    tokens = video(frames=1)
    out = model(tokens, attention=attention(tokens))
    assert out.tokens.shape == (BATCH, model.num_output_tokens(1, PER_FRAME), DIM)
    assert out.mask.all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "tokens",
    [
        torch.randn(BATCH, PER_FRAME, DIM),
        torch.randn(BATCH, FRAMES, PER_FRAME, DIM + 1),
        torch.randn(BATCH, 0, PER_FRAME, DIM),
        torch.full((BATCH, FRAMES, PER_FRAME, DIM), float("nan")),
    ],
    ids=["rank", "dim", "no-frames", "nan"],
)
def test_bad_input_raises_value_error(name, tokens):
    with pytest.raises(ValueError, match=r"tokens must be \[B, T, N, D|tokens must be non-empty|NaN or Inf"):
        make(name)(tokens)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    model = make(name)
    tokens = video()
    model.save_pretrained(tmp_path)
    loaded = Compressor.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    weights = attention(tokens)
    torch.testing.assert_close(loaded(tokens, attention=weights).tokens, model(tokens, attention=weights).tokens)


@pytest.mark.parametrize("name", NAMES)
def test_config_records_every_constructor_argument_as_json(name):
    model = make(name)
    assert list(model.config) == list(inspect.signature(type(model)).parameters)
    assert json.loads(json.dumps(model.config)) == model.config
    assert model.config["dim"] == DIM
    for key, value in SMALL_KWARGS.get(name, {}).items():
        assert model.config[key] == value


@pytest.mark.parametrize("name", NAMES)
def test_saved_config_is_the_config(name, tmp_path):
    model = make(name)
    model.save_pretrained(tmp_path)
    assert Compressor.from_pretrained(tmp_path).config == model.config
    assert json.loads((tmp_path / "config.json").read_text())["compressor"] == compressor_class(name).registry_name


@pytest.mark.parametrize("name", NAMES)
def test_card_declares_family_and_a_buildable_paper_config(name):
    card = compressor_class(name).card
    assert isinstance(card.family, Family)
    if card.family is Family.TRAINING_FREE:
        assert not list(make(name).parameters())
    if card.paper_config is not None:
        with torch.device("meta"):
            paper = create_compressor(name, **card.paper_config)
        assert all(paper.config[key] == value for key, value in card.paper_config.items())


@pytest.mark.parametrize("name", NAMES)
def test_declared_streaming_steps_frames(name):
    model = make(name)
    if not model.supports_streaming:
        with pytest.raises(NotImplementedError, match=r"stream|looks at future frames"):
            model.init_state(BATCH)
        return
    tokens, state = video(), model.init_state(BATCH)
    for frame in range(FRAMES):
        out, state = model.step_frame(tokens[:, frame], torch.full((BATCH,), float(frame)), state)
        assert out.tokens.shape[0] == BATCH and out.tokens.shape[2] == DIM
        assert out.mask.shape == out.frame_index.shape == out.timestamps.shape == out.tokens.shape[:2]


ZERO_IS_VALID = {"seed"}  # int arguments for which 0 is a valid value (all others must be >= 1)


def numeric_arguments(kind: str) -> list[tuple[str, str]]:
    """`(compressor, argument)` for every constructor argument whose annotation names `kind` ("int" or "float");
    int arguments that may also be floats count as float."""
    found = []
    for name in NAMES:
        for argument, parameter in inspect.signature(compressor_class(name)).parameters.items():
            annotation = str(parameter.annotation)
            if re.search(rf"\b{kind}\b", annotation) and (kind == "float" or "float" not in annotation):
                found.append((name, argument))
    return found


def build(name: str, argument: str, value: Any) -> Compressor:
    with torch.device("meta"):
        return create_compressor(name, **{"dim": DIM, **SMALL_KWARGS.get(name, {}), argument: value})


@pytest.mark.parametrize(("name", "argument"), numeric_arguments("int"))
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_constructor_refuses_bad_int_arguments(name, argument, value):
    if value == 0 and argument in ZERO_IS_VALID:
        assert build(name, argument, value).config[argument] == 0
        return
    with pytest.raises((ValueError, TypeError), match=rf"\b{argument}\b"):
        build(name, argument, value)


@pytest.mark.parametrize(("name", "argument"), numeric_arguments("float"))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0])
def test_constructor_refuses_non_finite_and_negative_float_arguments(name, argument, value):
    with pytest.raises((ValueError, TypeError), match=rf"\b{argument}\b"):
        build(name, argument, value)


def test_numeric_arguments_are_found():
    assert {("random", "seed"), ("stac", "d_state"), ("avgpool2d", "grid"), ("cabstractor", "hidden_dim")} <= set(
        numeric_arguments("int")
    )
    assert {("taa", "keep_ratio"), ("tstar", "frame_ratio")} <= set(numeric_arguments("float"))
