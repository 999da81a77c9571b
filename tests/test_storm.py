"""STORM temporal encoder: bidirectional Mamba over all tokens, test-time sampling, temporal and spatial pools."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtc.compressors.storm import STORM

DIM = 8


def make(**kwargs) -> STORM:
    torch.manual_seed(0)
    return STORM(DIM, **{"d_state": 4, **kwargs})


def identity_mixing(model: STORM) -> STORM:
    """Zero every out_proj, so each residual block passes its input through and only the pools remain."""
    for layer in model.layers:
        torch.nn.init.zeros_(layer.mixer.out_proj.weight)
    return model


@pytest.mark.parametrize("frames", [1, 4, 10])
def test_pools_match_hand_computed_averages(frames):
    model = identity_mixing(make(temporal_pool=4, spatial_pool=2))
    tokens = torch.randn(2, frames, 16, DIM)
    times = torch.rand(2, frames).cumsum(dim=1)
    out = model(tokens, times)
    groups = -(-frames // 4)
    assert out.tokens.shape == (2, groups * 4, DIM) == (2, model.num_output_tokens(frames, 16), DIM)
    for group in range(groups):
        chunk = tokens[:, 4 * group : 4 * group + 4].mean(dim=1).view(2, 4, 4, DIM).permute(0, 3, 1, 2)
        expected = F.avg_pool2d(chunk, 2).flatten(2).transpose(1, 2)
        torch.testing.assert_close(out.tokens[:, 4 * group : 4 * group + 4], expected)
        torch.testing.assert_close(out.timestamps[:, 4 * group], times[:, 4 * group : 4 * group + 4].mean(dim=1))
        assert (out.frame_index[:, 4 * group : 4 * group + 4] == 4 * group).all()


def test_test_time_stride_samples_frames_in_eval_only():
    model = identity_mixing(make(temporal_pool=2, test_time_stride=3))
    tokens = torch.randn(1, 10, 16, DIM)
    assert model(tokens).tokens.shape[1] == model.num_output_tokens(10, 16) == 5 * 4
    model.eval()
    out = model(tokens)
    assert out.tokens.shape[1] == model.num_output_tokens(10, 16) == 2 * 4  # frames 0, 3, 6, 9 -> 2 groups
    assert out.frame_index[0, ::4].tolist() == [0, 6]
    expected = F.avg_pool2d(tokens[0, [0, 3]].mean(0).view(4, 4, DIM).permute(2, 0, 1), 2).flatten(1).T
    torch.testing.assert_close(out.tokens[0, :4], expected)


@pytest.mark.parametrize(
    ("place", "dropped_frames_reach_kept_ones"), [("after_encoder", True), ("before_encoder", False)]
)
def test_test_time_sampling_after_the_encoder_lets_dropped_frames_enrich_the_kept_ones(
    place, dropped_frames_reach_kept_ones
):
    """The seed's "enriched encoding ... enables ... test-time sampling": after the encoder, frame 1 (dropped with
    stride 2) still moves the kept frames' tokens; sampling before the encoder never lets it in."""
    model = make(temporal_pool=1, test_time_stride=2, test_time_sampling=place).eval()
    tokens = torch.randn(1, 5, 16, DIM)
    changed = tokens.clone()
    changed[:, 1] += 3 * torch.randn(16, DIM)
    with torch.no_grad():
        first, second = model(tokens), model(changed)
    assert first.tokens.shape[1] == model.num_output_tokens(5, 16) == 3 * 4  # frames 0, 2, 4 either way
    assert first.frame_index[0, ::4].tolist() == [0, 2, 4]
    assert (not torch.allclose(first.tokens, second.tokens)) == dropped_frames_reach_kept_ones


def test_sampling_after_the_encoder_pools_the_kept_frames_of_the_full_encoding():
    """By hand: the output is the encoder run on all 6 frames, frames 0 and 3 taken, each 2x2-pooled."""
    model = make(temporal_pool=1, test_time_stride=3).eval()
    tokens = torch.randn(2, 6, 16, DIM)
    with torch.no_grad():
        out = model(tokens).tokens
        kept = model.encode(tokens)[:, [0, 3]].reshape(2 * 2, 4, 4, DIM).permute(0, 3, 1, 2)
    expected = F.avg_pool2d(kept, 2).flatten(2).transpose(1, 2).reshape(2, 2 * 4, DIM)
    torch.testing.assert_close(out, expected)


def test_mamba_mixes_in_both_directions_over_all_tokens():
    model = make(temporal_pool=1)
    tokens = torch.randn(1, 3, 16, DIM)
    changed = tokens.clone()
    changed[:, 2, -1] += torch.randn(DIM)
    first, second = model(tokens).tokens, model(changed).tokens
    assert not torch.allclose(first[:, :4], second[:, :4])  # the first frame sees the last frame's last patch


def test_padding_never_leaks_and_every_parameter_gets_a_gradient():
    model = make(num_layers=2, temporal_pool=2)
    tokens = torch.randn(2, 5, 16, DIM)
    frame_mask = torch.tensor([[True, False, True, True, True], [True, True, True, False, False]])
    out = model(tokens, frame_mask=frame_mask)
    changed = tokens.clone()
    changed[~frame_mask] = 40.0
    torch.testing.assert_close(model(changed, frame_mask=frame_mask).tokens, out.tokens)
    assert out.frame_index[0, ::4].tolist() == [0, 3] and out.frame_index[1][out.mask[1]][::4].tolist() == [0, 2]
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_non_square_grid_and_bad_options():
    model = make(grid=(2, 6), spatial_pool=2, temporal_pool=3)
    assert model(torch.randn(1, 4, 12, DIM)).tokens.shape == (1, 2 * 3, DIM)
    with pytest.raises(ValueError, match="temporal_pool must be a positive int, got 0"):
        make(temporal_pool=0)
    with pytest.raises(ValueError, match="test_time_sampling must be one of 'after_encoder', 'before_encoder'"):
        make(test_time_sampling="during")
    with pytest.raises(ValueError, match="N=12 tokens per frame is not a square grid"):
        make()(torch.randn(1, 2, 12, DIM))  # 12 patches are not a square grid
