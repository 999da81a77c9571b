"""TokenLearner: maps normalised over space, the [B, H, W, C] layout kept, counts, order, masks, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtc.compressors import create_compressor


def learner(version="1.1", **kwargs):
    torch.manual_seed(0)
    return create_compressor("tokenlearner", dim=16, num_tokens=4, version=version, bottleneck=8, **kwargs).eval()


def test_v11_maps_are_a_softmax_over_space_not_channels():
    model = learner()
    frames = torch.randn(5, 12, 16)
    maps = model.learner.maps(frames)
    assert maps.shape == (5, 4, 12)
    torch.testing.assert_close(maps.sum(dim=-1), torch.ones(5, 4))
    # A frame whose tokens are all the same vector: every learned token is exactly that vector (a convex
    # combination over space); a port normalising over channels would scale it instead.
    constant = torch.randn(1, 1, 1, 16).expand(2, 3, 12, 16)
    out = model(constant)
    torch.testing.assert_close(out.tokens, constant[:, :, :4].reshape(2, 12, 16))


def test_v10_layout_matches_an_explicit_permuted_convolution_on_a_non_square_grid():
    model = learner("1.0", grid=(2, 6))
    tokens = torch.randn(3, 2, 12, 16)
    out = model(tokens)
    grid = F.layer_norm(tokens.reshape(6, 2, 6, 16), (16,), model.learner.norm.weight, model.learner.norm.bias)
    maps = grid.permute(0, 3, 1, 2)
    for index, conv in enumerate(c for c in model.learner.convs if isinstance(c, torch.nn.Conv2d)):
        maps = F.conv2d(maps if index == 0 else F.gelu(maps), conv.weight, padding=1)
    weights = maps.sigmoid().reshape(6, 4, 12)
    expected = torch.einsum("fsn,fnd->fsd", weights, tokens.reshape(6, 12, 16)) / 12
    torch.testing.assert_close(out.tokens, expected.reshape(3, 8, 16))


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_each_frame_is_learned_independently(version):
    model = learner(version)
    tokens = torch.randn(2, 3, 16, 16)
    batched = model(tokens).tokens.reshape(2, 3, 4, 16)
    for video in range(2):
        for frame in range(3):
            alone = model(tokens[video : video + 1, frame : frame + 1]).tokens[0]
            torch.testing.assert_close(batched[video, frame], alone)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_counts_order_masks_and_gradients(version):
    model = learner(version).train()
    tokens = torch.randn(2, 3, 16, 16, requires_grad=True)
    frame_mask = torch.tensor([[True, False, True], [True, True, True]])
    out = model(tokens, frame_mask=frame_mask)
    assert model.num_output_tokens(3, 16) == 12 and out.tokens.shape == (2, 12, 16)
    assert out.mask.sum(dim=1).tolist() == [8, 12]
    assert out.frame_index[0, :8].tolist() == [0] * 4 + [2] * 4
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    assert tokens.grad[0, 1].abs().sum() == 0 and tokens.grad[0, 0].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_default_is_v11_with_8_tokens_and_bad_configs_raise():
    model = create_compressor("tokenlearner", dim=16)
    assert model.config["version"] == "1.1" and model.num_output_tokens(5, 49) == 40
    with pytest.raises(ValueError, match="version"):
        create_compressor("tokenlearner", dim=16, version="2.0")
    with pytest.raises(ValueError, match="square"):
        learner("1.0")(torch.randn(1, 2, 12, 16))
