"""`vtc bench scan` compares like with like: every implementation gets the same weights and computes the same mixer."""

from __future__ import annotations

import pytest
import torch

from vtc.bench.scan import IMPLEMENTATIONS, build, cases


@pytest.mark.parametrize("implementation", [name for name in IMPLEMENTATIONS if name not in ("vtc", "vtc-no-scan")])
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


def test_the_no_scan_floor_is_the_mixer_minus_the_scan():
    """With C = 0 the scan contributes nothing but `D u`, so the floor and the mixer must agree exactly."""
    mixer, floor = build("vtc", hidden=32, state=4), build("vtc-no-scan", hidden=32, state=4)
    with torch.no_grad():
        for module in (mixer, floor.mixer):
            module.x_proj.weight[-4:] = 0
        x = torch.randn(2, 40, 32, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(mixer(x), floor(x), atol=1e-6)
        assert not torch.allclose(build("vtc", hidden=32, state=4)(x), floor(x), atol=1e-3)
