"""`uniform`: evenly spaced frames, 2x2 blocks averaged, counts the budget solver can plan, padding never kept."""

from __future__ import annotations

import pytest
import torch

from vtc.budget import configure
from vtc.compressors import create_compressor
from vtc.compressors.ops import evenly_spaced

DIM = 4


def test_evenly_spaced_frames_include_both_ends() -> None:
    assert evenly_spaced(3, 7).tolist() == [0, 3, 6]
    assert evenly_spaced(4, 10).tolist() == [0, 3, 6, 9]
    assert evenly_spaced(3, 8).tolist() == [0, 3, 7]
    assert evenly_spaced(1, 5).tolist() == [0]
    assert evenly_spaced(9, 5).tolist() == [0, 1, 2, 3, 4]


def test_keeps_evenly_spaced_frames_and_averages_2x2_blocks() -> None:
    tokens = torch.randn(1, 7, 16, DIM)  # 4x4 grids
    timestamps = torch.arange(7.0).view(1, 7) * 0.5
    out = create_compressor("uniform", dim=DIM, num_frames=3, size=2)(tokens, timestamps)
    assert out.tokens.shape == (1, 12, DIM) and out.mask.all()
    assert out.frame_index[0].tolist() == [0] * 4 + [3] * 4 + [6] * 4
    torch.testing.assert_close(out.timestamps[0], torch.tensor([0.0] * 4 + [1.5] * 4 + [3.0] * 4))
    grid = tokens[0, 3].reshape(4, 4, DIM)
    blocks = [grid[:2, :2], grid[:2, 2:], grid[2:, :2], grid[2:, 2:]]
    torch.testing.assert_close(out.tokens[0, 4:8], torch.stack([block.mean(dim=(0, 1)) for block in blocks]))


def test_a_side_above_the_grid_keeps_the_grid() -> None:
    tokens = torch.randn(2, 3, 16, DIM)
    model = create_compressor("uniform", dim=DIM, num_frames=5, size=7)
    out = model(tokens)
    assert model.num_output_tokens(3, 16) == 48
    torch.testing.assert_close(out.tokens, tokens.reshape(2, 48, DIM))


def test_non_square_grid_pools_each_side() -> None:
    tokens = torch.randn(1, 2, 8, DIM)
    out = create_compressor("uniform", dim=DIM, num_frames=2, size=(1, 2), grid=(2, 4))(tokens)
    expected = tokens[0, 1].reshape(2, 2, 2, DIM).mean(dim=(0, 2))  # columns 0-1 and 2-3 over both rows
    torch.testing.assert_close(out.tokens[0, 2:], expected)


@pytest.mark.parametrize(("frames", "per_frame"), [(16, 100), (64, 196)])
@pytest.mark.parametrize("fraction", [2, 4, 8, 16])
@pytest.mark.parametrize("base", [{}, {"size": 5}], ids=["frames-only", "pooled"])
def test_budget_solver_counts_are_the_output_counts(frames, per_frame, fraction, base) -> None:
    budget = frames * per_frame // fraction
    config, count = configure("uniform", frames, per_frame, budget, **base)
    assert budget * 0.75 < count <= budget
    if not base:
        assert count == budget  # every fraction here divides T: whole frames fit exactly
    out = create_compressor("uniform", dim=DIM, **config)(torch.randn(1, frames, per_frame, DIM))
    assert out.tokens.shape == (1, count, DIM) and out.mask.all()


def test_padded_frames_are_never_kept() -> None:
    tokens = torch.randn(2, 6, 4, DIM)
    frame_mask = torch.tensor([[True, False, True, True, False, True], [True] * 6])
    out = create_compressor("uniform", dim=DIM, num_frames=3, size=1)(tokens, frame_mask=frame_mask)
    assert out.frame_index[0].tolist() == [0, 2, 5]  # evenly spaced over the 4 valid frames 0, 2, 3, 5
    assert out.frame_index[1].tolist() == [0, 2, 5]
    torch.testing.assert_close(out.tokens[0], tokens[0, [0, 2, 5]].mean(dim=1))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="num_frames"):
        create_compressor("uniform", dim=DIM, num_frames=0)
    with pytest.raises(ValueError, match="size"):
        create_compressor("uniform", dim=DIM, size=(2, 0))
    with pytest.raises(ValueError, match="grid"):
        create_compressor("uniform", dim=DIM, size=2)(torch.randn(1, 2, 8, DIM))


@pytest.mark.parametrize(("fraction", "frames_kept"), [(4, [0, 7]), (8, [0])])
def test_tokens_without_a_grid_are_downsampled_in_time_only(fraction, frames_kept) -> None:
    tokens = torch.randn(1, 8, 32, DIM)  # 32 Q-Former queries per frame: no patch grid
    config, count = configure("uniform", 8, 32, 8 * 32 // fraction)
    assert config == {"num_frames": len(frames_kept)} and count == 8 * 32 // fraction
    out = create_compressor("uniform", dim=DIM, **config)(tokens)
    assert out.tokens.shape == (1, count, DIM)
    torch.testing.assert_close(out.tokens[0], tokens[0, frames_kept].reshape(-1, DIM))
