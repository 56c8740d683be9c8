"""The package's shape, pinned: what docs/architecture.md promises a maintainer.

Sizes (modules, functions, classes) are limits that keep every piece readable in one go;
the import rules keep the core sans-I/O and the layers one-way. A change that breaks one
of these should change the design on purpose, and this file with it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from radon.complexity import cc_visit

PACKAGE = Path(__file__).parents[1] / "cqrs_sso_middleware"
MAX_MODULE_LINES = 400
MAX_COMPLEXITY = 15
MAX_METHODS = 25


def modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def relative(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as an absolute dotted name."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = f"{base}.{node.module}" if base and node.module else (node.module or base)
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def test_no_module_is_over_400_lines() -> None:
    long = {relative(p): n for p in modules() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}, f"split these by concern: {long}"


def test_no_function_is_above_cyclomatic_complexity_15() -> None:
    complex_ = [
        f"{relative(path)}:{block.lineno} {block.name} ({block.complexity})"
        for path in modules()
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.letter in ("F", "M") and block.complexity > MAX_COMPLEXITY
    ]
    assert complex_ == []


def test_no_class_has_more_than_25_methods_counting_those_it_inherits_from_the_package() -> None:
    classes: dict[str, tuple[str, set[str], list[str]]] = {}
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                classes[node.name] = (relative(path), methods, bases)

    def all_methods(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name not in classes or name in seen:
            return set()
        _, methods, bases = classes[name]
        return methods.union(*(all_methods(base, seen | {name}) for base in bases))

    large = {f"{where}:{name}": len(all_methods(name)) for name, (where, _, _) in classes.items()}
    assert {k: v for k, v in large.items() if v > MAX_METHODS} == {}


@pytest.mark.parametrize(
    "layer,forbidden",
    [
        pytest.param(
            "core",
            (
                "drivers",
                "proxy",
                "provider",
                "cli",
                "runtime",
                "stores",
                "lookups",
                "pages",
                "django",
                "demo",
                # Handlers get small configuration objects from the composition root
                # (composition.py), never the whole Settings.
                "settings",
                "composition",
            ),
            id="core-is-sans-io",
        ),
        pytest.param(
            "settings", ("drivers", "proxy", "runtime", "stores", "lookups"), id="settings-build-nothing"
        ),
        pytest.param("drivers/wsgi.py", ("drivers.asgi",), id="wsgi-driver-alone"),
        pytest.param("drivers/asgi.py", ("drivers.wsgi",), id="asgi-driver-alone"),
    ],
)
def test_layers_import_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    paths = [PACKAGE / layer] if layer.endswith(".py") else sorted((PACKAGE / layer).rglob("*.py"))
    names = tuple(f"cqrs_sso_middleware.{f}" for f in forbidden)
    found = {relative(path): sorted(i for i in imports_of(path) if i.startswith(names)) for path in paths}
    assert {k: v for k, v in found.items() if v} == {}


def _import_graph(layers: bool) -> dict[str, set[str]]:
    """Who imports whom inside the package (imports under ``TYPE_CHECKING`` and inside
    functions included: a loop there is a loop in the design). ``layers``: modules folded
    into their top-level module or sub-package (``core``, ``settings``, ``runtime``…)."""
    names: dict[str, Path] = {}
    for path in modules():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def node(name: str) -> str:
        parts = name.split(".")
        return parts[1] if layers and len(parts) > 1 else name

    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        if layers and name == "cqrs_sso_middleware":
            continue  # the package's own face re-exports the layers; nothing imports it back
        found = {node(i) for i in imports_of(path) if i in names and i != "cqrs_sso_middleware"}
        graph.setdefault(node(name), set()).update(found - {node(name)})
    return graph


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts of ``graph`` with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while (w := stack.pop()) != v:
                part.append(w)
            if part:
                found.append(sorted([v, *part]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("layers", [False, True], ids=["modules", "layers"])
def test_there_is_no_import_loop(layers: bool) -> None:
    """Neither between modules nor between layers: settings read core value types and the
    core never reads settings; metrics and the runtime meet in ``observers``."""
    assert _loops(_import_graph(layers)) == []


def test_the_loop_finder_finds_a_loop() -> None:
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_opens_no_socket_and_imports_no_framework() -> None:
    io = ("socket", "httpx", "starlette", "werkzeug", "redis", "sqlalchemy", "asyncio", "uvicorn", "jinja2")
    found = {
        relative(path): sorted(i for i in imports_of(path) if i.split(".")[0] in io)
        for path in sorted((PACKAGE / "core").rglob("*.py"))
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_settings_build_no_resources() -> None:
    """Settings read and validate; engines, clients and key files are the runtime's."""
    resources = ("httpx", "sqlalchemy", "redis", "cryptography", "joserfc")
    found = {
        relative(path): sorted(i for i in imports_of(path) if i.split(".")[0] in resources)
        for path in sorted((PACKAGE / "settings").rglob("*.py"))
    }
    assert {k: v for k, v in found.items() if v} == {}


def test_the_provider_shares_nothing_with_the_middleware() -> None:
    """It plays the other side of the protocol: reusing our validation would hide a bug on
    both sides at once."""
    found = {
        relative(path): sorted(i for i in imports_of(path) if i.startswith("cqrs_sso_middleware.")
                               and not i.startswith("cqrs_sso_middleware.provider"))
        for path in sorted((PACKAGE / "provider").rglob("*.py"))
    }  # fmt: skip
    assert {k: v for k, v in found.items() if v} == {}


def test_nothing_outside_the_core_and_the_drivers_reaches_for_a_flow() -> None:
    outside = [
        p
        for p in modules()
        if not relative(p).startswith(("cqrs_sso_middleware/core", "cqrs_sso_middleware/drivers"))
    ]
    reaching = [relative(p) for p in outside if re.search(r"\.flow\b", p.read_text(encoding="utf-8"))]
    assert reaching == []


def test_the_interpreter_handles_every_effect_of_the_closed_union() -> None:
    """A new effect must be added to the match, or the package does not type-check (mypy
    runs in `make test`); this pins the union the match is checked against."""
    from typing import get_args

    from cqrs_sso_middleware.core import protocol

    assert {t.__name__ for t in get_args(protocol.Effect)} == {
        "HttpCall",
        "ReadForm",
        "LookUpAccount",
        "StoreGet",
        "StorePut",
        "StoreDelete",
        "StoreClaim",
        "StoreMembers",
        "StorePing",
    }
