"""Mamba mixers: strict state-dict compatibility and numerical parity with transformers, streaming, blocks."""

from __future__ import annotations

import pytest
import torch
from transformers import Mamba2Config, MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer
from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

from vtc.ssm import BiMamba, Mamba, Mamba2, MambaBlock


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def long_input() -> torch.Tensor:
    return torch.randn(1, 8192, 16, generator=torch.Generator().manual_seed(0))


def test_mamba_matches_transformers_mixer_at_8192(long_input):
    torch.manual_seed(0)
    config = MambaConfig(hidden_size=16, state_size=4, intermediate_size=32, conv_kernel=4, use_mambapy=False)
    reference = MambaMixer(config, layer_idx=0).eval()
    with torch.no_grad():  # make the SSM non-trivial: larger dt, random D
        reference.dt_proj.bias.add_(2.0)
        reference.D.normal_()
    ours = Mamba(16, d_state=4, expand=2)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        assert _relative(ours(long_input), reference(long_input)) < 1e-4


def test_mamba2_matches_transformers_mixer_at_8192(long_input):
    torch.manual_seed(0)
    config = Mamba2Config(hidden_size=16, state_size=8, expand=2, head_dim=8, num_heads=4, n_groups=2, chunk_size=64)
    reference = Mamba2Mixer(config, layer_idx=0).eval()
    ours = Mamba2(16, d_state=8, expand=2, head_dim=8, n_groups=2, chunk_size=64)
    ours.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        assert _relative(ours(long_input), reference(long_input)) < 1e-4


@pytest.mark.parametrize("mixer_class", [Mamba, Mamba2])
def test_step_equals_forward_and_state_size_is_constant(mixer_class):
    torch.manual_seed(0)
    kwargs = {"d_state": 4} if mixer_class is Mamba else {"d_state": 4, "head_dim": 8, "chunk_size": 8}
    mixer = mixer_class(16, **kwargs).eval()
    x = torch.randn(2, 40, 16)
    state = mixer.init_state(2)
    sizes = {state.conv.numel() + state.ssm.numel()}
    outputs = []
    with torch.no_grad():
        for t in range(x.shape[1]):
            y, state = mixer.step(x[:, t], state)
            outputs.append(y)
            sizes.add(state.conv.numel() + state.ssm.numel())
        full = mixer(x)
    assert (torch.stack(outputs, dim=1) - full).abs().max() < 1e-5
    assert len(sizes) == 1


def test_chunked_streaming_equals_forward():
    """Feeding a sequence in pieces with the carried state gives the one-shot output (frame-wise streaming)."""
    torch.manual_seed(0)
    block = MambaBlock(16, mixer="mamba", d_state=4).eval()
    x = torch.randn(2, 30, 16)
    state, pieces = None, []
    with torch.no_grad():
        for start in range(0, 30, 7):
            out = block.forward_with_state(x[:, start : start + 7], state)
            pieces.append(out.hidden)
            state = out.state
        assert (torch.cat(pieces, dim=1) - block(x)).abs().max() < 1e-5


def test_bimamba_sees_both_directions_and_trains():
    torch.manual_seed(0)
    mixer = BiMamba(16, d_state=4)
    assert {"conv1d_b.weight", "x_proj_b.weight", "dt_proj_b.bias", "A_b_log", "D_b"} <= set(mixer.state_dict())
    x = torch.randn(1, 12, 16, requires_grad=True)
    out = mixer.forward_with_state(x)
    assert out.hidden.shape == (1, 12, 16) and out.delta.shape == (1, 12, 32)
    (first_output_grad,) = torch.autograd.grad(out.hidden[:, 0].sum(), x, retain_graph=True)
    assert first_output_grad[:, -1].abs().sum() > 0  # reaches the last input only through the reversed scan
    out.hidden.square().sum().backward()
    for name, parameter in mixer.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="cannot"):
        mixer.step(x[:, 0], mixer.init_state(1))


def test_delta_is_softplus_positive_and_per_channel():
    mixer = Mamba(16, d_state=4)
    out = mixer.forward_with_state(torch.randn(2, 5, 16))
    assert out.delta.shape == (2, 5, 32) and (out.delta > 0).all()


@pytest.mark.parametrize("mixer", ["mamba", "bimamba", "mamba2"])
def test_block_shapes_and_bad_input(mixer):
    extra = {"head_dim": 8} if mixer == "mamba2" else {}
    block = MambaBlock(16, mixer=mixer, norm="layernorm", d_state=4, **extra)
    assert block(torch.randn(2, 9, 16)).shape == (2, 9, 16)
    with pytest.raises(ValueError, match="d_model=16"):
        block(torch.randn(2, 9, 8))
    with pytest.raises(ValueError, match="d_model=16"):
        block(torch.randn(9, 16))
    with pytest.raises(ValueError, match="length is 0"):
        block(torch.randn(2, 0, 16))
    with pytest.raises(ValueError, match="mixer must be"):
        MambaBlock(16, mixer="lstm")


@pytest.mark.parametrize("mixer_class", [Mamba, BiMamba, Mamba2])
@pytest.mark.parametrize("argument", ["d_model", "d_state", "d_conv", "expand"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_mixers_refuse_bad_sizes_at_construction(mixer_class, argument, value):
    """`d_state=0` used to construct and then divide by zero in the scan; every size is checked where it enters."""
    arguments = {"d_model": 16, "head_dim": 8, argument: value}
    if mixer_class is not Mamba2:
        del arguments["head_dim"]
    with torch.device("meta"), pytest.raises((ValueError, TypeError), match=rf"\b{argument}\b"):
        mixer_class(**arguments)


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"dt_min": 0.0}, "dt_min"),
        ({"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
        ({"dt_max": float("nan")}, "dt_max"),
        ({"dt_init_floor": -1.0}, "dt_init_floor"),
        ({"dt_rank": 0}, "dt_rank"),
    ],
)
def test_mamba_refuses_bad_dt_arguments(arguments, named):
    with torch.device("meta"), pytest.raises((ValueError, TypeError), match=named):
        Mamba(16, **arguments)


@pytest.mark.parametrize("argument", ["head_dim", "n_groups", "chunk_size"])
def test_mamba2_refuses_bad_head_arguments(argument):
    with torch.device("meta"), pytest.raises((ValueError, TypeError), match=argument):
        Mamba2(16, **{"head_dim": 8, argument: 0})
