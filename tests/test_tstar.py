"""TSTAR / MambaMia: query interleaving, gated aggregation and its placement, frame sampling, block variants (Mamba
V1 / V2, transformers), streaming."""

from __future__ import annotations

import pytest
import torch

from vtc.compressors import create_compressor
from vtc.compressors.blocks import BiMamba2, GatedAggregation
from vtc.compressors.tstar import BLOCKS, TSTAR, query_layout
from vtc.ssm import Mamba2

DIM = 16
VERSIONS = [{}, {"mamba_version": "v2", "head_dim": 8}]  # Mamba V1 (default) and V2 blocks


def make(**kwargs) -> TSTAR:
    torch.manual_seed(0)
    return TSTAR(DIM, **{"query_interval": 5, "num_layers": 1, "num_heads": 2, "d_state": 4, **kwargs})


def zero_mixer_outputs(model: TSTAR) -> TSTAR:
    """Zero every Mamba out_proj, so each block's mixer adds nothing to its residual."""
    for layer in model.layers:
        torch.nn.init.zeros_(layer.mixer.mixer.out_proj.weight)
    return model


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


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("per_frame", [False, True])
def test_shapes_time_order_and_frame_sampling(block, per_frame, version):
    model = make(block=block, per_frame=per_frame, **version)
    out = model(torch.randn(2, 7, 12, DIM))
    assert out.tokens.shape == (2, 3 * 3, DIM) == (2, model.num_output_tokens(7, 12), DIM)
    assert torch.equal(out.frame_index, torch.tensor([0, 3, 6]).repeat_interleave(3).expand(2, -1))
    assert out.mask.all()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("block", BLOCKS)
def test_every_parameter_gets_a_gradient_and_padding_never_leaks(block, version):
    model = make(block=block, **version)
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


@pytest.mark.parametrize("version", VERSIONS)
def test_causal_blocks_ignore_the_future_bidirectional_ones_do_not(version):
    tokens = torch.randn(1, 3, 10, DIM)
    future = tokens.clone()
    future[:, 2] += torch.randn(10, DIM)
    for block, causal in [("mamba", True), ("transformer", True), ("mambamia", False), ("bitransformer", False)]:
        model = make(block=block, frame_ratio=1.0, **version)
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


@pytest.mark.parametrize(
    "kwargs",
    [
        {"block": "mamba", "num_layers": 2},
        {"block": "mamba", "num_layers": 2, "mamba_version": "v2", "head_dim": 8},
        {"block": "mambamia", "per_frame": True},
    ],
)
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
        "mamba_version must be one of 'v1', 'v2', got 'v3'": {"mamba_version": "v3"},
        "gpa_placement must be one of 'post_mixer', 'pre_mixer', got 'inside'": {"gpa_placement": "inside"},
        r"gpa_dropout must be a finite number in \[0, 1\], got 1.5": {"gpa_dropout": 1.5},
        "d_inner=32 is not a multiple of head_dim=12": {"mamba_version": "v2", "head_dim": 12},
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


@pytest.mark.parametrize("version", VERSIONS)
def test_post_mixer_outputs_eq3_q_new_pre_mixer_keeps_the_query_on_the_residual(version):
    """With every mixer's output zeroed, by hand: post_mixer makes each query Eq. 3's (1 - g) q + g a of its own
    patches; pre_mixer aggregates only into the mixer's input, so the residual hands back the learned query itself."""
    tokens = torch.randn(1, 2, 10, DIM)
    post = zero_mixer_outputs(make(frame_ratio=1.0, **version))
    pre = zero_mixer_outputs(make(frame_ratio=1.0, gpa_placement="pre_mixer", **version))
    pre.load_state_dict(post.state_dict())  # the same weights, the placement alone differs
    with torch.no_grad():
        query = post.query.expand(1, 4, DIM)
        torch.testing.assert_close(pre(tokens).tokens, query)
        expected = post.layers[0].aggregation(
            query.view(1, 2, 2, DIM), tokens.view(1, 2, 2, 5, DIM), torch.ones(2, 5, dtype=torch.bool)
        )
        torch.testing.assert_close(post(tokens).tokens, expected.reshape(1, 4, DIM))


