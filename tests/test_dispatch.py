"""Which implementation runs (`vtc.ssm.dispatch`): the decisions for every device / kernel / state case, and the
mixers' wiring to fake fused kernels that record their calls on CPU tensors. No GPU needed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtc.ssm import Mamba, Mamba2, dispatch, selective_scan, ssd_scan
from vtc.ssm import scan as scan_module
from vtc.ssm.mamba import BiMamba

ALL = frozenset(dispatch.KERNELS)
NONE: frozenset[str] = frozenset()
NUMBA = "numba_mixer" in dispatch.available_kernels()


@pytest.mark.parametrize(
    ("device", "kernels", "has_state", "expected"),
    [
        ("cpu", NONE, False, "chunked"),
        ("cpu", ALL, False, "numba"),  # the other kernels are CUDA kernels
        ("cpu", ALL, True, "numba"),  # the Numba scan takes a carried state
        ("cpu", ALL - {"numba_scan"}, False, "chunked"),  # numba not installed
        ("cuda", NONE, False, "chunked"),
        ("cuda", ALL - {"selective_scan"}, True, "chunked"),  # the Numba scan runs on CPU tensors only
        ("cuda", ALL, False, "cuda"),
        ("cuda", ALL, True, "chunked"),  # selective_scan_fn takes no initial state
        ("cuda", ALL - {"selective_scan"}, False, "chunked"),
    ],
)
def test_auto_scan_backend(device, kernels, has_state, expected):
    assert dispatch.scan_backend("auto", device, kernels, has_state) == expected


def test_explicit_scan_backends_are_kept_or_refused():
    assert dispatch.scan_backend("reference", "cuda", ALL, False) == "reference"
    assert dispatch.scan_backend("chunked", "cuda", ALL, False) == "chunked"
    assert dispatch.scan_backend("cuda", "cuda", ALL, False) == "cuda"
    assert dispatch.scan_backend("numba", "cpu", ALL, True) == "numba"
    with pytest.raises(RuntimeError, match="numba installed"):
        dispatch.scan_backend("numba", "cpu", ALL - {"numba_scan"}, False)
    with pytest.raises(RuntimeError, match="CPU tensors"):
        dispatch.scan_backend("numba", "cuda", ALL, False)
    with pytest.raises(RuntimeError, match="mamba_ssm installed"):
        dispatch.scan_backend("cuda", "cpu", ALL, False)
    with pytest.raises(RuntimeError, match="mamba_ssm installed"):
        dispatch.scan_backend("cuda", "cuda", NONE, False)
    with pytest.raises(ValueError, match="initial_state"):
        dispatch.scan_backend("cuda", "cuda", ALL, True)
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.scan_backend("fast", "cuda", ALL, False)


@pytest.mark.parametrize(
    ("device", "kernels", "expected"),
    [("cpu", ALL, "chunked"), ("cuda", NONE, "chunked"), ("cuda", ALL, "cuda"), ("cuda", ALL - {"ssd"}, "chunked")],
)
def test_auto_ssd_backend(device, kernels, expected):
    assert dispatch.ssd_backend("auto", device, kernels) == expected


def test_explicit_ssd_backends():
    assert dispatch.ssd_backend("chunked", "cuda", ALL) == "chunked"
    with pytest.raises(RuntimeError, match="mamba_ssm installed"):
        dispatch.ssd_backend("cuda", "cpu", ALL)
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.ssd_backend("reference", "cuda", ALL)


@pytest.mark.parametrize(
    ("requested", "device", "kernels", "has_state", "expected"),
    [
        ("auto", "cpu", ALL, False, False),
        ("auto", "cuda", NONE, False, False),
        ("auto", "cuda", ALL, False, True),
        ("cuda", "cuda", ALL, False, True),
        ("auto", "cuda", ALL, True, False),
        ("chunked", "cuda", ALL, False, False),  # an explicit PyTorch backend keeps the mixer in PyTorch
        ("auto", "cuda", ALL - {"causal_conv1d"}, False, False),
    ],
)
def test_conv_kernel_decision(requested, device, kernels, has_state, expected):
    assert dispatch.use_conv_kernel(requested, device, kernels, has_state) is expected


@pytest.mark.parametrize(
    ("requested", "device", "kernels", "expected"),
    [
        ("auto", "cpu", ALL, False),
        ("auto", "cuda", NONE, False),
        ("auto", "cuda", ALL, True),
        ("cuda", "cuda", ALL, True),
        ("chunked", "cuda", ALL, False),  # an explicit PyTorch backend stays PyTorch
        ("auto", "cuda", ALL - {"state_update"}, False),
    ],
)
def test_step_kernel_decision(requested, device, kernels, expected):
    assert dispatch.use_step_kernel(requested, device, kernels) is expected


def test_kernel_lookup_is_none_when_the_package_is_missing(monkeypatch):
    monkeypatch.setitem(dispatch.KERNELS, "absent", ("vtc_no_such_package.ops", "fn"))
    assert dispatch.kernel("absent") is None
    assert "absent" not in dispatch.available_kernels()


# ------------------------------------------------------------------ wiring, with fakes that run on CPU tensors


def _fake_selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """`mamba_ssm`'s `selective_scan_fn` positional signature, computed by the chunked scan."""
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, backend="chunked")


