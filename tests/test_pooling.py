"""Pooling baselines: values against hand-computed pools, counts, grids, order and masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtc.compressors import create_compressor


def test_avgpool2d_averages_each_window_and_keeps_ragged_edges():
    tokens = torch.randn(1, 2, 9, 4)  # 3x3 grid, pool 2: windows of 4, 2, 2 and 1 cells
    out = create_compressor("avgpool2d", dim=4)(tokens)
    assert out.tokens.shape == (1, 8, 4)
    grid = tokens[0, 0].reshape(3, 3, 4)
    expected = torch.stack([grid[:2, :2].mean((0, 1)), grid[:2, 2].mean(0), grid[2, :2].mean(0), grid[2, 2]])
    torch.testing.assert_close(out.tokens[0, :4], expected)
    assert out.frame_index[0].tolist() == [0] * 4 + [1] * 4


def test_non_square_frames_need_a_grid():
    tokens = torch.randn(1, 2, 8, 4)
    with pytest.raises(ValueError, match="grid"):
        create_compressor("avgpool2d", dim=4)(tokens)
    out = create_compressor("avgpool2d", dim=4, grid=(2, 4))(tokens)
    expected = tokens[0, 0].reshape(2, 4, 4).reshape(2, 2, 2, 4).mean(dim=(0, 2))
    torch.testing.assert_close(out.tokens[0, :2], expected)
    with pytest.raises(ValueError, match="grid"):
        create_compressor("bilinear", dim=4, grid=(3, 3))(tokens)


def test_bilinear_resizes_each_frame_grid():
    tokens = torch.randn(2, 3, 16, 4)
    out = create_compressor("bilinear", dim=4, size=(2, 3))(tokens)
    assert out.tokens.shape == (2, 18, 4)
    grid = tokens[1, 2].reshape(4, 4, 4).permute(2, 0, 1)[None]
    expected = F.interpolate(grid, size=(2, 3), mode="bilinear", align_corners=False)[0].flatten(1).T
    torch.testing.assert_close(out.tokens[1, 12:], expected)


def test_avgpool3d_pools_consecutive_valid_frames_and_skips_padding():
    tokens = torch.randn(1, 5, 4, 2)
    timestamps = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    frame_mask = torch.tensor([[True, False, True, True, True]])
    model = create_compressor("avgpool3d", dim=2, temporal_pool=2, pool=2)
    out = model(tokens, timestamps, frame_mask)
    assert model.num_output_tokens(5, 4) == 3
    assert out.tokens.shape == (1, 2, 2) and out.mask.all()  # 4 valid frames: 2 windows
    torch.testing.assert_close(out.tokens[0, 0], tokens[0, [0, 2]].mean(dim=(0, 1)))
    torch.testing.assert_close(out.tokens[0, 1], tokens[0, [3, 4]].mean(dim=(0, 1)))
    assert out.frame_index[0].tolist() == [0, 3]
    torch.testing.assert_close(out.timestamps[0, :2], torch.tensor([1.0, 3.5]))


def test_avgpool3d_gradients_stay_finite_when_a_window_holds_only_padding():
    """Video 1 has one valid frame of four: its second window holds padding only (0 frames). That window is dropped,
    and its 0 / 0 mean must not leak NaN into the gradients of the batch."""
    tokens = torch.randn(2, 4, 16, 4, requires_grad=True)
    frame_mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    out = create_compressor("avgpool3d", dim=4, temporal_pool=2, pool=2)(tokens, frame_mask=frame_mask)
    assert out.mask.sum(dim=1).tolist() == [8, 4]
    out.tokens[out.mask].sum().backward()
    assert torch.isfinite(tokens.grad).all() and (tokens.grad[1, 1:] == 0).all()


def test_avgpool3d_last_window_may_be_short():
    tokens = torch.randn(1, 3, 4, 2)
    out = create_compressor("avgpool3d", dim=2, temporal_pool=2, pool=1)(tokens)
    assert out.tokens.shape == (1, 8, 2) and out.mask.all()
    torch.testing.assert_close(out.tokens[0, 4:], tokens[0, 2])


def test_frame_mean_gives_one_token_per_valid_frame():
    tokens = torch.randn(2, 4, 6, 3)
    frame_mask = torch.tensor([[True, True, False, True], [True, True, True, True]])
    out = create_compressor("frame-mean", dim=3)(tokens, frame_mask=frame_mask)
    assert out.mask.sum(dim=1).tolist() == [3, 4]
    assert out.frame_index[0].tolist() == [0, 1, 3, -1]
    torch.testing.assert_close(out.tokens[0, 2], tokens[0, 3].mean(dim=0))


@pytest.mark.parametrize("name", ["avgpool2d", "bilinear", "avgpool3d", "frame-mean"])
def test_gradients_reach_every_valid_input_token(name):
    tokens = torch.randn(1, 4, 16, 4, requires_grad=True)
    frame_mask = torch.tensor([[True, True, False, True]])
    out = create_compressor(name, dim=4)(tokens, frame_mask=frame_mask)
    out.tokens[out.mask].sum().backward()
    assert (tokens.grad[0, frame_mask[0]] != 0).all() and (tokens.grad[0, 2] == 0).all()


def test_bad_pool_sizes_raise():
    with pytest.raises(ValueError, match="positive"):
        create_compressor("avgpool2d", dim=4, pool=0)
    with pytest.raises(ValueError, match="temporal_pool"):
        create_compressor("avgpool3d", dim=4, temporal_pool=0)
