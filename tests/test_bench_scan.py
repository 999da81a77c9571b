"""`vtc bench scan` compares like with like: every implementation gets the same weights and computes the same mixer."""

from __future__ import annotations

import argparse

import pytest
import torch

from vtc.bench.scan import IMPLEMENTATIONS, add_arguments, build, cases, parity, run
from vtc.ssm import dispatch, selective_scan


@pytest.mark.parametrize(
    "implementation", [name for name in IMPLEMENTATIONS if name != "vtc" and "no-scan" not in name]
)
def test_every_implementation_computes_the_same_mixer(implementation):
    if implementation == "mambapy":
        pytest.importorskip("mambapy", reason="mambapy is a benchmark-only dependency (the bench extra)")
    x = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = build("vtc", hidden=32, state=4)(x)
        theirs = build(implementation, hidden=32, state=4)(x)
    assert (ours - theirs).abs().max() < 1e-4 * ours.abs().max()


def test_cases_cover_the_issue_and_can_skip_the_slow_loop():
    full, quick = cases(quick=False), cases(quick=False, skip_reference=True)
    assert ("forward", 8192, "vtc", "transformers") in full
    assert ("forward+backward", 8192, "vtc", "mambapy") in full
    assert ("forward+backward", 2048, "vtc", "vtc-reference") in full
    assert all(case[3] != "vtc-reference" for case in quick) and len(quick) == len(full) - 1


@pytest.mark.parametrize(
    ("implementation", "floor_of"), [("vtc", "vtc-no-scan"), ("vtc-chunked", "vtc-chunked-no-scan")]
)
def test_the_no_scan_floor_is_the_mixer_minus_the_scan(implementation, floor_of):
    """With C = 0 the scan contributes nothing but `D u`, so the floor and the mixer must agree (on the fused CPU
    mixer's path for `vtc` under no_grad where numba imports, on the PyTorch path for `vtc-chunked`)."""
    mixer, floor = build(implementation, hidden=32, state=4), build(floor_of, hidden=32, state=4)
    assert floor.mixer.backend == mixer.backend
    with torch.no_grad():
        for module in (mixer, floor.mixer):
            module.x_proj.weight[-4:] = 0
        x = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(mixer(x), floor(x), atol=1e-6, rtol=1e-5)
        assert not torch.allclose(build(implementation, hidden=32, state=4)(x), floor(x), atol=1e-3)


def test_cuda_cases_add_the_fused_path_against_the_chunked_one():
    cpu, cuda = cases(quick=True), cases(quick=True, device="cuda")
    assert cuda[: len(cpu)] == cpu
    assert cuda[len(cpu) :] == [
        ("forward", 1024, "vtc", "vtc-chunked"),
        ("forward+backward", 1024, "vtc", "vtc-chunked"),
    ]


def test_parity_is_refused_where_no_fused_scan_runs():
    with pytest.raises(ValueError, match="needs --device cuda"):
        parity(16, batch=1, hidden=8, state=2, device="cpu", dtype="float32")


def test_parity_reports_the_difference_between_the_fused_and_the_chunked_path(monkeypatch):
    """A fake fused scan that is off by a known 0.5 on every output must show up in the parity figure."""

    def fake_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        y, last = selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True, backend="chunked")
        return (y + 0.5, last) if return_last_state else y + 0.5

    monkeypatch.setattr(dispatch, "KERNEL_DEVICES", ("cpu",))
    monkeypatch.setattr(dispatch, "kernel", lambda name: fake_scan_fn if name == "selective_scan" else None)
    exact = parity(16, batch=1, hidden=8, state=2, device="cpu", dtype="float32")
    assert exact["kernels"] == ["selective_scan"] and exact["grad_max_abs_diff"] < 1e-5
    mixer = build("vtc-chunked", hidden=8, state=2)
    shift = mixer.out_proj.weight.sum(dim=1).abs().max().item() * 0.5  # 0.5 on every channel, through out_proj
    assert exact["max_abs_diff"] == pytest.approx(shift, rel=1e-4)


def test_scan_bench_refuses_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true")
    add_arguments(parser)
    with pytest.raises(ValueError, match=r"--device cuda: torch\.cuda\.is_available\(\) is False"):
        run(parser.parse_args(["--json", "--device", "cuda", "--parity"]))
