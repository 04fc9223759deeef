"""What every command shares: the global options, opening the database for one
transaction, and writing output. Heavy modules are imported only when a command
actually runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from resgate.render.text import Style
    from resgate.store.database import Tx

T = TypeVar("T")


@dataclass
class State:
    db: str | None = None
    color: str = "auto"


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def run(ctx: typer.Context, work: Callable[[Tx], T], *, write: bool) -> T:
    """Open the database named by --db / RESGATE_DB and run `work` in one transaction."""
    from resgate.store.database import open_database, resolve_target

    database = open_database(resolve_target(state(ctx).db), write=write)
    try:
        return database.run(work, write=write)
    finally:
        database.dispose()


def style(ctx: typer.Context) -> Style:
    from resgate.render.text import Style

    return Style.for_stream(state(ctx).color, sys.stdout)


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def out_json(value: Any) -> None:
    import json  # only commands that print JSON pay for it

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON.")
