"""`random`: seeded, uniform, in time order, never a padded frame."""

from __future__ import annotations

import torch

from vtc import create_compressor

FRAMES, PER_FRAME, DIM = 4, 9, 8


def numbered_tokens(batch: int = 1) -> torch.Tensor:
    """`[batch, FRAMES, PER_FRAME, DIM]` tokens whose first channel is their flat position."""
    tokens = torch.zeros(batch, FRAMES, PER_FRAME, DIM)
    tokens[..., 0] = torch.arange(FRAMES * PER_FRAME, dtype=torch.float32).view(FRAMES, PER_FRAME)
    return tokens


def kept_positions(seed: int, keep_tokens: int = 6, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    out = create_compressor("random", dim=DIM, keep_tokens=keep_tokens, seed=seed)(numbered_tokens(), None, frame_mask)
    return out.tokens[0, out.mask[0], 0].long()


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    assert torch.equal(kept_positions(seed=3), kept_positions(seed=3))
    assert not torch.equal(kept_positions(seed=3), kept_positions(seed=4))


def test_kept_tokens_are_inputs_in_time_order_with_their_frame() -> None:
    compressor = create_compressor("random", dim=DIM, keep_tokens=6, seed=0)
    timestamps = torch.tensor([[0.0, 1.5, 3.0, 4.5]])
    out = compressor(numbered_tokens(), timestamps)
    positions = out.tokens[0, :, 0].long()
    assert len(positions.unique()) == 6
    assert torch.all(positions[1:] > positions[:-1])
    assert torch.equal(out.frame_index[0], positions // PER_FRAME)
    assert torch.equal(out.timestamps[0], timestamps[0, positions // PER_FRAME])


def test_draw_is_uniform_over_positions() -> None:
    counts = torch.zeros(FRAMES * PER_FRAME)
    draws = 400
    for seed in range(draws):
        counts[kept_positions(seed)] += 1
    expected = draws * 6 / (FRAMES * PER_FRAME)  # 66.7 per position; binomial sd ~7.5
    assert counts.min() > expected - 30 and counts.max() < expected + 30


def test_padded_frames_are_never_kept() -> None:
    frame_mask = torch.tensor([[True, False, True, False]])
    for seed in range(20):
        frames = kept_positions(seed, keep_tokens=10, frame_mask=frame_mask) // PER_FRAME
        assert set(frames.tolist()) <= {0, 2}
    assert len(kept_positions(0, keep_tokens=30, frame_mask=frame_mask)) == 2 * PER_FRAME  # all valid ones, no more


def test_a_video_with_fewer_valid_tokens_is_padded_with_frame_index_minus_one() -> None:
    frame_mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
    compressor = create_compressor("random", dim=DIM, keep_tokens=20, seed=0)
    out = compressor(numbered_tokens(batch=2), None, frame_mask)
    assert out.tokens.shape == (2, 20, DIM) and out.mask.sum(dim=1).tolist() == [20, PER_FRAME]
    assert (out.frame_index[1, PER_FRAME:] == -1).all() and (out.frame_index[1, :PER_FRAME] == 0).all()
    assert compressor.num_output_tokens(2, 3) == 6  # fewer tokens than keep_tokens: all of them