def _fake_causal_conv1d_fn(x, weight, bias, activation):
    """`causal_conv1d_fn(x [B, C, L], weight [C, k], bias, activation="silu")`."""
    assert activation == "silu"
    out = F.conv1d(F.pad(x, (weight.shape[1] - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out)


def _fake_selective_state_update(state, x, dt, A, B, C, D, z, dt_bias, dt_softplus):
    """`selective_state_update`: one step of eq. 2a in place on `state [B, D, N]`, returns y `[B, D]`."""
    dt = F.softplus(dt + dt_bias) if dt_softplus else dt + dt_bias
    state.copy_(torch.exp(dt[..., None] * A) * state + (dt * x)[..., None] * B[:, None])
    return ((state * C[:, None]).sum(-1) + D * x) * F.silu(z)


def _fake_ssd(x, dt, A, B, C, chunk_size, D=None, initial_states=None, return_final_states=False):
    """`mamba_chunk_scan_combined`'s keywords, computed by the PyTorch SSD scan."""
    return ssd_scan(x, dt, A, B, C, chunk_size, D, initial_states, return_final_states, backend="chunked")


def _fake_numba_scan(u, delta, A, B, C, state, D, z):
    """`vtc.ssm.scan_numba.numba_scan`, computed by the chunked scan."""
    y, last = scan_module._scan_chunked_tiles(u, delta, A, B, C, state)
    return (y + u * D[:, None]) * F.silu(z), last


FAKES = {
    "selective_scan": _fake_selective_scan_fn,
    "causal_conv1d": _fake_causal_conv1d_fn,
    "state_update": _fake_selective_state_update,
    "ssd": _fake_ssd,
    "numba_scan": _fake_numba_scan,
}


@pytest.fixture
def fused_on_cpu(monkeypatch):
    """Every kernel of `FAKES` 'imports' as a recording fake and CPU counts as a kernel device (the fused CPU mixer
    does not import, as on a CUDA machine's CUDA tensors it would not run); yields the call log."""
    calls: list[str] = []

    def recording(name):
        if name not in FAKES:
            return None

        def call(*args, **kwargs):
            calls.append(name)
            return FAKES[name](*args, **kwargs)

        return call

    monkeypatch.setattr(dispatch, "KERNEL_DEVICES", ("cpu",))
    monkeypatch.setattr(dispatch, "kernel", recording)
    return calls


def _mixer_and_input(cls=Mamba, **kwargs):
    torch.manual_seed(0)
    mixer = cls(16, d_state=4, **kwargs).eval()
    return mixer, torch.randn(2, 9, 16, generator=torch.Generator().manual_seed(1))


def test_fresh_state_equals_an_explicit_zero_state_exactly_on_cpu():
    """The CPU path of a fresh state is today's numbers: the same as carrying the zero state of `init_state`."""
    for cls in (Mamba, Mamba2):
        mixer, x = _mixer_and_input(cls, **({"head_dim": 8} if cls is Mamba2 else {}))
        with torch.no_grad():
            fresh, zero = mixer.forward_with_state(x), mixer.forward_with_state(x, mixer.init_state(2))
        assert torch.equal(fresh.hidden, zero.hidden)
        assert torch.equal(fresh.state.ssm, zero.state.ssm) and torch.equal(fresh.state.conv, zero.state.conv)


def test_a_fresh_state_takes_the_fused_scan_and_conv(fused_on_cpu):
    mixer, x = _mixer_and_input()
    with torch.no_grad():
        fused = mixer.forward_with_state(x)
        assert fused_on_cpu == ["causal_conv1d", "selective_scan"]
        chunked = Mamba(16, d_state=4, backend="chunked")
        chunked.load_state_dict(mixer.state_dict())
        fused_on_cpu.clear()
        expected = chunked.forward_with_state(x, chunked.init_state(2))
    assert fused_on_cpu == []  # explicit chunked backend and a carried state: no scan kernel, no conv kernel
    torch.testing.assert_close(fused.hidden, expected.hidden)
    torch.testing.assert_close(fused.state.conv, expected.state.conv)
    torch.testing.assert_close(fused.state.ssm, expected.state.ssm)


def test_a_carried_state_skips_the_cuda_scan(fused_on_cpu):
    mixer, x = _mixer_and_input()
    with torch.no_grad():
        mixer.forward_with_state(x[:, 3:], mixer.forward_with_state(x[:, :3]).state)
    # CUDA kernels for the first (fresh) call only; the carried state takes the CPU scan (these are CPU tensors).
    assert fused_on_cpu == ["causal_conv1d", "selective_scan", "numba_scan"]


def test_auto_takes_the_numba_scan_on_cpu_where_it_imports(monkeypatch):
    """On CPU tensors "auto" runs the Numba scan when it imports and the chunked scan when it does not."""
    calls: list[str] = []
    real_kernel = dispatch.kernel

    def with_numba(name):
        if name != "numba_scan":
            return real_kernel(name)

        def call(*args):
            calls.append(name)
            return _fake_numba_scan(*args)

        return call

    mixer, x = _mixer_and_input()
    monkeypatch.setattr(dispatch, "kernel", with_numba)
    with torch.no_grad():
        fast = mixer.forward_with_state(x).hidden
    assert calls == ["numba_scan"]
    monkeypatch.setattr(dispatch, "kernel", lambda name: None if name == "numba_scan" else real_kernel(name))
    with torch.no_grad():
        torch.testing.assert_close(mixer.forward_with_state(x).hidden, fast)
    assert calls == ["numba_scan"]


@pytest.mark.parametrize(
    ("requested", "device", "kernels", "wants_grad", "expected"),
    [
        ("auto", "cpu", ALL, False, True),
        ("numba", "cpu", ALL, False, True),
        ("auto", "cpu", ALL, True, False),  # training: the kernels have no backward
        ("auto", "cpu", ALL - {"numba_mixer"}, False, False),  # numba not installed
        ("auto", "cuda", ALL, False, False),  # CUDA tensors take mamba_ssm's kernels
        ("chunked", "cpu", ALL, False, False),  # an explicit PyTorch backend keeps the PyTorch mixer
        ("reference", "cpu", ALL, False, False),
    ],
)
def test_the_fused_cpu_mixer_decision(requested, device, kernels, wants_grad, expected):
    assert dispatch.use_cpu_mixer(requested, device, kernels, wants_grad) is expected


@pytest.mark.parametrize("cls", [Mamba, BiMamba])
def test_inference_on_cpu_takes_the_fused_mixer_and_training_does_not(monkeypatch, cls):
    calls: list[str] = []
    real_kernel = dispatch.kernel

    def recording(name):
        kernel = real_kernel(name)

        def call(*args):
            calls.append(name)
            return kernel(*args)

        return None if kernel is None else call

    mixer, x = _mixer_and_input(cls)
    monkeypatch.setattr(dispatch, "kernel", recording)
    with torch.no_grad():
        mixer(x)
    assert calls == (["numba_mixer"] if NUMBA else [])
    calls.clear()
    mixer(x).sum().backward()  # parameters that want a gradient: the differentiable scan, in each direction
    assert calls == (["numba_scan"] * (2 if cls is BiMamba else 1) if NUMBA else [])


def test_bidirectional_mamba_takes_the_fused_scan_both_ways(fused_on_cpu):
    mixer, x = _mixer_and_input(BiMamba)
    with torch.no_grad():
        mixer(x)
    assert fused_on_cpu.count("selective_scan") == 2 and fused_on_cpu.count("causal_conv1d") == 2


def test_step_takes_selective_state_update_and_matches_the_pytorch_step(fused_on_cpu):
    mixer, x = _mixer_and_input()
    with torch.no_grad():
        state = mixer.forward_with_state(x[:, :5]).state
        fused_on_cpu.clear()
        y, new_state = mixer.step(x[:, 5], state)
        assert fused_on_cpu == ["state_update"]
        mixer.backend = "chunked"
        y_ref, state_ref = mixer.step(x[:, 5], state)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(new_state.ssm, state_ref.ssm)
    torch.testing.assert_close(new_state.conv, state_ref.conv)
    assert not torch.equal(new_state.ssm, state.ssm)  # the input state was not updated in place


def test_mamba2_takes_the_ssd_kernel_with_and_without_state(fused_on_cpu):
    mixer, x = _mixer_and_input(Mamba2, head_dim=8)
    with torch.no_grad():
        first = mixer.forward_with_state(x[:, :4])
        assert fused_on_cpu == ["causal_conv1d", "ssd"]
        mixer.forward_with_state(x[:, 4:], first.state)
    assert fused_on_cpu == ["causal_conv1d", "ssd", "ssd"]  # carried state: PyTorch conv, SSD kernel


def test_without_kernels_nothing_fused_is_called(monkeypatch):
    monkeypatch.setattr(dispatch, "KERNEL_DEVICES", ("cpu",))
    monkeypatch.setattr(dispatch, "kernel", lambda name: None)
    mixer, x = _mixer_and_input()
    with torch.no_grad():
        out = mixer.forward_with_state(x)
        y, _ = mixer.step(x[:, 0], out.state)
    assert out.hidden.shape == (2, 9, 16) and y.shape == (2, 16)
