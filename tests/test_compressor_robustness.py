"""Nothing lost, nothing silently wrong: dtypes, masks, time order, bad streamed frames and missing weights, checked
for every registered compressor (the configs are the contract test's `SMALL_KWARGS`)."""

from __future__ import annotations

import pytest
import torch
from test_compressor_contract import BATCH, DIM, NAMES, PER_FRAME, SMALL_KWARGS, attention, make, video

from vtc.compressors import Compressor, create_compressor
from vtc.compressors.base import WEIGHTS_NAME

STREAMING = [(name, SMALL_KWARGS.get(name, {})) for name in NAMES if make(name).supports_streaming]
STREAMING += [("tstar", {**SMALL_KWARGS["tstar"], "block": "mamba"})]
STREAMING += [("tstar", {**SMALL_KWARGS["tstar"], "per_frame": True})]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_precision_input_returns_half(name, dtype):
    model, tokens = make(name), video()
    reference = model(tokens, attention=attention(tokens))
    with torch.no_grad():
        out = model(tokens.to(dtype), attention=attention(tokens))
    assert out.tokens.dtype == dtype
    assert out.tokens.shape == reference.tokens.shape and torch.isfinite(out.tokens).all()
    if dtype == torch.float64:
        torch.testing.assert_close(out.tokens.float(), reference.tokens, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_float_frame_mask_refused(name):
    model, tokens = make(name), video()
    with pytest.raises(ValueError, match="frame_mask"):
        model(tokens, frame_mask=torch.tensor([[1.0, 0.4, 1.0], [1.0, 1.0, 1.0]]))
    as_numbers = model(tokens, frame_mask=torch.tensor([[1.0, 0.0, 1.0], [1, 1, 0]]), attention=attention(tokens))
    as_bool = model(
        tokens, frame_mask=torch.tensor([[True, False, True], [True, True, False]]), attention=attention(tokens)
    )
    torch.testing.assert_close(as_numbers.tokens, as_bool.tokens)


@pytest.mark.parametrize("name", NAMES)
def test_timestamps_going_back_refused(name):
    model, tokens = make(name), video()
    with pytest.raises(ValueError, match="timestamps must not decrease"):
        model(tokens, torch.tensor([[0.0, 2.0, 1.0], [0.0, 1.0, 2.0]]))
    model(tokens, torch.tensor([[0.0, 1.0, 1.0], [0.0, 1.0, 2.0]]), attention=attention(tokens))  # ties keep order
    mask = torch.tensor([[True, False, True], [True, True, True]])
    model(tokens, torch.tensor([[0.0, 9.0, 1.0], [0.0, 1.0, 2.0]]), mask, attention(tokens))  # padded time ignored


@pytest.mark.parametrize(("name", "config"), STREAMING, ids=[f"{name}-{i}" for i, (name, _) in enumerate(STREAMING)])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_nan_frame_does_not_poison_streaming_state(name, config, bad):
    torch.manual_seed(0)
    model = create_compressor(name, dim=DIM, **config).eval()
    tokens, times = video(frames=2), torch.tensor([[0.0, 1.0]]).expand(BATCH, -1)
    _, state = model.step_frame(tokens[:, 0], times[:, 0], model.init_state(BATCH))
    poisoned = tokens[:, 0].clone()
    poisoned[0, 0, 0] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.step_frame(poisoned, times[:, 0] + 0.5, state)
    after, _ = model.step_frame(tokens[:, 1], times[:, 1], state)
    _, clean_state = model.step_frame(tokens[:, 0], times[:, 0], model.init_state(BATCH))
    expected, _ = model.step_frame(tokens[:, 1], times[:, 1], clean_state)
    assert torch.isfinite(after.tokens).all()
    torch.testing.assert_close(after.tokens, expected.tokens)
    assert torch.equal(after.mask, expected.mask) and torch.equal(after.frame_index, expected.frame_index)


@pytest.mark.parametrize(("name", "config"), STREAMING[:1])
def test_streamed_frame_of_wrong_shape_refused(name, config):
    model = create_compressor(name, dim=DIM, **config)
    state = model.init_state(BATCH)
    with pytest.raises(ValueError, match="frame_tokens"):
        model.step_frame(torch.randn(BATCH, PER_FRAME, DIM + 1), torch.zeros(BATCH), state)
    with pytest.raises(ValueError, match="timestamp"):
        model.step_frame(torch.randn(BATCH, PER_FRAME, DIM), torch.zeros(BATCH + 1), state)


@pytest.mark.parametrize("name", NAMES)
def test_from_pretrained_requires_weights(name, tmp_path):
    model = make(name)
    model.save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    if not model.state_dict():
        assert Compressor.from_pretrained(tmp_path).config == model.config  # nothing to load
        return
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        Compressor.from_pretrained(tmp_path)
