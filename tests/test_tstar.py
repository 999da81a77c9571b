"""TSTAR / MambaMia: query interleaving, gated aggregation, frame sampling, block variants, streaming."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.tstar import BLOCKS, TSTAR, GatedAggregation, query_layout

DIM = 16


def make(**kwargs) -> TSTAR:
    torch.manual_seed(0)
    return TSTAR(DIM, **{"query_interval": 5, "num_layers": 1, "num_heads": 2, "d_state": 4, **kwargs})


def test_paper_token_counts():
    model = TSTAR(DIM)
    assert model.num_output_tokens(128, 100) == 430
    assert model.num_output_tokens(256, 100) == 860


def test_query_layout_puts_a_query_after_every_k_patches_and_a_short_last_group():
    order, queries, groups = query_layout(12, 5)
    assert order.tolist() == [0, 1, 2, 3, 4, 12, 5, 6, 7, 8, 9, 13, 10, 11, 14]
    assert queries.tolist() == [5, 11, 14]
    assert groups.tolist() == [[0, 1, 2, 3, 4], [6, 7, 8, 9, 10], [12, 13, -1, -1, -1]]


def test_each_query_sees_its_own_patches_and_earlier_ones_only():
    """Placement in the model itself, not only in `query_layout`: with a causal block, N = 12 and k = 5, the queries
    sit after patches 0-4, 5-9 and 10-11. Changing patch 4 moves query 0 on; changing patch 5 leaves query 0 alone
    and moves queries 1 and 2; changing patch 11 moves query 2 only."""
    model = make(block="mamba", per_frame=True, frame_ratio=1.0).eval()
    tokens = torch.randn(1, 1, 12, DIM)
    with torch.no_grad():
        reference = model(tokens).tokens[0]
        for patch, moved in [(4, [True, True, True]), (5, [False, True, True]), (11, [False, False, True])]:
            changed = tokens.clone()
            changed[0, 0, patch] += 3.0
            queries = model(changed).tokens[0]
            assert [not torch.allclose(queries[q], reference[q], atol=1e-6) for q in range(3)] == moved, patch


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("per_frame", [False, True])
def test_shapes_time_order_and_frame_sampling(block, per_frame):
    model = make(block=block, per_frame=per_frame)
    out = model(torch.randn(2, 7, 12, DIM))
    assert out.tokens.shape == (2, 3 * 3, DIM) == (2, model.num_output_tokens(7, 12), DIM)
    assert torch.equal(out.frame_index, torch.tensor([0, 3, 6]).repeat_interleave(3).expand(2, -1))
    assert out.mask.all()


@pytest.mark.parametrize("block", BLOCKS)
def test_every_parameter_gets_a_gradient_and_padding_never_leaks(block):
    model = make(block=block)
    tokens = torch.randn(2, 5, 12, DIM)
    frame_mask = torch.tensor([[True, False, True, True, True], [True, True, True, True, False]])
    out = model(tokens, frame_mask=frame_mask)
    (out.tokens * torch.randn_like(out.tokens)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, f"{name} gets no gradient"
    changed = tokens.clone()
    changed[0, 1], changed[1, 4] = 50.0, -50.0
    torch.testing.assert_close(model(changed, frame_mask=frame_mask).tokens, out.tokens)
    assert out.frame_index[0].tolist() == [0] * 3 + [4] * 3  # valid frames 0, 2, 3, 4: the 1st and 4th are kept
    assert out.frame_index[1].tolist() == [0] * 3 + [3] * 3


def test_causal_blocks_ignore_the_future_bidirectional_ones_do_not():
    tokens = torch.randn(1, 3, 10, DIM)
    future = tokens.clone()
    future[:, 2] += torch.randn(10, DIM)
    for block, causal in [("mamba", True), ("transformer", True), ("mambamia", False), ("bitransformer", False)]:
        model = make(block=block, frame_ratio=1.0)
        first, second = model(tokens).tokens[:, :2], model(future).tokens[:, :2]
        assert torch.allclose(first, second, atol=1e-6) == causal, block


def test_per_frame_compresses_frames_independently():
    model = make(per_frame=True, frame_ratio=1.0)
    tokens = torch.randn(1, 3, 10, DIM)
    changed = tokens.clone()
    changed[:, 0] += torch.randn(10, DIM)
    torch.testing.assert_close(model(changed).tokens[:, 2:], model(tokens).tokens[:, 2:])


def test_gated_aggregation_starts_near_half_query_half_patch_mean_and_ignores_missing_patches():
    torch.manual_seed(0)
    aggregation = GatedAggregation(DIM, query_interval=4)
    queries, patches = torch.randn(3, 2, DIM), torch.randn(3, 2, 4, DIM)
    valid = torch.tensor([[True] * 4, [True, True, False, False]])
    out = aggregation(queries, patches, valid)
    expected = torch.stack([patches[:, 0].mean(1), patches[:, 1, :2].mean(1)], dim=1)
    torch.testing.assert_close(out, 0.5 * queries + 0.5 * expected, atol=2e-2, rtol=0)
    patches[:, 1, 2:] = 100.0
    torch.testing.assert_close(aggregation(queries, patches, valid), out)


@pytest.mark.parametrize("kwargs", [{"block": "mamba", "num_layers": 2}, {"block": "mambamia", "per_frame": True}])
def test_streaming_equals_batch_with_constant_memory(kwargs):
    model = make(frame_ratio=0.5, **kwargs).eval()
    tokens, times = torch.randn(2, 6, 12, DIM), torch.arange(6.0).expand(2, -1)
    batch = model(tokens, times)
    state = model.init_state(2)
    pieces, sizes = [], []
    for frame in range(6):
        out, state = model.step_frame(tokens[:, frame], times[:, frame], state)
        pieces.append(out)
        sizes.append(sum(s.conv.numel() + s.ssm.numel() for s in state["layers"] or []))
    torch.testing.assert_close(torch.cat([p.tokens for p in pieces], 1), batch.tokens, atol=1e-5, rtol=0)
    assert torch.equal(torch.cat([p.frame_index for p in pieces], 1), batch.frame_index)
    assert torch.equal(torch.cat([p.timestamps for p in pieces], 1), batch.timestamps)
    assert len(set(sizes)) == 1


def test_bidirectional_blocks_refuse_to_stream():
    with pytest.raises(NotImplementedError, match="block='mambamia' looks at future frames"):
        make(block="mambamia").init_state(1)


def test_bad_options_raise_value_error():
    cases = {
        "block must be one of 'mambamia'.*got 'gru'": {"block": "gru"},
        r"frame_ratio must be a finite number in \(0, 1\], got 0.0": {"frame_ratio": 0.0},
        "query_interval must be a positive int, got 0": {"query_interval": 0},
    }
    for message, kwargs in cases.items():
        with pytest.raises(ValueError, match=message):
            make(**kwargs)


def test_mambamia_preset_and_paper_size():
    model = create_compressor("mambamia", dim=DIM, num_layers=1, d_state=4)
    assert isinstance(model, TSTAR) and model.block == "mambamia" and model.query_interval == 10
    with torch.device("meta"):
        paper = create_compressor("mambamia", **TSTAR.card.paper_config)
    count = sum(parameter.numel() for parameter in paper.parameters())
    assert 90e6 < count < 110e6, f"MambaMia at d_model 1024 has {count / 1e6:.1f}M parameters, paper ~100M"
