"""Print vtc's import graph by layer and fail on an upward import or a cycle.

Layers, bottom to top: a module may import from its own layer or below, never above, and no chain of imports may
come back to where it started. Every import counts: top-level, inside functions, and under `TYPE_CHECKING`.

    python tools/import_graph.py           # the layers, each module's vtc imports, then the violations (exit 1)
"""

from __future__ import annotations

import ast
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vtc"

# Bottom to top; patterns match module names (fnmatch), the first layer with a match wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("vtc.cli", "vtc.info", "vtc.*.cli", "vtc")),  # listed first so that `vtc.*.cli` wins; it is the top
    ("utils", ("vtc.utils", "vtc.utils.*")),
    ("foundations", ("vtc.video", "vtc.data", "vtc.data.*", "vtc.ssm", "vtc.ssm.*")),
    ("compressors", ("vtc.compressors", "vtc.compressors.*", "vtc.budget")),
    ("encoders", ("vtc.encoders", "vtc.encoders.*")),
    ("lmm", ("vtc.lmm", "vtc.lmm.*", "vtc.integrations", "vtc.integrations.*")),
    ("eval", ("vtc.eval", "vtc.eval.*")),
    ("train", ("vtc.train", "vtc.train.*")),
    ("bench", ("vtc.bench", "vtc.bench.*")),
    ("world", ("vtc.world", "vtc.world.*")),
)
ORDER = ("utils", "foundations", "compressors", "encoders", "lmm", "eval", "train", "bench", "world", "cli")


def module_name(path: Path) -> str:
    """`vtc/compressors/base.py` -> `vtc.compressors.base`; a package's `__init__.py` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    for layer, patterns in LAYERS:
        if any(fnmatch(module, pattern) for pattern in patterns):
            return layer
    raise ValueError(f"{module} is in no layer: add it to tools/import_graph.py LAYERS")


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The vtc modules that `path` imports (a `from package import submodule` counts as the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "vtc")
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "vtc"
        ):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
            names_only = any(f"{node.module}.{alias.name}" not in modules for alias in node.names)
            found.update(submodules)
            if names_only:
                found.add(node.module)
    return {name for name in found if name in modules} - {module_name(path)}


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """`importer (layer) -> imported (higher layer)` for every import that points up."""
    found = []
    for importer, imported in sorted(edges.items()):
        for target in sorted(imported):
            if ORDER.index(layer_of(target)) > ORDER.index(layer_of(importer)):
                found.append(f"{importer} ({layer_of(importer)}) -> {target} ({layer_of(target)})")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def main() -> int:
    sys.setrecursionlimit(10_000)
    edges = graph()
    for layer in ORDER:
        print(f"[{layer}]")
        for module in sorted(name for name in edges if layer_of(name) == layer):
            print(f"  {module} -> {', '.join(sorted(edges[module])) or '-'}")
    upward, circles = upward_imports(edges), cycles(edges)
    for line in upward:
        print(f"UPWARD {line}")
    for component in circles:
        print(f"CYCLE {' <-> '.join(component)}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports: {len(upward)} upward, {len(circles)} cycles")
    return 1 if upward or circles else 0


if __name__ == "__main__":
    raise SystemExit(main())
