"""Each wire-level thing is defined once in src/wsguard and shared by server, transport and client.

The leak harness (wsguard.leaktest) is left out on purpose: it checks a server from outside, so it
keeps its own expectations rather than borrowing the implementation's.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "wsguard"
CHECKED = [path for path in SRC.rglob("*.py") if "leaktest" not in path.relative_to(SRC).parts]
CLOSE_CODES = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 4001, 4002, 4003, 4008, 4029, 4401}


def _module_level_definitions(path: Path) -> list[tuple[str, ast.AST]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, ast.AST]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            found.append((node.name, node))
        elif isinstance(node, ast.Assign):
            found.extend((t.id, node.value) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found.append((node.target.id, node.value))
    return found


DEFINITIONS = {path: _module_level_definitions(path) for path in CHECKED}


@pytest.mark.parametrize(
    "name", ["ThreadKey", "Close", "Since", "Welcome", "Event", "Subscribed", "parse_frame", "CLIENT_RULES"]
)
def test_defined_once(name: str) -> None:
    counts = Counter(
        str(path.relative_to(SRC))
        for path, found in DEFINITIONS.items()
        for defined, _ in found
        if defined == name
    )
    assert sum(counts.values()) == 1, f"{name} defined in {dict(counts)}"


def _is_close_code(value: ast.AST) -> bool:
    if isinstance(value, ast.Tuple) and value.elts:
        value = value.elts[0]
    return isinstance(value, ast.Constant) and type(value.value) is int and value.value in CLOSE_CODES


def test_close_codes_are_constants_of_wsguard_close_only() -> None:
    elsewhere = [
        f"{path.relative_to(SRC)}: {name}"
        for path, found in DEFINITIONS.items()
        if path != SRC / "close.py"
        for name, value in found
        if name.isupper() and _is_close_code(value)
    ]
    assert elsewhere == []
