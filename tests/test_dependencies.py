"""Dependency bounds and pins: pyproject's upper bounds admit what is installed, and `make test` installed exactly
the versions of constraints.txt (so a run without the constraints, or a stale venv, fails here)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MUST_BE_BOUNDED = ("transformers", "peft", "accelerate")
PINNED_EXTRAS = ("fast", "dev", "bench", "quant")  # what `make test` installs with constraints.txt (not cuda)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(line) for line in project()["dependencies"]]


def all_requirements(extras: tuple[str, ...] | None = None) -> list[Requirement]:
    """Runtime dependencies and those of the given extras (default: every extra)."""
    optional = project().get("optional-dependencies", {})
    names = optional if extras is None else extras
    return runtime_requirements() + [Requirement(line) for name in names for line in optional[name]]


def installed_version(name: str) -> Version | None:
    try:
        return Version(importlib.metadata.version(name))
    except importlib.metadata.PackageNotFoundError:
        return None


def has_upper_bound(requirement: Requirement) -> bool:
    return any(spec.operator in ("<", "<=", "==", "~=", "===") for spec in requirement.specifier)


def constraint_pins() -> dict[str, Requirement]:
    """constraints.txt by canonical package name."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def pinned_version(requirement: Requirement) -> Version:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"constraints.txt: {requirement} is not an exact pin"
    return Version(spec.version)


def test_upper_bounds_admit_the_installed_versions():
    checked = []
    for requirement in all_requirements():
        if not has_upper_bound(requirement) or (requirement.marker and not requirement.marker.evaluate()):
            continue
        version = installed_version(requirement.name)
        if version is None:
            # A runtime dependency is always installed; an extra's (cuda on a CPU machine) may not be.
            assert requirement not in runtime_requirements(), f"{requirement.name} is not installed"
            continue
        checked.append(requirement.name)
        assert requirement.specifier.contains(version, prereleases=True), (
            f"installed {requirement.name} {version} is outside pyproject's {requirement}"
        )
    assert set(MUST_BE_BOUNDED) <= set(checked)


@pytest.mark.parametrize("name", MUST_BE_BOUNDED)
def test_fast_moving_dependencies_have_an_upper_bound(name):
    matches = [r for r in runtime_requirements() if canonicalize_name(r.name) == name]
    assert len(matches) == 1, f"{name} is not a runtime dependency of pyproject.toml"
    assert has_upper_bound(matches[0]), f"{matches[0]} has no upper bound"


def test_torch_is_not_capped_below_the_makefile_pin():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    pinned = Version(re.search(r"^TORCH := torch==(\S+)$", makefile, re.MULTILINE).group(1))
    (torch,) = [r for r in runtime_requirements() if r.name == "torch"]
    assert torch.specifier.contains(pinned)
    assert pinned_version(constraint_pins()["torch"]) == pinned


def test_constraints_pin_exact_versions_of_every_dependency():
    pins = constraint_pins()
    assert "vtc" not in pins
    versions = {name: pinned_version(requirement) for name, requirement in pins.items()}
    for requirement in all_requirements(PINNED_EXTRAS):
        name = canonicalize_name(requirement.name)
        if installed_version(name) is not None:
            assert name in pins, f"{name} is installed but not pinned in constraints.txt"
            assert requirement.specifier.contains(versions[name], prereleases=True), (
                f"constraints.txt pins {pins[name]}, outside pyproject's {requirement}"
            )


def test_installed_versions_match_the_constraints():
    mismatches = []
    for name, requirement in constraint_pins().items():
        version = installed_version(name)
        if version is not None and not requirement.specifier.contains(version, prereleases=True):
            mismatches.append(f"{name} {version} installed, constraints.txt pins {requirement.specifier}")
    assert not mismatches, "installed without `-c constraints.txt`? " + "; ".join(mismatches)
