"""Mutation run over vtc's metrics, compressors and budget solver: how many small deliberate bugs the tests catch.

Each mutant changes one spot of one module with a simple AST mutation (a comparison flipped or moved across its
boundary, `+`/`-` or `*`/`/` swapped, `and`/`or` swapped, an integer constant off by one, a return value negated
or replaced by None), written into a COPY of the `vtc` package in a temporary folder; the module's test files then
run with that copy first on `PYTHONPATH` (the working tree is never touched). A mutant is killed when the tests fail
or time out. No mutation library is needed: the operators are the few functions below.

    python benchmarks/mutation.py vtc/eval/moment.py vtc/budget.py --max-per-module 30 --timeout 60
    python benchmarks/mutation.py vtc/compressors/taa.py --list      # the mutants, without running anything

Prints one line per mutant, then the kill rate per module and every surviving mutant (file, line, mutation).
Not part of the test suite: a run takes minutes (about 5-15 s per mutant on one thread).
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTEST = Path(sys.executable).parent / "pytest"
# The test files that guard a module (the fast ones); any other `vtc/.../X.py` gets tests/test_X.py, and a compressor
# module also the contract test's cases of the names it registers.
TESTS = {
    "vtc/eval/moment.py": ["tests/test_metrics.py"],
    "vtc/eval/qa.py": ["tests/test_metrics.py"],
    "vtc/eval/predict.py": ["tests/test_evaluate_cli.py", "tests/test_loader_robustness.py"],
    "vtc/eval/cli.py": ["tests/test_evaluate_cli.py", "tests/test_cli_errors.py"],
    "vtc/budget.py": ["tests/test_budget.py"],
}
COMPARISON_FLIPS = {
    ast.Lt: (ast.GtE, ast.LtE),
    ast.LtE: (ast.Gt, ast.Lt),
    ast.Gt: (ast.LtE, ast.GtE),
    ast.GtE: (ast.Lt, ast.Gt),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
}
ARITHMETIC_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
SYMBOLS = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
    ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/",
    ast.And: "and", ast.Or: "or",
}  # fmt: skip


@dataclass(frozen=True)
class Mutant:
    """One mutation: the `node`-th node of `ast.walk` over `path`'s tree, changed the `variant`-th way."""

    path: str
    node: int
    variant: int
    line: int
    description: str


def skipped_nodes(tree: ast.AST) -> set[int]:
    """Ids of nodes not worth mutating: annotations, docstrings and the message of a `raise` (equivalent mutants)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        roots: list[ast.AST | None] = []
        if isinstance(node, (ast.arg, ast.AnnAssign)):
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            roots.append(node.returns)
        elif isinstance(node, ast.Raise):
            roots.append(node.exc)
        skipped.update(id(child) for root in roots if root is not None for child in ast.walk(root))
    return skipped


def variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """The mutations of `node`: (description, mutated copy) for each operator that applies to it."""
    out: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.Compare):  # comparison flips and boundary moves
        for position, operator in enumerate(node.ops):
            for replacement in COMPARISON_FLIPS.get(type(operator), ()):
                mutated = copy.deepcopy(node)
                mutated.ops[position] = replacement()
                out.append((f"{SYMBOLS[type(operator)]} -> {SYMBOLS[replacement]}", mutated))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITHMETIC_SWAPS:
        mutated = copy.deepcopy(node)
        mutated.op = ARITHMETIC_SWAPS[type(node.op)]()
        out.append((f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[type(mutated.op)]}", mutated))
    elif isinstance(node, ast.BoolOp):
        mutated = copy.deepcopy(node)
        mutated.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append((f"{SYMBOLS[type(node.op)]} -> {SYMBOLS[type(mutated.op)]}", mutated))
    elif isinstance(node, ast.Constant) and type(node.value) is int:  # constant off by one
        out += [(f"{node.value} -> {node.value + step}", ast.Constant(node.value + step)) for step in (1, -1)]
    elif isinstance(node, ast.Return) and node.value is not None and not is_none(node.value):
        out.append(("return value -> None", ast.Return(ast.Constant(None))))
        if isinstance(node.value, (ast.Compare, ast.BoolOp)) or is_negation(node.value):
            out.append(("return value negated", ast.Return(ast.UnaryOp(ast.Not(), node.value))))
    return out


def is_none(node: ast.AST) -> bool:
    """Whether `node` is the literal None."""
    return isinstance(node, ast.Constant) and node.value is None


def is_negation(node: ast.AST) -> bool:
    """Whether `node` is `not X`."""
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)


def mutants(path: str) -> list[Mutant]:
    """Every mutant of the module at `path` (relative to the repository), in source order."""
    tree = ast.parse((REPO / path).read_text())
    skipped = skipped_nodes(tree)
    found = [
        Mutant(path, index, variant, node.lineno, description)
        for index, node in enumerate(ast.walk(tree))
        if id(node) not in skipped
        for variant, (description, _) in enumerate(variants(node))
    ]
    return sorted(found, key=lambda mutant: (mutant.line, mutant.node, mutant.variant))


def mutated_source(mutant: Mutant) -> str:
    """The module's source with `mutant` applied (unparsed from the AST: comments and layout are lost)."""
    tree = ast.parse((REPO / mutant.path).read_text())
    nodes = list(ast.walk(tree))
    target = nodes[mutant.node]
    replacement = variants(target)[mutant.variant][1]
    for parent in nodes:
        for field, value in ast.iter_fields(parent):
            if value is target:
                setattr(parent, field, replacement)
            elif isinstance(value, list) and any(item is target for item in value):
                value[[item is target for item in value].index(True)] = replacement
    return ast.unparse(ast.fix_missing_locations(tree))


