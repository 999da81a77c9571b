"""Selective scan backends (chunked PyTorch, fused Numba) against the sequential reference; SSD scan against the
Mamba-1 reference."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vtc.ssm import dispatch, selective_scan, ssd_scan
from vtc.ssm import scan as scan_module

NUMBA = "numba_scan" in dispatch.available_kernels()
# The fast backends, each held to the sequential reference by the same tests.
FAST_BACKENDS = ["chunked", pytest.param("numba", marks=pytest.mark.skipif(not NUMBA, reason="numba not installed"))]


def _inputs(batch, dim, state, length, groups, seed, with_d, with_z, with_bias, with_state, delta_scale=1.0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    b_shape = (batch, groups, state, length) if groups else (batch, state, length)
    return dict(
        u=randn(batch, dim, length),
        delta=randn(batch, dim, length) * delta_scale,
        A=-(torch.rand(dim, state, generator=generator, dtype=torch.float64) * 4 + 0.1),
        B=randn(*b_shape),
        C=randn(*b_shape),
        D=randn(dim) if with_d else None,
        z=randn(batch, dim, length) if with_z else None,
        delta_bias=randn(dim) if with_bias else None,
        initial_state=randn(batch, dim, state) if with_state else None,
    )


def _run(backend, inputs, softplus):
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items() if v is not None}
    if not softplus:  # without softplus, delta (+ bias) must be positive for a decaying scan
        for name in ("delta", "delta_bias"):
            if name in leaves:
                leaves[name] = leaves[name].detach().abs().requires_grad_()
    kwargs = {k: leaves.get(k) for k in inputs}
    y, last = selective_scan(**kwargs, delta_softplus=softplus, return_last_state=True, backend=backend)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * weights).sum() + (last.double() ** 2).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y, last, dict(zip(leaves, grads, strict=True))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    dim=st.sampled_from([2, 4, 6]),
    state=st.integers(1, 5),
    length=st.sampled_from([1, 2, 7, 63, 64, 65, 130]),
    groups=st.sampled_from([0, 1, 2]),
    flags=st.tuples(*[st.booleans()] * 5),
    seed=st.integers(0, 10_000),
)
def test_fast_backend_matches_reference(backend, batch, dim, state, length, groups, flags, seed):
    with_d, with_z, with_bias, with_state, softplus = flags
    inputs = _inputs(batch, dim, state, length, groups, seed, with_d, with_z, with_bias, with_state)
    y_ref, last_ref, grads_ref = _run("reference", inputs, softplus)
    y, last, grads = _run(backend, inputs, softplus)
    assert _relative(y, y_ref) < 1e-4
    assert _relative(last, last_ref) < 1e-4
    for name, grad in grads.items():
        assert _relative(grad, grads_ref[name]) < 1e-4, name


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_exact_under_extreme_decay(backend):
    """Steps whose decay underflows fp32 (delta*A << -87) must not produce NaN or lose precision."""
    inputs = _inputs(1, 4, 3, 200, 0, 0, True, False, False, False)
    inputs["delta"] = inputs["delta"].abs() * 40
    inputs["delta"][..., 120:] *= 0.001
    y_ref, last_ref, grads_ref = _run("reference", inputs, softplus=False)
    y, last, grads = _run(backend, inputs, softplus=False)
    assert torch.isfinite(y).all()
    assert _relative(y, y_ref) < 1e-4 and _relative(last, last_ref) < 1e-4
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        assert _relative(grad, grads_ref[name]) < 1e-4, name


def test_chunk_bounds_shrink_only_where_needed():
    delta = torch.full((1, 1, 300), 0.01)
    delta[..., 100:110] = 30.0  # ten steps of decay exp(-30) each
    A = -torch.ones(1, 1)
    bounds = scan_module._chunk_bounds(delta, A, 64)
    assert bounds[0] == (0, 64)
    assert bounds[-1][1] == 300 and all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    for start, end in bounds:
        assert end - start == 1 or float((delta[..., start:end] * 1.0).sum()) <= scan_module.MAX_CHUNK_DECAY


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_long_sequence_is_numerically_safe(backend):
    """65,536 steps: no overflow, and agreement with the sequential loop."""
    inputs = _inputs(1, 2, 2, 65_536, 0, 1, True, False, True, False)
    with torch.no_grad():
        y_ref = selective_scan(**inputs, delta_softplus=True, backend="reference")
        y = selective_scan(
            **{k: v.float() if v is not None else v for k, v in inputs.items()}, delta_softplus=True, backend=backend
        )
    assert torch.isfinite(y).all()
    assert _relative(y.double(), y_ref) < 1e-4


def test_auto_backend_on_cpu_is_numba_where_it_imports_and_dtype_is_kept():
    inputs = _inputs(1, 4, 2, 10, 0, 0, True, True, False, False)
    inputs = {k: v.to(torch.bfloat16) if v is not None else v for k, v in inputs.items()}
    y_auto = selective_scan(**inputs, delta_softplus=True)
    y_expected = selective_scan(**inputs, delta_softplus=True, backend="numba" if NUMBA else "chunked")
    assert y_auto.dtype == torch.bfloat16
    assert torch.equal(y_auto, y_expected)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_accumulate_in_fp32(backend, dtype):
    """fp16 / bf16 inputs: the scan runs in fp32 like the reference, so outputs differ by the final rounding only,
    and every gradient comes back in its input's dtype."""
    inputs = _inputs(2, 4, 3, 300, 1, 3, True, True, True, True)
    inputs = {k: v.to(dtype) if v is not None else v for k, v in inputs.items()}
    y_ref, last_ref, grads_ref = _run("reference", inputs, softplus=True)
    y, last, grads = _run(backend, inputs, softplus=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    assert _relative(y, y_ref) < 1e-2 and _relative(last, last_ref) < 1e-4
    for name, grad in grads.items():
        assert grad.dtype == dtype, name
        assert _relative(grad, grads_ref[name]) < 1e-2, name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(u=d["u"][0]), "u must be"),
        (lambda d: d.update(delta=d["delta"][..., :-1]), "delta must have shape"),
        (lambda d: d.update(A=d["A"][:, :-1]), "B must be"),
        (lambda d: d.update(B=d["B"].unsqueeze(1).expand(-1, 3, -1, -1)), "groups"),
        (lambda d: d.update(u=d["u"][..., :0], delta=d["delta"][..., :0]), "length 0"),
        (lambda d: d.update(D=d["u"].new_ones(3)), "D must have shape"),
    ],
)
def test_bad_shapes_raise_clear_errors(change, message):
    inputs = _inputs(1, 4, 2, 5, 0, 0, False, False, False, False)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


