"""Perceiver resamplers: per-frame (2D) and clip-level (3D) queries, timestamps, temporal encoding, masks."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor


def resampler(name, **kwargs):
    torch.manual_seed(0)
    return create_compressor(name, **{"dim": 16, "num_queries": 3, "depth": 2, "num_heads": 4, **kwargs}).eval()


def test_resampler2d_gives_num_queries_per_valid_frame_independently():
    model = resampler("resampler2d")
    tokens = torch.randn(2, 3, 5, 16)
    frame_mask = torch.tensor([[False, True, True], [True, True, True]])
    out = model(tokens, frame_mask=frame_mask)
    assert model.num_output_tokens(3, 5) == 9 and out.tokens.shape == (2, 9, 16)
    assert out.mask.sum(dim=1).tolist() == [6, 9]
    assert out.frame_index[0].tolist() == [1, 1, 1, 2, 2, 2, -1, -1, -1]
    torch.testing.assert_close(out.tokens[0, 3:6], model(tokens[0:1, 2:3]).tokens[0])


def test_resampler3d_outputs_num_queries_sorted_by_attention_weighted_time():
    model = resampler("resampler3d", num_queries=6)
    tokens = torch.randn(2, 4, 5, 16)
    timestamps = torch.tensor([[0.0, 1.0, 2.0, 1000.0], [5.0, 6.0, 7.0, 8.0]])
    frame_mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    out = model(tokens, timestamps, frame_mask)
    assert model.num_output_tokens(4, 5) == 6 and out.tokens.shape == (2, 6, 16)
    assert out.mask.all() and (out.frame_index == -1).all()
    assert (out.timestamps.diff(dim=1) >= 0).all()
    assert (out.timestamps[0] >= 0).all() and (out.timestamps[0] <= 2).all()
    assert (out.timestamps[1] >= 5).all() and (out.timestamps[1] <= 8).all()
    assert out.timestamps[0].max() > out.timestamps[0].min()


def test_resampler3d_single_valid_frame_gives_its_time():
    model = resampler("resampler3d")
    out = model(torch.randn(1, 3, 5, 16), torch.tensor([[1.0, 2.5, 4.0]]), torch.tensor([[False, True, False]]))
    torch.testing.assert_close(out.timestamps, torch.full((1, 3), 2.5))


def test_resampler3d_sees_frame_order_through_its_temporal_encoding():
    model = resampler("resampler3d")
    tokens = torch.randn(1, 3, 5, 16)
    swapped = tokens[:, [1, 0, 2]]
    assert not torch.allclose(model(tokens).tokens, model(swapped).tokens, atol=1e-4)


@pytest.mark.parametrize("name", ["resampler2d", "resampler3d"])
def test_gradients_reach_all_parameters(name):
    model = resampler(name).train()
    out = model(torch.randn(2, 2, 5, 16), frame_mask=torch.tensor([[True, False], [True, True]]))
    (out.tokens[out.mask] * torch.randn_like(out.tokens[out.mask])).sum().backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="divisible"):
        resampler("resampler2d", num_heads=3)
    with pytest.raises(ValueError, match="num_queries"):
        resampler("resampler3d", num_queries=0)
