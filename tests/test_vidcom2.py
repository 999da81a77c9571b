"""`vidcom2`: unique frames get more tokens, unique tokens are kept in a frame, budgets split exactly, no padding."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.ops import split_budget
from vtc.compressors.vidcom2 import frame_budgets

DIM, PER_FRAME = 8, 16


def test_split_budget_is_proportional_capped_and_exact() -> None:
    capacity = torch.full((4,), 16)
    # shares 8.75, 3.75, 3.75, 3.75: integer parts, then the largest remainders (ties in order)
    assert split_budget(torch.tensor([1.75, 0.75, 0.75, 0.75]), 20, capacity).tolist() == [9, 4, 4, 3]
    # 40 * 10/13 exceeds 16: clamped, and the other 24 re-split among the rest
    assert split_budget(torch.tensor([10.0, 1.0, 1.0, 1.0]), 40, capacity).tolist() == [16, 8, 8, 8]
    assert split_budget(torch.tensor([1.0, 2.0]), 100, torch.tensor([3, 50])).tolist() == [3, 50]


def test_frame_shares_follow_the_paper_formula() -> None:
    similarity = torch.zeros(1, 4, PER_FRAME)
    similarity[0, 3] = -0.5  # frame 3 is the least similar to the video: softmax at T = 0.01 gives it sigma ~ 1
    budgets = frame_budgets(similarity, 40, temperature=0.01)
    assert budgets.tolist() == [[8, 8, 8, 16]]  # shares 1 + sigma - 1/4: 0.75, 0.75, 0.75, 1.75 of 40 / 4
    assert frame_budgets(similarity, 40, temperature=1e6).tolist() == [[10, 10, 10, 10]]


def test_the_unique_frame_gets_more_tokens() -> None:
    torch.manual_seed(0)
    scene = torch.randn(PER_FRAME, DIM)
    tokens = (scene + 0.05 * torch.randn(1, 4, PER_FRAME, DIM)).clone()
    tokens[0, 2] = torch.randn(PER_FRAME, DIM)  # another scene
    out = create_compressor("vidcom2", dim=DIM, keep_tokens=24)(tokens)
    counts = torch.bincount(out.frame_index[0], minlength=4).tolist()
    assert sum(counts) == 24
    assert counts[2] > max(counts[0], counts[1], counts[3])


def test_within_a_frame_the_outlier_token_is_kept() -> None:
    tokens = torch.ones(1, 2, PER_FRAME, DIM)
    tokens[0, :, 5] = -1.0  # the one token unlike its frame and the video
    out = create_compressor("vidcom2", dim=DIM, keep_tokens=2)(tokens)
    assert out.frame_index[0].tolist() == [0, 1]
    torch.testing.assert_close(out.tokens[0], tokens[0, :, 5])


def test_padded_frames_take_no_share() -> None:
    tokens = torch.randn(1, 5, PER_FRAME, DIM)
    frame_mask = torch.tensor([[True, False, True, False, True]])
    model = create_compressor("vidcom2", dim=DIM, keep_tokens=30)
    out = model(tokens, frame_mask=frame_mask)
    alone = model(tokens[:, [0, 2, 4]])
    assert set(out.frame_index[0].tolist()) <= {0, 2, 4}
    torch.testing.assert_close(out.tokens, alone.tokens)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="keep_tokens"):
        create_compressor("vidcom2", dim=DIM, keep_tokens=-3)
    with pytest.raises(ValueError, match="temperature"):
        create_compressor("vidcom2", dim=DIM, temperature=0.0)
