"""`visionzip`: the most attended tokens of each frame plus contextual merges, the attention input of `forward`."""

from __future__ import annotations

import pytest
import torch

from vtc import create_compressor
from vtc.budget import configure


def attention_of(tokens: torch.Tensor) -> torch.Tensor:
    """`[B, T, N]` stand-in encoder attention: the tokens' norms."""
    return tokens.norm(dim=-1)


def test_keeps_the_highest_attention_tokens_of_each_frame() -> None:
    tokens = torch.randn(1, 2, 9, 4, generator=torch.Generator().manual_seed(0))
    attention = torch.rand(1, 2, 9, generator=torch.Generator().manual_seed(1))
    out = create_compressor("visionzip", dim=4, keep_tokens=6, contextual_ratio=0.0)(tokens, attention=attention)
    for frame in range(2):
        top = attention[0, frame].topk(3).indices.sort().values
        assert torch.equal(out.tokens[0, out.frame_index[0] == frame], tokens[0, frame, top])
    assert out.aux["dominant"].all()


def test_contextual_tokens_merge_the_rest_into_strided_targets_by_similarity() -> None:
    tokens = torch.tensor([[1.0, 0.0], [5.0, 5.0], [2.0, 0.1], [0.0, 1.0], [-1.0, -1.0], [0.1, 3.0]]).view(1, 1, 6, 2)
    attention = torch.tensor([[[0.1, 0.5, 0.0, 0.0, 0.9, 0.1]]])
    out = create_compressor("visionzip", dim=2, keep_tokens=4, contextual_ratio=0.5)(tokens, attention=attention)
    # dominant: positions 1 and 4; the rest [0, 2, 3, 5] has targets 0 and 3 (stride 2); 2 joins 0, 5 joins 3
    expected = torch.tensor([[1.5, 0.05], [5.0, 5.0], [0.05, 2.0], [-1.0, -1.0]])
    torch.testing.assert_close(out.tokens[0], expected)
    assert out.aux["dominant"][0].tolist() == [False, True, False, True]


def test_budget_is_spread_evenly_over_frames() -> None:
    tokens = torch.randn(1, 4, 5, 4)
    out = create_compressor("visionzip", dim=4, keep_tokens=10)(tokens, attention=attention_of(tokens))
    assert torch.bincount(out.frame_index[0], minlength=4).tolist() == [2, 3, 2, 3]


@pytest.mark.parametrize(("frames", "per_frame"), [(16, 100), (64, 196)])
@pytest.mark.parametrize("fraction", [2, 4, 8, 16])
def test_budget_is_met_exactly(frames: int, per_frame: int, fraction: int) -> None:
    budget = frames * per_frame // fraction
    config, count = configure("visionzip", frames, per_frame, budget)
    assert count == budget
    tokens = torch.randn(1, frames, per_frame, 4)
    out = create_compressor("visionzip", dim=4, **config)(tokens, attention=attention_of(tokens))
    assert out.tokens.shape == (1, budget, 4) and out.mask.all()


def test_padded_frames_are_never_selected_and_their_share_goes_to_valid_frames() -> None:
    tokens = torch.randn(1, 4, 5, 4)
    attention = attention_of(tokens)
    attention[0, 1] = 100.0  # the most attended tokens are on a padded frame
    frame_mask = torch.tensor([[True, False, True, False]])
    out = create_compressor("visionzip", dim=4, keep_tokens=6)(tokens, frame_mask=frame_mask, attention=attention)
    assert torch.bincount(out.frame_index[0], minlength=4).tolist() == [3, 0, 3, 0]


def test_missing_attention_is_refused() -> None:
    with pytest.raises(ValueError, match=r"visionzip needs the encoder's attention: pass attention=\[B, T, N\]"):
        create_compressor("visionzip", dim=4)(torch.randn(1, 2, 9, 4))


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        (torch.ones(1, 2, 8), r"attention must be \[B, T, N\] = \(1, 2, 9\)"),
        (-torch.ones(1, 2, 9), "attention must hold finite floating-point weights >= 0"),
        (torch.full((1, 2, 9), float("nan")), "attention must hold finite"),
        (torch.ones(1, 2, 9, dtype=torch.long), "attention must hold finite floating-point"),
    ],
)
def test_bad_attention_is_refused(attention: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_compressor("visionzip", dim=4)(torch.randn(1, 2, 9, 4), attention=attention)


def test_a_compressor_that_does_not_use_attention_ignores_it() -> None:
    tokens = torch.randn(1, 2, 9, 4)
    model = create_compressor("random", dim=4, keep_tokens=5)
    assert torch.equal(model(tokens).tokens, model(tokens, attention=torch.rand(1, 2, 9)).tokens)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"keep_tokens": 0}, ValueError, "keep_tokens"),
        ({"keep_tokens": 1.5}, TypeError, "keep_tokens"),
        ({"contextual_ratio": 1.5}, ValueError, "contextual_ratio"),
        ({"contextual_ratio": "half"}, TypeError, "contextual_ratio"),
    ],
)
def test_bad_arguments_refused(kwargs: dict, error: type[Exception], name: str) -> None:
    with pytest.raises(error, match=name):
        create_compressor("visionzip", dim=4, **kwargs)
