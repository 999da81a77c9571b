"""Time-axis aggregator: delta-time driven adaptive frame keeping, gradients, padding, streaming."""

from __future__ import annotations

import math

import pytest
import torch

from vtc.budget import configure
from vtc.compressors.taa import TimeAxisAggregator, crossing_frames, emit_frames

DIM, PER_FRAME = 16, 16  # 4x4 grid -> 2x2 pool -> 4 anchors per frame


def make(**kwargs) -> TimeAxisAggregator:
    torch.manual_seed(0)
    return TimeAxisAggregator(DIM, **{"d_state": 4, **kwargs})


def test_emit_frames_resets_the_running_sum_after_each_emission():
    delta = torch.tensor([[0.3, 0.3, 0.5, 0.1, 0.9], [0.1, 0.1, 0.1, 0.1, 0.1]])
    kept = emit_frames(delta, torch.tensor([0.5, 0.25]))
    assert kept.tolist() == [[False, True, True, False, True], [False, False, True, False, False]]


def test_crossing_frames_samples_where_the_cumulative_delta_crosses_the_share_midpoints():
    """By hand. Row 0, uniform: cumsum 1..8, levels 8 * (1/8, 3/8, 5/8, 7/8) = 1, 3, 5, 7 -> frames 0, 2, 4, 6.
    Row 1, one spike: cumsum (1, 51, 52, ..., 57), levels 57 * (1, 3, 5, 7) / 8 all reached at frame 1 -> frame 1
    keeps one and passes the others on: 1, 2, 3, 4."""
    delta = torch.tensor([[1.0] * 8, [1.0, 50.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    kept = crossing_frames(delta, 4)
    assert [row.nonzero().squeeze(1).tolist() for row in kept] == [[0, 2, 4, 6], [1, 2, 3, 4]]


def test_crossing_frames_pulls_levels_back_from_a_spike_on_the_last_frame():
    """cumsum (0.1, 0.2, 0.3, 5.3): all three levels are reached on frame 3 only; the last level stays there and
    the others take the frames before it: 1, 2, 3."""
    kept = crossing_frames(torch.tensor([[0.1, 0.1, 0.1, 5.0]]), 3)
    assert kept[0].nonzero().squeeze(1).tolist() == [1, 2, 3]


def test_crossing_frames_keeps_exactly_count_frames_whatever_the_delta_time():
    generator = torch.Generator().manual_seed(0)
    for frames in (1, 2, 5, 17):
        delta = torch.rand(6, frames, generator=generator) ** 8 * torch.rand(6, 1, generator=generator) * 100
        for count in range(1, frames + 1):
            assert crossing_frames(delta, count).sum(dim=1).tolist() == [count] * 6


@pytest.mark.parametrize("frames", [1, 7, 12])
@pytest.mark.parametrize("keep_ratio", [0.25, 0.5])
def test_keep_ratio_keeps_exactly_ceil_ratio_frames_on_real_inputs(frames, keep_ratio):
    model = make(keep_ratio=keep_ratio)
    out = model(torch.randn(3, frames, PER_FRAME, DIM) * torch.rand(3, frames, 1, 1) * 3)
    kept = out.aux["kept_frames"]
    assert out.aux["delta_time"].shape == kept.shape == (3, frames)
    assert (out.aux["delta_time"] > 0).all()
    counts = kept.sum(dim=1)
    assert counts.tolist() == [math.ceil(keep_ratio * frames)] * 3
    assert out.tokens.shape[1] == model.num_output_tokens(frames, PER_FRAME)
    assert torch.equal(out.num_tokens, counts * 4)
    for row in range(3):
        expected = kept[row].nonzero().squeeze(1).repeat_interleave(4)
        assert torch.equal(out.frame_index[row][out.mask[row]], expected)


def test_a_single_frame_video_with_a_threshold():
    assert emit_frames(torch.tensor([[0.2]]), torch.tensor([0.1])).tolist() == [[True]]
    out = make(keep_ratio=None, threshold=0.0)(torch.randn(2, 1, PER_FRAME, DIM))
    assert out.tokens.shape == (2, 4, DIM) and out.mask.all()


def test_streaming_emits_when_the_running_sum_reaches_the_threshold_up_to_rounding():
    """delta_t 0.5 then 0.4999999: the sum 0.9999999 misses the threshold 1 by rounding only (relative 1e-7 < 1e-6),
    so the second frame is emitted, as in batch (`emit_frames`); then 0.99 alone is short of it."""
    model = make(keep_ratio=None, threshold=1.0).eval()
    deltas = iter([0.5, 0.4999999, 0.99])
    model.mix = lambda anchors, state=None: (anchors, torch.full((1, 1), next(deltas)), None)
    state, emitted = model.init_state(1), []
    for frame in range(3):
        out, state = model.step_frame(torch.randn(1, PER_FRAME, DIM), torch.tensor([float(frame)]), state)
        emitted.append(bool(out.mask.any()))
    assert emitted == [False, True, False]


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
    with pytest.raises(NotImplementedError, match="keep_ratio needs the whole video's delta-time"):
        make().init_state(1)
    cases = {
        "got keep_ratio=None and threshold=None": {"keep_ratio": None},
        "got keep_ratio=0.5 and threshold=1.0": {"keep_ratio": 0.5, "threshold": 1.0},
        r"keep_ratio must be a finite number in \(0, 1\], got 1.5": {"keep_ratio": 1.5},
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            make(**kwargs)


def test_per_frame_mambamia_stage_makes_query_anchors_that_learn_and_stream():
    torch.manual_seed(0)
    model = TimeAxisAggregator(
        16, spatial="mambamia-per-frame", query_interval=5, threshold=0.0, keep_ratio=None, d_state=4
    )
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
    so the cumulative sum crosses the level (j - 1/2) / kept of the total on the j-th spike, one crossing each."""
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


@pytest.mark.parametrize(("spatial", "later_frames_reach_earlier"), [("mambamia", True), ("mambamia-per-frame", False)])
def test_paper_first_stage_is_spatiotemporal(spatial, later_frames_reach_earlier):
    """The seed's "spatiotemporal compression layer with gated patch aggregation": its bidirectional queries see
    every frame, so frame 5 moves frame 0's anchors (the TAA's own Mamba is causal and cannot); per frame, it cannot."""
    model = make(spatial=spatial, query_interval=5, keep_ratio=None, threshold=0.0).eval()
    tokens = torch.randn(1, 6, 20, DIM)
    changed = tokens.clone()
    changed[:, 5] += 3 * torch.randn(20, DIM)
    with torch.no_grad():
        first, second = model(tokens).tokens[:, :4], model(changed).tokens[:, :4]  # frame 0's 4 anchors
    assert (not torch.allclose(first, second, atol=1e-6)) == later_frames_reach_earlier
    assert model.supports_streaming == (not later_frames_reach_earlier)


def test_paper_config_builds_and_hits_its_budget():
    """`paper_config`: the GPA first stage (k = 10, 14 layers, ~100M parameters as MambaMia's) and half the frames;
    the budget solver's keep_ratio for 430 tokens of 128 x 100 is met exactly by a real (narrow) run."""
    config = TimeAxisAggregator.card.paper_config
    assert config["spatial"] == "mambamia"
    with torch.device("meta"):
        paper = TimeAxisAggregator(**config)
    assert 95e6 < sum(p.numel() for p in paper.parameters()) < 115e6
    assert paper.num_output_tokens(128, 100) == 64 * 10 and not paper.supports_streaming
    chosen, count = configure("taa", 128, 100, 430, **{k: v for k, v in config.items() if k != "dim"})
    assert count == 430 == math.ceil(chosen["keep_ratio"] * 128) * 10
    torch.manual_seed(0)
    small = TimeAxisAggregator(**{**config, **chosen, "dim": DIM, "spatial_layers": 1, "d_state": 4})
    out = small(torch.randn(1, 128, 100, DIM))
    assert out.tokens.shape == (1, 430, DIM) and out.aux["kept_frames"].sum() == 43
    out.tokens.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in small.parameters())
    with pytest.raises(NotImplementedError, match="spatial='mambamia' mixes all frames both ways"):
        make(spatial="mambamia", keep_ratio=None, threshold=1.0).init_state(1)
