"""`divprune`: greedy max-min cosine diversity over the whole video, in time order, exact budgets, never padding."""

from __future__ import annotations

import math

import pytest
import torch

from vtc import create_compressor
from vtc.compressors import divprune


def directions(degrees: list[float], dim: int = 4) -> torch.Tensor:
    """`[len, dim]` unit vectors at the given angles in the first two channels."""
    radians = torch.tensor(degrees) * math.pi / 180
    out = torch.zeros(len(degrees), dim)
    out[:, 0], out[:, 1] = radians.cos(), radians.sin()
    return out


def kept_angles(degrees: list[float], keep: int) -> list[float]:
    tokens = directions(degrees).view(1, 1, len(degrees), 4)
    out = create_compressor("divprune", dim=4, keep_tokens=keep)(tokens)
    angles = torch.atan2(out.tokens[0, :, 1], out.tokens[0, :, 0]) * 180 / math.pi
    return [round(float(angle) % 360) for angle in angles]


def test_first_token_is_the_one_farthest_from_its_nearest_neighbour() -> None:
    # nearest-neighbour cosine distances: 0 and 10 deg are 0.015 apart, 90 is 0.83 from 10, 180 is 1.0 from 90
    assert kept_angles([0, 10, 90, 180], keep=1) == [180]


def test_greedy_picks_the_farthest_apart_tokens_and_drops_the_near_duplicate() -> None:
    # after 180: 0 (distance 2); then 90 (min distance 1) beats 10 (min distance 0.015 to 0)
    assert kept_angles([0, 10, 90, 180], keep=3) == [0, 90, 180]


def test_copies_are_kept_only_once_while_distinct_tokens_remain() -> None:
    angles = [0, 0, 0, 0, 120, 240, 0]
    assert sorted(kept_angles(angles, keep=3)) == [0, 120, 240]


def test_output_is_in_time_order_with_frames_and_timestamps() -> None:
    tokens = torch.randn(2, 5, 6, 8, generator=torch.Generator().manual_seed(0))
    timestamps = torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    out = create_compressor("divprune", dim=8, keep_tokens=9)(tokens, timestamps)
    for row in range(2):
        flat = tokens[row].reshape(30, 8)
        positions = [int((flat == token).all(dim=1).nonzero()[0]) for token in out.tokens[row]]
        assert positions == sorted(positions) and len(set(positions)) == 9
        assert out.frame_index[row].tolist() == [position // 6 for position in positions]
        assert torch.equal(out.timestamps[row], timestamps[row, out.frame_index[row]])


def test_padded_frames_are_never_selected() -> None:
    tokens = torch.randn(1, 4, 5, 8, generator=torch.Generator().manual_seed(1))
    tokens[0, 1] *= 100  # padded frames hold the most distinct tokens
    frame_mask = torch.tensor([[True, False, True, False]])
    model = create_compressor("divprune", dim=8, keep_tokens=6)
    out = model(tokens, frame_mask=frame_mask)
    assert set(out.frame_index[0].tolist()) <= {0, 2}
    everything = create_compressor("divprune", dim=8, keep_tokens=20)(tokens, frame_mask=frame_mask)
    assert everything.num_tokens.tolist() == [10]  # all valid tokens, no more
    assert (everything.frame_index[0, 10:] == -1).all()


def test_the_all_pairs_matrix_and_the_recomputed_rows_pick_the_same_tokens(monkeypatch) -> None:
    """The matrix is kept only while it fits `FULL_MATRIX_BYTES`; past it every step recomputes its row: same picks,
    padded frames and several row blocks included."""
    tokens = torch.randn(2, 6, 9, 8, generator=torch.Generator().manual_seed(2))
    frame_mask = torch.tensor([[True] * 6, [True, True, False, True, False, False]])
    monkeypatch.setattr(divprune, "ROWS_PER_CHUNK", 7)
    picks = []
    for matrix_bytes in (divprune.FULL_MATRIX_BYTES, 0):
        monkeypatch.setattr(divprune, "FULL_MATRIX_BYTES", matrix_bytes)
        valid = frame_mask.repeat_interleave(9, dim=1)
        picks.append(divprune.max_min_diverse(tokens.flatten(1, 2), 20, valid)[0])
    assert torch.equal(*picks)


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_keep_tokens_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="keep_tokens"):
        create_compressor("divprune", dim=8, keep_tokens=value)