@pytest.mark.parametrize("version", VERSIONS)
def test_pre_and_post_mixer_differ_and_both_train(version):
    tokens = torch.randn(2, 4, 12, DIM)
    post = make(num_layers=2, **version)
    pre = make(num_layers=2, gpa_placement="pre_mixer", gpa_dropout=0.1, **version)
    pre.load_state_dict(post.state_dict())
    outputs = {}
    for name, model in (("post", post), ("pre", pre)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        losses = []
        for _ in range(3):
            out = model(tokens).tokens
            loss = (out - 1.0).square().mean()
            optimizer.zero_grad()
            loss.backward()
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), name
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], name
        outputs[name] = model.eval()(tokens).tokens.detach()
    assert outputs["post"].shape == outputs["pre"].shape == (2, 2 * 3, DIM)
    assert not torch.allclose(outputs["post"], outputs["pre"], atol=1e-3)


def test_gpa_dropout_acts_in_training_only():
    tokens = torch.randn(1, 3, 10, DIM)
    plain, dropped = make(gpa_placement="pre_mixer"), make(gpa_placement="pre_mixer", gpa_dropout=0.5)
    dropped.load_state_dict(plain.state_dict())
    torch.testing.assert_close(dropped.eval()(tokens).tokens, plain.eval()(tokens).tokens)
    dropped.train()
    torch.manual_seed(1)
    assert not torch.allclose(dropped(tokens).tokens, plain(tokens).tokens)


def test_bimamba2_is_a_forward_and_a_reversed_mamba2_sharing_the_projections():
    """BiMamba2(x) = Mamba2_f(x) + flip(Mamba2_b(flip(x))), with in_proj / out_proj (no bias) shared and each
    direction's conv1d, dt_bias, A, D and gated norm its own."""
    torch.manual_seed(0)
    mixer = BiMamba2(DIM, d_state=4, head_dim=8, chunk_size=4)
    forward, backward = (
        Mamba2(DIM, d_state=4, head_dim=8, chunk_size=4),
        Mamba2(DIM, d_state=4, head_dim=8, chunk_size=4),
    )
    backward_names = {"conv1d_b": "conv1d", "dt_bias_b": "dt_bias", "A_b_log": "A_log", "D_b": "D", "norm_b": "norm"}
    forward_state, backward_state = {}, {}
    for key, value in mixer.state_dict().items():
        head, dot, rest = key.partition(".")
        if head in backward_names:
            backward_state[backward_names[head] + dot + rest] = value
        else:
            forward_state[key] = value
            if head in ("in_proj", "out_proj"):
                backward_state[key] = value
    forward.load_state_dict(forward_state)
    backward.load_state_dict(backward_state)
    x = torch.randn(2, 11, DIM)
    torch.testing.assert_close(mixer(x), forward(x) + backward(x.flip(1)).flip(1), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="BiMamba2 sees the future"):
        mixer.forward_with_state(x, forward.init_state(2))


def test_mamba2_mambamia_paper_size_and_token_counts():
    """Table 4's V2 variant at the paper's size: exact 430 / 860 tokens, and a real (small) run gives its count."""
    with torch.device("meta"):
        paper = create_compressor("mambamia", **{**TSTAR.card.paper_config, "mamba_version": "v2"})
    count = sum(parameter.numel() for parameter in paper.parameters())
    assert 80e6 < count < 110e6, f"{count / 1e6:.1f}M parameters"
    assert paper.num_output_tokens(128, 100) == 430 and paper.num_output_tokens(256, 100) == 860
    model = create_compressor("mambamia", dim=DIM, num_layers=1, d_state=4, mamba_version="v2", head_dim=8)
    out = model(torch.randn(1, 12, 100, DIM))
    assert out.tokens.shape == (1, model.num_output_tokens(12, 100), DIM) == (1, 4 * 10, DIM)
