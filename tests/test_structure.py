"""Size limits of progress_sdk/ and simulator/ (#20): modules of one concept stay small.

No module over 500 lines, no class over 300, no function (method, nested function) over
60, except the measured fast paths listed below, each held to the full rules by a
differential test.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("progress_sdk", "simulator")
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60

# Long on purpose: a measured fast path (docs/benchmarks.md) whose differential test
# checks it against the full rules. Value: that test, as pytest names it.
FAST_PATHS = {
    # 134 lines: accepts a valid event in one pass over its dict, or returns None.
    "progress_sdk/_fast_accept.py:fast_accept":
        "tests/test_events.py::test_fast_path_only_accepts_what_the_full_checks_accept",
}


def _modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@functools.cache
def _trees() -> tuple[tuple[str, ast.Module], ...]:
    return tuple((_name(p), ast.parse(p.read_text(encoding="utf-8"))) for p in _modules())


def _defs(kinds: tuple[type[ast.AST], ...]) -> dict[str, int]:
    """``module:name`` -> lines of every def of those kinds, from ``def``/``class`` to its
    end (a click command's option decorators are not its body)."""
    found: dict[str, int] = {}
    for module, tree in _trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (
                isinstance(node, kinds)
            ):
                key = f"{module}:{node.name}"
                assert node.end_lineno is not None
                found[key] = max(found.get(key, 0), node.end_lineno - node.lineno + 1)
    return found


def test_no_module_is_over_500_lines() -> None:
    """Every module of progress_sdk/ and simulator/ has at most 500 lines."""
    sizes = {_name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in _modules()}
    over = {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_no_class_is_over_300_lines() -> None:
    """Every class has at most 300 lines."""
    over = {
        n: s for n, s in _defs((ast.ClassDef,)).items()
        if s > MAX_CLASS_LINES
    }
    assert not over, f"classes over {MAX_CLASS_LINES} lines: {over}"


def test_no_function_is_over_60_lines_but_the_measured_fast_paths() -> None:
    """Every function and method has at most 60 lines, the listed fast paths aside."""
    functions = _defs((ast.FunctionDef, ast.AsyncFunctionDef))
    over = {n: s for n, s in functions.items() if s > MAX_FUNCTION_LINES and n not in FAST_PATHS}
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines: {over}"


@pytest.mark.parametrize("fast_path", sorted(FAST_PATHS))
def test_each_fast_path_is_still_long_and_has_its_differential_test(fast_path: str) -> None:
    """A listed fast path still needs its exception, and the test it names exists."""
    assert _defs((ast.FunctionDef,)).get(fast_path, 0) > MAX_FUNCTION_LINES, (
        f"{fast_path} is gone or short now: take it off FAST_PATHS"
    )
    test_file, test_name = FAST_PATHS[fast_path].split("::")
    tree = ast.parse((ROOT / test_file).read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.FunctionDef) and n.name == test_name for n in tree.body)
