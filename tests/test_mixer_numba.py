"""The fused CPU Mamba-1 mixer (`vtc.ssm.mixer_numba`) against the PyTorch mixer with the chunked scan: every shape
case of its blocks (steps and channels past a block, one step, a batch), with and without a conv bias, both
directions, random (trained-looking) parameters."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc.ssm import BiMamba, Mamba, dispatch

pytestmark = pytest.mark.skipif(
    "numba_mixer" not in dispatch.available_kernels(), reason="numba not installed (pip install vtc[fast])"
)


def _perturbed(mixer: Mamba, seed: int) -> Mamba:
    """`mixer` with every parameter moved off its initialisation, as training would (A and D included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in mixer.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return mixer.eval()


@settings(max_examples=12, deadline=None)
@given(
    bidirectional=st.booleans(),
    batch=st.integers(1, 2),
    length=st.sampled_from([1, 3, 257, 300]),  # STEP_BLOCK is 256
    d_model=st.sampled_from([8, 136]),  # d_inner 272 > CHANNEL_BLOCK (256): a partial channel block
    d_conv=st.integers(2, 4),
    conv_bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_fused_mixer_equals_the_pytorch_mixer(bidirectional, batch, length, d_model, d_conv, conv_bias, seed):
    torch.manual_seed(seed)
    cls = BiMamba if bidirectional else Mamba
    fused = _perturbed(cls(d_model, d_state=4, d_conv=d_conv, conv_bias=conv_bias), seed)
    chunked = cls(d_model, d_state=4, d_conv=d_conv, conv_bias=conv_bias, backend="chunked").eval()
    chunked.load_state_dict(fused.state_dict())
    x = torch.randn(batch, length, d_model, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        assert fused._runs_fused(x) and not chunked._runs_fused(x)
        torch.testing.assert_close(fused(x), chunked(x), rtol=1e-4, atol=1e-5)


def test_fused_mixer_keeps_the_input_dtype_and_refuses_bad_input():
    mixer = _perturbed(BiMamba(16, d_state=4), 0)
    x = torch.randn(1, 20, 16)
    with torch.no_grad():
        expected = mixer(x)
        out = copy.deepcopy(mixer).to(torch.bfloat16)(x.bfloat16())
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.float(), expected, rtol=0.05, atol=0.05)
        with pytest.raises(ValueError, match=r"expected \[B, L, d_model=16\]"):
            mixer(x[0])
        with pytest.raises(ValueError, match="sequence length is 0"):
            mixer(x[:, :0])
