"""The contract every registered compressor meets, run on small configs.

Registering a new compressor without adding its small test config to `SMALL_KWARGS` fails this file on
purpose.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import vtc
from vtc.compressors import Compressor, create_compressor

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
    if name not in SMALL_KWARGS:
        pytest.fail(f"compressor {name!r} is registered but has no small test config in SMALL_KWARGS; add one")
    torch.manual_seed(0)
    return create_compressor(name, dim=DIM, **SMALL_KWARGS[name]).eval()


def video(frames: int = FRAMES) -> torch.Tensor:
    return torch.randn(BATCH, frames, PER_FRAME, DIM)


def test_every_registered_compressor_has_a_small_test_config():
    missing = sorted(set(NAMES) - set(SMALL_KWARGS))
    assert not missing, f"add small test configs to SMALL_KWARGS for: {missing}"


def test_baselines_are_registered():
    expected = {"none", "tome", "tokenlearner", "avgpool2d", "bilinear", "avgpool3d", "frame-mean"}
    expected |= {"cabstractor", "resampler2d", "resampler3d"}
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_full_mask_gives_exactly_num_output_tokens(name):
    model = make(name)
    out = model(video())
    expected = model.num_output_tokens(FRAMES, PER_FRAME)
    assert out.tokens.shape == (BATCH, expected, DIM)
    assert out.mask.shape == out.frame_index.shape == out.timestamps.shape == (BATCH, expected)
    assert out.mask.all()


@pytest.mark.parametrize("name", NAMES)
def test_frame_index_is_in_time_order(name):
    out = make(name)(video(frames=5))
    for row in range(BATCH):
        frames = out.frame_index[row][out.mask[row] & (out.frame_index[row] >= 0)]
        assert (frames[1:] >= frames[:-1]).all()


@pytest.mark.parametrize("name", NAMES)
def test_masked_frames_never_leak(name):
    model = make(name)
    tokens = video()
    frame_mask = torch.tensor([[True, False, True], [True, True, False]])
    first = model(tokens, frame_mask=frame_mask)
    changed = tokens.clone()
    changed[~frame_mask] = torch.randn_like(changed[~frame_mask]) * 10
    second = model(changed, frame_mask=frame_mask)
    torch.testing.assert_close(first.tokens, second.tokens)
    torch.testing.assert_close(first.timestamps, second.timestamps)
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.frame_index, second.frame_index)
    assert not (first.frame_index[0] == 1).any() and not (first.frame_index[1] == 2).any()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter_and_the_input(name):
    model = make(name).train()
    tokens = video().requires_grad_(True)
    out = model(tokens)
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} gets no gradient"
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} gets a zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_single_frame(name):
    model = make(name)
    out = model(video(frames=1))
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
    with pytest.raises(ValueError):
        make(name)(tokens)


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_round_trip(name, tmp_path):
    model = make(name)
    tokens = video()
    model.save_pretrained(tmp_path)
    loaded = Compressor.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    torch.testing.assert_close(loaded(tokens).tokens, model(tokens).tokens)
