"""The code's shape: layers that point one way, no import cycles, modules and classes a reader can hold in mind."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 350
MAX_CLASS_LINES = 200
SIZE_EXEMPT = ("vtc/ssm/",)  # the scan and the mixers: one concern a file, long by nature


def load_import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_graph", module)
    spec.loader.exec_module(module)
    return module


import_graph = load_import_graph()


def test_every_module_has_a_layer() -> None:
    for module in import_graph.all_modules():
        assert import_graph.layer_of(module) in import_graph.ORDER


def test_no_import_points_up() -> None:
    assert import_graph.upward_imports(import_graph.graph()) == []


def test_no_import_cycle() -> None:
    assert import_graph.cycles(import_graph.graph()) == []


def test_the_checks_catch_an_upward_import_and_a_cycle() -> None:
    edges = {"vtc.utils.io": {"vtc.lmm.model"}, "vtc.lmm.model": {"vtc.lmm.config"}, "vtc.lmm.config": set()}
    assert import_graph.upward_imports(edges) == ["vtc.utils.io (utils) -> vtc.lmm.model (lmm)"]
    edges["vtc.lmm.config"] = {"vtc.lmm.model"}
    assert import_graph.cycles(edges) == [["vtc.lmm.config", "vtc.lmm.model"]]


def test_the_core_never_imports_the_benchmark_world() -> None:
    world = import_graph.ORDER.index("world")
    for importer, imported in import_graph.graph().items():
        if import_graph.ORDER.index(import_graph.layer_of(importer)) < world:
            assert not any(name.startswith("vtc.world") for name in imported), importer


def sized_files() -> list[Path]:
    return [
        path for path in sorted((ROOT / "vtc").rglob("*.py")) if not str(path.relative_to(ROOT)).startswith(SIZE_EXEMPT)
    ]


@pytest.mark.parametrize("path", sized_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_module_and_class_sizes(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_MODULE_LINES})"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_CLASS_LINES, f"{path.name}: class {node.name} has {length} lines"
