"""C-Abstractor: pooled grid sizes (2x2, 10x1, explicit), per-frame independence, masks, gradients."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor


def abstractor(**kwargs):
    torch.manual_seed(0)
    return create_compressor("cabstractor", **{"dim": 8, "hidden_dim": 12, "depth": 2, **kwargs}).eval()


@pytest.mark.parametrize(
    ("kwargs", "per_frame", "expected"),
    [
        ({}, 16, 4),  # 4x4 grid, 2x2 kernel -> 2x2
        ({}, 25, 9),  # 5x5 grid -> ceil -> 3x3
        ({"kernel": (10, 1), "grid": (10, 3)}, 30, 3),  # MambaMia's 10x1 variant
        ({"grid_out": (1, 1)}, 16, 1),
    ],
)
def test_output_grid_and_token_count(kwargs, per_frame, expected):
    model = abstractor(**kwargs)
    out = model(torch.randn(2, 3, per_frame, 8))
    assert model.num_output_tokens(3, per_frame) == 3 * expected
    assert out.tokens.shape == (2, 3 * expected, 8)
    assert out.frame_index[0].tolist() == torch.arange(3).repeat_interleave(expected).tolist()


def test_frames_are_abstracted_independently_and_padding_is_dropped():
    model = abstractor()
    tokens = torch.randn(2, 3, 16, 8)
    frame_mask = torch.tensor([[True, False, True], [True, True, True]])
    out = model(tokens, frame_mask=frame_mask)
    assert out.mask.sum(dim=1).tolist() == [8, 12]
    alone = model(tokens[0:1, 2:3]).tokens[0]
    torch.testing.assert_close(out.tokens[0, 4:8], alone)


def test_gradients_reach_all_parameters():
    model = abstractor().train()
    out = model(torch.randn(1, 2, 16, 8))
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_grid_errors_are_clear():
    with pytest.raises(ValueError, match="square"):
        abstractor()(torch.randn(1, 1, 12, 8))
    with pytest.raises(ValueError, match="cells"):
        abstractor(grid=(3, 3))(torch.randn(1, 1, 12, 8))
    with pytest.raises(ValueError, match="depth"):
        abstractor(depth=0)
