"""Public functions and classes say what they take and give (shapes, units, errors raised).

Checked for the packages whose docstrings were written to that rule; Protocol stubs (a body of
`...`) and dunder methods are exempt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIDECAR = Path(__file__).resolve().parents[2] / "sidecar"
DOCUMENTED = ("core", "policy", "cli", "devtools", "envoy", "features/breaker", "features/drain",
              "features/observability", "forward/attempts.py", "forward/breaker.py", "forward/relay.py",
              "forward/sse.py", "forward/deadlines.py", "forward/failures.py", "features/guardrails/webhook")


def files() -> list[Path]:
    found: list[Path] = []
    for name in DOCUMENTED:
        path = SIDECAR / name
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def _stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = node.body
    return (len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and body[0].value.value is Ellipsis)


def undocumented(path: Path) -> list[str]:
    missing: list[str] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            if node.name.startswith("_"):
                continue
            if isinstance(node, ast.ClassDef):
                if ast.get_docstring(node) is None:
                    missing.append(f"{prefix}{node.name}")
                visit(node.body, f"{prefix}{node.name}.")
            elif ast.get_docstring(node) is None and not _stub(node):
                missing.append(f"{prefix}{node.name}")

    visit(ast.parse(path.read_text(encoding="utf-8")).body, "")
    return missing


@pytest.mark.parametrize("path", files(), ids=lambda p: str(p.relative_to(SIDECAR)))
def test_public_names_have_docstrings(path: Path) -> None:
    assert undocumented(path) == []


def test_the_check_sees_a_missing_docstring(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('class P:\n    """Doc."""\n    def stub(self) -> None: ...\n    def m(self) -> None:\n'
                      '        pass\n\ndef _private() -> None:\n    pass\n\nasync def f() -> None:\n    pass\n')
    assert undocumented(module) == ["P.m", "f"]
