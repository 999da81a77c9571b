"""`dycoke`: DyCoke's window rule, duplicates of the reference frame dropped first, exact budgets, no padding."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.dycoke import reference_frames

DIM, PER_FRAME = 8, 9


def kept_per_frame(tokens: torch.Tensor, keep_tokens: int) -> list[int]:
    """How many tokens of each frame `dycoke` keeps from one video `[1, T, N, D]`."""
    out = create_compressor("dycoke", dim=DIM, keep_tokens=keep_tokens)(tokens)
    return torch.bincount(out.frame_index[0], minlength=tokens.shape[1]).tolist()


def test_window_rule_references() -> None:
    reference, level = reference_frames(17)
    # in each window of four: frames 1 and 3 refer to the frame before, frame 2 to the window's first (its anchor)
    assert reference[:9] == [-1, 0, 0, 2, 0, 4, 4, 6, 0]
    # the anchors 0, 4, 8, 12 form windows of their own one level up, and 16 starts the next level's window
    assert [reference[frame] for frame in (4, 8, 12, 16)] == [0, 0, 8, 0]
    assert level[:5] == [3, 0, 0, 0, 1] and level[16] == 2


def test_duplicates_of_the_previous_frame_are_dropped_first() -> None:
    tokens = torch.randn(1, 4, PER_FRAME, DIM)
    tokens[0, 1] = tokens[0, 0]
    assert kept_per_frame(tokens, 3 * PER_FRAME) == [PER_FRAME, 0, PER_FRAME, PER_FRAME]


def test_most_similar_positions_go_first_within_a_frame() -> None:
    tokens = torch.randn(1, 4, PER_FRAME, DIM)
    tokens[0, 3, [2, 5, 7]] = tokens[0, 2, [2, 5, 7]]  # frame 3 repeats three positions of frame 2
    out = create_compressor("dycoke", dim=DIM, keep_tokens=4 * PER_FRAME - 3)(tokens)
    kept = out.tokens[0, out.frame_index[0] == 3]
    torch.testing.assert_close(kept, tokens[0, 3, [0, 1, 3, 4, 6, 8]])


def test_frame_two_is_compared_with_the_anchor_not_the_frame_before() -> None:
    tokens = torch.randn(1, 4, PER_FRAME, DIM)
    tokens[0, 2] = tokens[0, 1]
    tokens[0, 3] = tokens[0, 1]  # a duplicate of frame 2, the frame before it
    assert kept_per_frame(tokens, 3 * PER_FRAME) == [PER_FRAME, PER_FRAME, PER_FRAME, 0]
    tokens[0, 2] = tokens[0, 0]  # a duplicate of the anchor
    assert kept_per_frame(tokens, 3 * PER_FRAME)[2] == 0


def test_anchors_go_last_and_the_first_frame_keeps_evenly_spaced_positions() -> None:
    tokens = torch.randn(1, 8, PER_FRAME, DIM)
    assert kept_per_frame(tokens, 2 * PER_FRAME) == [PER_FRAME, 0, 0, 0, PER_FRAME, 0, 0, 0]
    assert kept_per_frame(tokens, PER_FRAME) == [PER_FRAME] + [0] * 7
    out = create_compressor("dycoke", dim=DIM, keep_tokens=3)(tokens)
    torch.testing.assert_close(out.tokens[0], tokens[0, 0, [0, 4, 8]])


def test_padded_frames_are_removed_before_the_windows() -> None:
    tokens = torch.randn(1, 6, PER_FRAME, DIM)
    frame_mask = torch.tensor([[True, False, True, True, False, True]])
    model = create_compressor("dycoke", dim=DIM, keep_tokens=2 * PER_FRAME)
    out = model(tokens, frame_mask=frame_mask)
    alone = model(tokens[:, [0, 2, 3, 5]])
    assert set(out.frame_index[0].tolist()) <= {0, 2, 3, 5}
    torch.testing.assert_close(out.tokens, alone.tokens)
    assert out.frame_index[0].tolist() == torch.tensor([0, 2, 3, 5])[alone.frame_index[0]].tolist()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="keep_tokens"):
        create_compressor("dycoke", dim=DIM, keep_tokens=0)
    with pytest.raises(TypeError, match="keep_tokens"):
        create_compressor("dycoke", dim=DIM, keep_tokens=0.5)
