"""Sizes a reader can hold, and no private name borrowed across modules (docs/architecture.md).

The import layers and the absence of import cycles are lint-imports' contracts (pyproject.toml), run by
``make lint``; these are the rules it does not check."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "spiders", "items", "exporters", "sandbox")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
SOURCES = sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py"))
#: Where a private name may not be borrowed from the project either.
EVERY_FILE = sorted([*SOURCES, *(REPO / "tests").rglob("*.py"), *(REPO / "bench").glob("*.py")])


def _name(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_a_module_is_at_most_600_lines_and_a_function_60(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines: split it by concept"
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{_name(path)}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


@pytest.mark.parametrize("path", EVERY_FILE, ids=_name)
def test_no_private_name_is_imported_from_another_module(path: Path) -> None:
    borrowed = [f"{node.module}.{alias.name} (line {node.lineno})"
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not borrowed, f"{_name(path)} imports private names: {', '.join(borrowed)}: make them public, or move them"


def test_the_checks_see_every_module() -> None:
    # A package moved or renamed out of PACKAGES would leave its modules unchecked.
    assert len(SOURCES) > 80 and {path.relative_to(REPO).parts[0] for path in SOURCES} == set(PACKAGES)
