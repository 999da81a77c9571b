"""STAC: slot/frame Top-K over Mamba-along-time saliency, differentiable selection, learnability."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.stac import STAC

DIM, SLOTS = 16, 8


def make(**kwargs) -> STAC:
    torch.manual_seed(0)
    return STAC(DIM, **{"keep": 3, "num_heads": 2, "d_state": 4, **kwargs})


@pytest.mark.parametrize("frames", [1, 5, 40])
def test_slot_axis_keeps_the_same_slots_in_every_frame_frame_major(frames):
    model = make()
    tokens = torch.randn(2, frames, SLOTS, DIM)
    out = model(tokens)
    assert out.tokens.shape == (2, frames * 3, DIM) == (2, model.num_output_tokens(frames, SLOTS), DIM)
    kept = out.aux["kept_slots"]
    assert (kept[:, 1:] > kept[:, :-1]).all()
    expected_frames = torch.arange(frames).repeat_interleave(3)
    assert torch.equal(out.frame_index, expected_frames.expand(2, -1))
    for row in range(2):
        gathered = tokens[row][:, kept[row]]  # [T, keep, D]
        weights = SLOTS * torch.softmax(out.aux["slot_scores"][row], dim=0)[kept[row]]
        torch.testing.assert_close(out.tokens[row], (gathered * weights.view(1, -1, 1)).reshape(-1, DIM))


def test_frame_axis_keeps_whole_top_frames_in_time_order():
    model = make(axis="frames", selection="hard")
    tokens = torch.randn(2, 6, SLOTS, DIM)
    out = model(tokens)
    assert out.tokens.shape == (2, 3 * SLOTS, DIM) == (2, model.num_output_tokens(6, SLOTS), DIM)
    for row in range(2):
        frames = out.frame_index[row].view(3, SLOTS)
        assert (frames == frames[:, :1]).all() and (frames[1:, 0] > frames[:-1, 0]).all()
        top = out.aux["frame_scores"][row].topk(3).indices.sort().values
        assert torch.equal(frames[:, 0], top)
        torch.testing.assert_close(out.tokens[row], tokens[row, top].reshape(-1, DIM))


def test_straight_through_forward_equals_hard_and_mixed_output_differs_from_original():
    tokens = torch.randn(2, 4, SLOTS, DIM)
    hard = make(selection="hard")(tokens).tokens
    torch.testing.assert_close(make(selection="straight_through")(tokens).tokens, hard)
    assert not torch.allclose(make(selection="hard", output="mixed")(tokens).tokens, hard)


@pytest.mark.parametrize("axis", ["slots", "frames"])
@pytest.mark.parametrize("output", ["original", "mixed"])
def test_padded_frames_never_leak(axis, output):
    model = make(axis=axis, output=output)
    tokens = torch.randn(2, 5, SLOTS, DIM)
    frame_mask = torch.tensor([[True, False, True, True, False], [True, True, True, True, True]])
    first = model(tokens, frame_mask=frame_mask)
    tokens[~frame_mask] = 100.0
    second = model(tokens, frame_mask=frame_mask)
    torch.testing.assert_close(first.tokens, second.tokens)
    assert torch.equal(first.frame_index, second.frame_index)
    assert not torch.isin(first.frame_index[0], torch.tensor([1, 4])).any()


@pytest.mark.parametrize("selection", ["scaled", "straight_through"])
@pytest.mark.parametrize("axis", ["slots", "frames"])
def test_every_parameter_learns_from_the_output_tokens(selection, axis):
    model = make(selection=selection, axis=axis, keep=2)
    out = model(torch.randn(2, 4, SLOTS, DIM))
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_hard_selection_gives_the_scorer_no_gradient_as_documented():
    model = make(selection="hard")
    tokens = torch.randn(2, 4, SLOTS, DIM, requires_grad=True)
    model(tokens).tokens.sum().backward()
    assert tokens.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in model.parameters())


def test_bad_options_raise_value_error():
    cases = {
        "selection must be one of 'scaled'.*got 'soft'": {"selection": "soft"},
        "output must be one of 'original', 'mixed', got 'both'": {"output": "both"},
        "axis must be one of 'slots', 'frames', got 'time'": {"axis": "time"},
        "keep must be a positive int, got 0": {"keep": 0},
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            make(**kwargs)


def test_paper_config_builds_through_the_registry():
    with torch.device("meta"):
        model = create_compressor("stac", **STAC.card.paper_config)
    assert model.keep == 16 and sum(p.numel() for p in model.parameters()) > 1_000_000


def synthetic_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2 of 8 slots carry `marker + value_i * signal`, the others noise; the label is `value_1 + value_2 > 0`, so a
    linear head on the mean kept token needs both informative slots."""
    frames, informative = 4, 2
    tokens = torch.randn(batch, frames, SLOTS, DIM, generator=generator)
    slots = torch.rand(batch, SLOTS, generator=generator).argsort(dim=1)[:, :informative]
    values = torch.randn(batch, informative, generator=generator)
    marker, signal = torch.zeros(DIM), torch.zeros(DIM)
    marker[0], signal[1] = 2.0, 2.0
    for row in range(batch):
        for slot, value in zip(slots[row], values[row], strict=True):
            tokens[row][:, slot] = 0.5 * tokens[row][:, slot] + marker + value * signal
    return tokens, (values.sum(dim=1) > 0).float(), slots


def test_scorer_learns_to_keep_the_informative_slots():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = STAC(DIM, keep=2, num_heads=2, d_state=4, expand=1)
    head = torch.nn.Linear(DIM, 1)
    optimiser = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(250):
        tokens, labels, _ = synthetic_batch(32, generator)
        logits = head(model(tokens).tokens.mean(dim=1)).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    tokens, _, informative = synthetic_batch(256, generator)
    with torch.no_grad():
        kept = model(tokens).aux["kept_slots"]
    rate = _hit_rate(kept, informative)
    chance = 2 / SLOTS
    assert rate >= 0.6, f"informative slots in the Top-2: {rate:.2f} of kept slots, chance {chance:.2f}"


def _hit_rate(kept: torch.Tensor, informative: torch.Tensor) -> float:
    """Fraction of kept slots that are informative."""
    hits = (kept.unsqueeze(2) == informative.unsqueeze(1)).any(dim=2)
    return hits.float().mean().item()
