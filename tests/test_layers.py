"""The layers of docs/architecture.md, read from the source: every import of every
module (at module level, inside functions and under TYPE_CHECKING alike) must point
down the picture, never up or sideways."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "resgate"
ROOT_MODULES = (
    "resgate.errors",
    "resgate.clock",
    "resgate.limits",
    "resgate.passwords",
    "resgate.config",
)

# module prefix → prefixes it must never import.
FORBIDDEN = {
    "resgate.store": ("resgate.engine", "resgate.cli", "resgate.render"),
    "resgate.engine": ("resgate.cli", "resgate.render", "typer", "click", "tabulate"),
    "resgate.render": ("resgate.store", "resgate.cli", "sqlalchemy", "alembic"),
    **{
        root: ("resgate.store", "resgate.engine", "resgate.cli", "resgate.render")
        for root in ROOT_MODULES
    },
}
# The engine's pure parts: no database, so they can be read and tested alone.
PURE = (
    "resgate.engine.validation",
    "resgate.engine.records",
    "resgate.engine.preemption",
    "resgate.engine.window_victims",
    "resgate.engine.statefile",
    "resgate.engine.import_plan",
)
# What render may take from the rest of resgate.
RENDER_MAY_USE = ("resgate.engine.records", *ROOT_MODULES, "resgate.render")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield module_name(path), ast.parse(path.read_text(encoding="utf-8"))


def imports(name: str, tree: ast.Module) -> Iterator[str]:
    package = name if name.endswith("__init__") else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from resgate.engine import audit` imports resgate.engine.audit.
            yield from (f"{base}.{alias.name}" for alias in node.names)


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_walk_sees_every_layer() -> None:
    names = {name for name, _ in modules()}
    for layer in ("resgate.store.models", "resgate.engine.reservations", "resgate.cli.state"):
        assert layer in names
    found = set(imports("resgate.cli.state", dict(modules())["resgate.cli.state"]))
    assert any(under(n, "resgate.store") for n in found), "the walk misses function imports"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_runs_the_wrong_way(layer: str) -> None:
    wrong = [
        f"{name} imports {target}"
        for name, tree in modules()
        if under(name, layer)
        for target in imports(name, tree)
        if any(under(target, bad) for bad in FORBIDDEN[layer])
    ]
    assert wrong == []


def test_render_reads_only_records() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, tree in modules()
        if under(name, "resgate.render")
        for target in imports(name, tree)
        if under(target, "resgate") and not any(under(target, ok) for ok in RENDER_MAY_USE)
    ]
    assert wrong == []


def test_the_pure_engine_modules_touch_no_database() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, tree in modules()
        if name in PURE
        for target in imports(name, tree)
        if under(target, "sqlalchemy") or under(target, "resgate.store")
    ]
    assert wrong == []


FLAG = re.compile(r"(?<![\w-])--[a-z]")


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def test_the_engine_names_no_command_line_flag() -> None:
    """The CLI says how a field is spelled on the command line (`spelled`, see
    resgate/engine/validation.py); an engine caller is never told about a flag."""
    wrong = []
    for name, tree in modules():
        if not under(name, "resgate.engine"):
            continue
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docs
                and FLAG.search(node.value)
            ):
                wrong.append(f"{name}:{node.lineno}: {node.value!r}")
    assert wrong == []