def registered_names(path: str) -> list[str]:
    """The compressor names (presets included) whose class lives in the module at `path`."""
    from vtc.compressors import compressor_class, list_compressors

    module = path.removesuffix(".py").replace("/", ".")
    return [name for name in list_compressors() if compressor_class(name).__module__ == module]


def tests_for(path: str) -> list[str]:
    """The pytest arguments (test files, a `-k` selection) that run against mutants of `path`."""
    if path in TESTS:
        return TESTS[path]
    own = [f"tests/test_{Path(path).stem}.py"] if (REPO / f"tests/test_{Path(path).stem}.py").is_file() else []
    names = registered_names(path) if path.startswith("vtc/compressors/") else []
    if not names:
        return own
    selection = " or ".join(dict.fromkeys([Path(path).stem, *names]))  # own file's tests, contract's for the names
    return [*own, "tests/test_compressor_contract.py", "-k", selection]


def run_tests(copy_root: Path, tests: list[str], timeout: float) -> tuple[str, float]:
    """Run the pytest arguments `tests` (stop at the first failure), the package copy at `copy_root` first on the path.

    Returns ("passed" | "failed" | "timeout", seconds).
    """
    env = {**os.environ, "PYTHONPATH": str(copy_root), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(PYTEST), "-x", "-q", "-n", "0", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    return ("passed" if result.returncode == 0 else "failed"), time.perf_counter() - start


def check_copy_is_imported(copy_root: Path) -> None:
    """Fail unless pytest, launched as `run_tests` launches it, imports `vtc` from the copy (never the tree)."""
    probe = copy_root / "probe" / "test_probe.py"
    probe.parent.mkdir()
    probe.write_text(f"import vtc\n\n\ndef test_copy():\n    assert vtc.__file__.startswith({str(copy_root)!r})\n")
    if run_tests(copy_root, [str(probe)], timeout=120)[0] != "passed":
        raise SystemExit(f"pytest does not import vtc from the copy {copy_root}; refusing to run")


def sample(found: list[Mutant], limit: int | None, seed: int) -> list[Mutant]:
    """At most `limit` mutants drawn with `seed` (all when `limit` is None), in source order."""
    if limit is None or len(found) <= limit:
        return found
    chosen = random.Random(seed).sample(range(len(found)), limit)
    return [found[index] for index in sorted(chosen)]


def run_module(path: str, copy_root: Path, limit: int | None, seed: int, timeout: float) -> Iterator[tuple]:
    """Mutate `path` in the copy, one mutant at a time; yields (mutant, outcome, seconds). Restores the module."""
    tests = tests_for(path)
    target = copy_root / path
    original = target.read_text()
    baseline, seconds = run_tests(copy_root, tests, timeout=600)
    if baseline != "passed":
        raise SystemExit(f"{path}: the unmutated tests {tests} do not pass ({baseline}); fix them first")
    try:
        for mutant in sample(mutants(path), limit, seed):
            target.write_text(mutated_source(mutant))
            outcome, elapsed = run_tests(copy_root, tests, timeout=max(timeout, 3 * seconds))
            yield mutant, outcome, elapsed
    finally:
        target.write_text(original)


def report(results: dict[str, list[tuple]]) -> None:
    """Kill rate per module, then every surviving mutant."""
    print("\nmodule                              mutants  killed  timeout  survived  kill rate")
    for path, rows in results.items():
        killed = sum(outcome == "failed" for _, outcome, _ in rows)
        timed_out = sum(outcome == "timeout" for _, outcome, _ in rows)
        rate = (killed + timed_out) / len(rows) if rows else float("nan")
        print(f"{path:<36}{len(rows):>7}{killed:>8}{timed_out:>9}{len(rows) - killed - timed_out:>10}{rate:>10.0%}")
    print("\nsurviving mutants:")
    for rows in results.values():
        for mutant, outcome, _ in rows:
            if outcome == "passed":
                print(f"  {mutant.path}:{mutant.line}: {mutant.description}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+", help="module paths relative to the repository, e.g. vtc/budget.py")
    parser.add_argument("--max-per-module", type=int, default=None, help="sample this many mutants per module")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant (at least 3x the baseline)")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    args = parser.parse_args()
    if args.list:
        for path in args.modules:
            chosen = sample(mutants(path), args.max_per_module, args.seed)
            print(f"{path}: {len(chosen)} mutants, tests {tests_for(path)}")
            for mutant in chosen:
                print(f"  {mutant.line}: {mutant.description}")
        return
    results: dict[str, list[tuple]] = {}
    with tempfile.TemporaryDirectory(prefix="vtc-mutation-") as folder:
        copy_root = Path(folder)
        shutil.copytree(REPO / "vtc", copy_root / "vtc", ignore=shutil.ignore_patterns("__pycache__"))
        check_copy_is_imported(copy_root)
        for path in args.modules:
            results[path] = []
            for mutant, outcome, elapsed in run_module(path, copy_root, args.max_per_module, args.seed, args.timeout):
                results[path].append((mutant, outcome, elapsed))
                print(f"{mutant.path}:{mutant.line}: {mutant.description}: {outcome} ({elapsed:.1f} s)", flush=True)
    report(results)


if __name__ == "__main__":
    main()
