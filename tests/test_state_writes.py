"""Only workflows/engine.py writes a `state` column (STYLE habit 2): views, jobs and models fire triggers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("config", "models", "workflows", "security", "gateways", "web", "jobs")
ALLOWED = {ROOT / "workflows" / "engine.py"}
_SQL_STATE_WRITE = re.compile(r"\b(set|insert\s+into)\b.*\bstate\b", re.IGNORECASE | re.DOTALL)
_WRITERS = {"update", "create", "insert", "insert_many", "replace", "get_or_create", "bulk_update"}


def _is_state(node) -> bool:
    return (isinstance(node, ast.Constant) and node.value == "state") or (
        isinstance(node, ast.Attribute) and node.attr == "state"
    )


def state_writes(source: str) -> list[int]:
    """Line numbers where `source` writes a column named state."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Attribute) and element.attr == "state":
                        lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "setattr" and len(node.args) >= 2 and _is_state(node.args[1]):
                lines.append(node.lineno)
            if name in _WRITERS:
                if any(k.arg == "state" for k in node.keywords):
                    lines.append(node.lineno)
                for arg in node.args:
                    if isinstance(arg, ast.Dict) and any(_is_state(k) for k in arg.keys):
                        lines.append(node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _SQL_STATE_WRITE.search(node.value)
            and re.search(r"\b(update|insert)\b", node.value, re.IGNORECASE)
        ):
            lines.append(node.lineno)
    return sorted(set(lines))


def product_files():
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    "snippet",
    [
        "row.state = 'available'",
        "a.state, b = 1, 2",
        "Delivery.update(state='x').execute()",
        "Delivery.update({Delivery.state: 'x'}).execute()",
        "Account.create(username='u', state='active')",
        "setattr(row, 'state', 'x')",
        "db.execute_sql(\"UPDATE delivery SET state = 'x' WHERE id = 1\")",
    ],
)
def test_detector_catches(snippet):
    assert state_writes(snippet) == [1]


def test_detector_ignores_reads_and_field_declarations():
    assert state_writes("state = CharField()\nif row.state == 'x': pass\nq.where(Delivery.state == 'a')") == []


def test_no_module_but_the_engine_writes_state():
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in product_files()
        if path not in ALLOWED and (lines := state_writes(path.read_text()))
    }
    assert offenders == {}, f"state written outside workflows/engine.py: {offenders}"


def test_the_engine_is_where_state_is_written():
    assert state_writes((ROOT / "workflows" / "engine.py").read_text())
