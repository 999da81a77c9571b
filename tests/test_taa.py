"""Time-axis aggregator: delta-time driven adaptive frame keeping, gradients, padding, streaming."""

from __future__ import annotations

import math

import pytest
import torch

from vtc.compressors.taa import TimeAxisAggregator, emit_frames

DIM, PER_FRAME = 16, 16  # 4x4 grid -> 2x2 pool -> 4 anchors per frame


def make(**kwargs) -> TimeAxisAggregator:
    torch.manual_seed(0)
    return TimeAxisAggregator(DIM, **{"d_state": 4, **kwargs})


def test_emit_frames_resets_the_running_sum_after_each_emission():
    delta = torch.tensor([[0.3, 0.3, 0.5, 0.1, 0.9], [0.1, 0.1, 0.1, 0.1, 0.1]])
    kept = emit_frames(delta, torch.tensor([0.5, 0.25]))
    assert kept.tolist() == [[False, True, True, False, True], [False, False, True, False, False]]


@pytest.mark.parametrize("frames", [1, 7, 12])
@pytest.mark.parametrize("keep_ratio", [0.25, 0.5])
def test_keep_ratio_bounds_the_kept_frames(frames, keep_ratio):
    model = make(keep_ratio=keep_ratio)
    out = model(torch.randn(3, frames, PER_FRAME, DIM) * torch.rand(3, frames, 1, 1) * 3)
    kept = out.aux["kept_frames"]
    assert out.aux["delta_time"].shape == kept.shape == (3, frames)
    assert (out.aux["delta_time"] > 0).all()
    counts = kept.sum(dim=1)
    assert (counts >= 1).all() and (counts <= math.ceil(keep_ratio * frames)).all()
    assert out.tokens.shape[1] <= model.num_output_tokens(frames, PER_FRAME)
    assert torch.equal(out.num_tokens, counts * 4)
    for row in range(3):
        expected = kept[row].nonzero().squeeze(1).repeat_interleave(4)
        assert torch.equal(out.frame_index[row][out.mask[row]], expected)


def test_zero_threshold_keeps_every_frame():
    model = make(keep_ratio=None, threshold=0.0)
    out = model(torch.randn(2, 5, PER_FRAME, DIM))
    assert out.mask.all() and out.tokens.shape == (2, model.num_output_tokens(5, PER_FRAME), DIM)


def test_every_parameter_gets_a_gradient_through_the_selection():
    model = make()
    out = model(torch.randn(2, 6, PER_FRAME, DIM))
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_padded_frames_never_leak():
    model = make()
    tokens = torch.randn(2, 6, PER_FRAME, DIM)
    frame_mask = torch.tensor([[True, True, False, True, True, True], [True, True, True, False, False, False]])
    first = model(tokens, frame_mask=frame_mask)
    tokens[~frame_mask] = 30.0
    second = model(tokens, frame_mask=frame_mask)
    torch.testing.assert_close(first.tokens, second.tokens)
    assert torch.equal(first.frame_index, second.frame_index)
    assert not (first.frame_index[0] == 2).any() and (first.frame_index[1] < 3).all()


def test_streaming_with_a_threshold_equals_batch_with_constant_memory():
    model = make(keep_ratio=None, threshold=0.05).eval()
    tokens, times = torch.randn(2, 9, PER_FRAME, DIM), torch.arange(9.0).expand(2, -1)
    batch = model(tokens, times)
    assert batch.num_tokens.min() > 0 and batch.num_tokens.max() < 9 * 4, "threshold should keep some frames"
    state = model.init_state(2)
    pieces, sizes = [], []
    for frame in range(9):
        out, state = model.step_frame(tokens[:, frame], times[:, frame], state)
        pieces.append(out)
        sizes.append(state["mamba"].conv.numel() + state["mamba"].ssm.numel() + state["running"].numel())
    for row in range(2):
        streamed = torch.cat([p.tokens[row][p.mask[row]] for p in pieces])
        torch.testing.assert_close(streamed, batch.tokens[row][batch.mask[row]], atol=1e-5, rtol=0)
        frames = torch.cat([p.frame_index[row][p.mask[row]] for p in pieces])
        assert torch.equal(frames, batch.frame_index[row][batch.mask[row]])
    assert len(set(sizes)) == 1


def test_keep_ratio_refuses_to_stream_and_bad_configs_raise():
    with pytest.raises(NotImplementedError):
        make().init_state(1)
    for kwargs in ({"keep_ratio": None}, {"keep_ratio": 0.5, "threshold": 1.0}, {"keep_ratio": 1.5}):
        with pytest.raises(ValueError):
            make(**kwargs)


def test_mambamia_spatial_stage_makes_per_frame_query_anchors_that_learn_and_stream():
    torch.manual_seed(0)
    model = TimeAxisAggregator(16, spatial="mambamia", query_interval=5, threshold=0.0, keep_ratio=None, d_state=4)
    tokens = torch.randn(2, 6, 20, 16)
    out = model(tokens)
    assert out.tokens.shape == (2, model.num_output_tokens(6, 20), 16) == (2, 24, 16)
    out.tokens.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.spatial_stage.parameters())
    model.eval()
    state, frames = model.init_state(2), []
    with torch.no_grad():
        for t in range(6):
            frame, state = model.step_frame(tokens[:, t], torch.full((2,), float(t)), state)
            frames.append(frame.tokens)
        assert (torch.cat(frames, dim=1) - model(tokens).tokens).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("frames", "keep_ratio", "kept"),
    [(1, 0.3, 1), (7, 0.5, 4), (9, 1 / 3, 3), (10, 0.25, 3), (12, 1.0, 12), (25, 0.28, 7), (25, 7 / 25, 7)],
)
def test_taa_keeps_exactly_ceil_ratio_frames(frames, keep_ratio, kept):
    """`kept` = ceil(keep_ratio * frames), by hand. Delta-time is 1 on `kept` spread-out frames and 1e-9 elsewhere,
    so with the threshold sum / kept exactly those frames cross it, one crossing each."""
    model = make(keep_ratio=keep_ratio)
    spikes = [round((k + 1) * frames / kept) - 1 for k in range(kept)]
    delta = torch.full((1, frames), 1e-9)
    delta[0, spikes] = 1.0
    model.mix = lambda anchors, state=None: (anchors, delta, None)
    out = model(torch.randn(1, frames, PER_FRAME, DIM))
    assert out.aux["kept_frames"][0].nonzero().squeeze(1).tolist() == spikes
    assert out.tokens.shape[1] == model.num_output_tokens(frames, PER_FRAME) == kept * 4


def test_taa_refuses_non_monotonic_timestamps():
    model = make()
    tokens = torch.randn(1, 4, PER_FRAME, DIM)
    with pytest.raises(ValueError, match="timestamps must not decrease"):
        model(tokens, torch.tensor([[0.0, 1.0, 3.0, 2.0]]))
    out = model(tokens, torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    valid_times = out.timestamps[out.mask]
    assert (valid_times[1:] >= valid_times[:-1]).all()