def test_unknown_backend_and_unavailable_cuda():
    inputs = _inputs(1, 4, 2, 5, 0, 0, False, False, False, False)
    with pytest.raises(ValueError, match="backend"):
        selective_scan(**inputs, backend="fast")
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        selective_scan(**inputs, backend="cuda")


@pytest.mark.skipif(not NUMBA, reason="numba not installed")
def test_numba_scan_does_not_depend_on_the_thread_count(monkeypatch):
    """With two threads and one (row, group), the backward pass splits the channels into two pieces that sum their
    own B and C gradients; the result must be that of one thread, up to the order of fp32 sums."""
    numba = pytest.importorskip("numba")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: numba runs one thread")
    inputs = _inputs(1, 12, 4, 150, 0, 5, True, True, True, True)
    results = {}
    for threads in (1, 2):
        monkeypatch.setattr(torch, "get_num_threads", lambda threads=threads: threads)
        results[threads] = _run("numba", inputs, softplus=True)
    (y_one, last_one, grads_one), (y, last, grads) = results[1], results[2]
    assert torch.equal(y, y_one) and torch.equal(last, last_one)
    for name, grad in grads.items():
        assert _relative(grad, grads_one[name]) < 1e-6, name


@settings(max_examples=10, deadline=None)
@given(
    length=st.sampled_from([1, 5, 16, 33]),
    heads=st.sampled_from([2, 4]),
    groups=st.sampled_from([1, 2]),
    with_state=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_ssd_scan_matches_mamba1_reference(length, heads, groups, with_state, seed):
    """Mamba-2 is Mamba-1 with A shared by all state dims of a head and B/C shared by a group of heads."""
    generator = torch.Generator().manual_seed(seed)
    batch, head_dim, state = 2, 3, 4
    x = torch.randn(batch, length, heads, head_dim, generator=generator, dtype=torch.float64)
    dt = torch.rand(batch, length, heads, generator=generator, dtype=torch.float64)
    A = -torch.rand(heads, generator=generator, dtype=torch.float64) * 2
    B = torch.randn(batch, length, groups, state, generator=generator, dtype=torch.float64)
    C = torch.randn(batch, length, groups, state, generator=generator, dtype=torch.float64)
    D = torch.randn(heads, generator=generator, dtype=torch.float64)
    h0 = torch.randn(batch, heads, head_dim, state, generator=generator, dtype=torch.float64) if with_state else None
    y, last = ssd_scan(x, dt, A, B, C, chunk_size=8, D=D, initial_state=h0, return_last_state=True)

    channels = heads * head_dim
    y_ref, last_ref = selective_scan(
        x.reshape(batch, length, channels).transpose(1, 2),
        dt.repeat_interleave(head_dim, dim=2).transpose(1, 2),
        A.repeat_interleave(head_dim)[:, None].expand(channels, state),
        B.permute(0, 2, 3, 1),
        C.permute(0, 2, 3, 1),
        D=D.repeat_interleave(head_dim),
        initial_state=None if h0 is None else h0.reshape(batch, channels, state),
        return_last_state=True,
        backend="reference",
    )
    assert _relative(y.reshape(batch, length, channels).transpose(1, 2), y_ref) < 1e-4
    assert _relative(last.reshape(batch, channels, state), last_ref) < 1e-4


@pytest.mark.parametrize("tile_elements", [2 * 3 * 64, 1])
def test_tiles_over_rows_and_channels_give_the_same_scan(monkeypatch, tile_elements):
    """Large problems run in tiles of batch rows / channels of each group; results must not depend on the tiling."""
    inputs = _inputs(3, 12, 4, 150, 2, 7, True, True, True, True)
    y_ref, last_ref, grads_ref = _run("chunked", inputs, softplus=True)
    monkeypatch.setattr(scan_module, "TILE_ELEMENTS", tile_elements)
    y, last, grads = _run("chunked", inputs, softplus=True)
    assert _relative(y, y_ref) < 1e-6 and _relative(last, last_ref) < 1e-6
    for name, grad in grads.items():
        assert _relative(grad, grads_ref[name]) < 1e-5, name


def test_split_chunks_follows_irregular_bounds():
    """Bounds with regular starts but a longer last chunk ((0, 30), (30, 65)) give exactly those chunks."""
    chunks = scan_module._split_chunks(torch.arange(65.0).view(1, 65), [(0, 30), (30, 65)])
    assert [chunk.shape[-1] for chunk in chunks] == [30, 35]
    assert torch.equal(torch.cat(chunks, dim=-1), torch.arange(65.0).view(1, 65))


@pytest.mark.skipif(not NUMBA, reason="numba not installed")
def test_numba_kernels_compile_without_a_writable_cache(monkeypatch):
    """Where no cache folder is writable Numba refuses `cache=True` when decorating; the kernels then compile
    without the cache instead of failing to import (a read-only install)."""
    from vtc.ssm import scan_numba

    options_used = []

    def njit(**options):
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'kernel': no locator available for file 'scan_numba.py'")
        options_used.append(options)
        return lambda function: function

    def kernel():
        return 1

    monkeypatch.setattr(scan_numba, "njit", njit)
    assert scan_numba.jit_kernel(fastmath=True)(kernel) is kernel
    assert options_used == [{"fastmath": True}]
