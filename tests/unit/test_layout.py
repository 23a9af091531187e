"""The package's shape: no import cycles, a pure core, a small root, and imports that flow one way.

Imports are read with `ast` from every module of sidecar/, wherever they stand: at module level,
under `if TYPE_CHECKING:` and inside functions all count (a type-only import is still a cycle
for a reader, and a function-level one is one at run time).

The order, lowest first (a package may import from its own layer and the layers below it):

    core                      types, errors, chat model, tokens, routes, limits, guardrail entities:
                              stdlib + orjson only
    settings, responses       the sidecar's settings; the one JSON error response (aiohttp)
    providers, envoy          provider translation; the Envoy config renderer
    policy                    reader, loader, store, watcher, one schema module per section, the
                              guardrail objects and their compiled patterns (`regex`)
    callout                   the ext_authz hop
    forward                   the routed hop, the deployments' circuit breakers
    features                  guardrails, quotas, breaker, drain, observability (stages, finishers)
    app                       the app factory
    cli, devtools, __main__   commands; demo and faulty providers, launcher

`appkeys` (typed `web.AppKey`s) and `extensions` (the hook lists features append to) are the
app's seams: any hop may read them and they name the types they key, so they stand outside the
order; in exchange they hold no logic (no functions), which this file checks too.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

SIDECAR = Path(__file__).resolve().parents[2] / "sidecar"

LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"settings", "responses"}),
    frozenset({"providers", "envoy"}),
    frozenset({"policy"}),
    frozenset({"callout"}),
    frozenset({"forward"}),
    frozenset({"features"}),
    frozenset({"app"}),
    frozenset({"cli", "devtools", "__main__"}),
)
SEAMS = frozenset({"appkeys", "extensions"})

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SIDECAR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(SIDECAR.rglob("*.py"))}


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module name an import statement in `path` names, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the sidecar modules it imports (only names that are modules of the package)."""
    known = modules()
    return {module: frozenset(name for name in _imported(module, path) if name in known and name != module)
            for module, path in known.items()}


def external_imports(module: str) -> set[str]:
    return {name.split(".")[0] for name in _imported(module, modules()[module]) if not name.startswith("sidecar")}


def group(module: str) -> str:
    """`sidecar.forward.relay` -> `forward`; a root module is its own group (`sidecar.app` -> `app`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer(module: str) -> int | None:
    name = group(module)
    return next((index for index, members in enumerate(LAYERS) if name in members), None)


def upward_imports(edges: Mapping[str, frozenset[str]]) -> set[tuple[str, str]]:
    """(module, target) for each import of a module from a layer above its own."""
    found = set()
    for module, imported in edges.items():
        for target in imported:
            low, high = layer(target), layer(module)
            if low is not None and high is not None and low > high:
                found.add((module, target))
    return found


def cycles(edges: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read() -> None:
    edges = graph()
    assert "sidecar.core.errors" in edges["sidecar.forward.relay"]
    # Under TYPE_CHECKING, relative, and `from package import module` all count.
    assert "sidecar.forward.exchange" in edges["sidecar.features.quotas.settlement"]
    assert "sidecar.features.guardrails.numeric" in edges["sidecar.features.guardrails.pii"]
    assert "sidecar.features.breaker.stage" in edges["sidecar.app"]


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_a_cycle_would_be_found() -> None:
    edges = dict(graph())
    edges["sidecar.core.errors"] = edges["sidecar.core.errors"] | {"sidecar.forward.relay"}
    assert any({"sidecar.core.errors", "sidecar.forward.relay"} <= set(c) for c in cycles(edges))


def test_core_needs_nothing_but_the_standard_library_and_orjson() -> None:
    allowed = set(sys.stdlib_module_names) | {"orjson", "__future__"}
    for module in modules():
        if group(module) != "core":
            continue
        assert external_imports(module) <= allowed, (module, external_imports(module) - allowed)
        outside = {target for target in graph()[module] if group(target) != "core" and target != "sidecar"}
        assert outside == set(), (module, outside)


def test_at_most_ten_modules_at_the_package_root() -> None:
    root = sorted(path.name for path in SIDECAR.glob("*.py"))
    assert len(root) <= 10, root


def test_every_package_and_root_module_has_a_place_in_the_order() -> None:
    placed = set().union(*LAYERS) | SEAMS | {"__init__"}
    assert {group(module) for module in modules()} <= placed


def test_imports_flow_one_way() -> None:
    assert sorted(upward_imports(graph())) == []


def test_an_upward_import_would_be_found() -> None:
    edges = dict(graph())
    edges["sidecar.policy.snapshot"] = edges["sidecar.policy.snapshot"] | {"sidecar.features.quotas.service"}
    assert upward_imports(edges) == {("sidecar.policy.snapshot", "sidecar.features.quotas.service")}


def test_seams_import_no_commands_and_hold_no_logic() -> None:
    for module, path in modules().items():
        if group(module) not in SEAMS:
            continue
        assert {group(target) for target in graph()[module]} & {"app", "cli", "devtools"} == set(), module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        assert functions == [], (module, functions)
