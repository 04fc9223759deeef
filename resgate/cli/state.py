"""What every command shares: the global options, opening the database for one
transaction, and writing output. Heavy modules are imported only when a command
actually runs."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from resgate.clock import Clock
    from resgate.render.text import Style
    from resgate.store.database import Tx

T = TypeVar("T")


@dataclass
class State:
    """One invocation's settings: the global options, and what the caller of
    resgate.cli.invoke injects."""

    db: str | None = None
    color: str = "auto"
    # The moment every transaction acts at: None is the system clock (SQLite) or
    # the server's (PostgreSQL).
    clock: Clock | None = None
    freeze: bool = False


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def transact(
    ctx: typer.Context, work: Callable[[Tx], T], *, write: bool, dry_run: bool = False
) -> T:
    """Open the database named by --db / RESGATE_DB and run `work` in one
    transaction; a dry run goes through the same code and rolls back."""
    from resgate.store.database import open_database, resolve_target

    settings = state(ctx)
    if settings.freeze:
        _freeze_what_lives_on()
    if write:
        from resgate.engine.audit import actor

        actor()  # a bad RESGATE_ACTOR is refused (exit 2) before any file is created
    # A dry run creates no database either: a missing file is an empty one.
    database = open_database(resolve_target(settings.db), write=write and not dry_run)
    try:
        return database.run(work, write=write, commit=not dry_run, clock=settings.clock)
    finally:
        database.dispose()


def _freeze_what_lives_on() -> None:
    """Exempt every object made so far from the garbage collector, once.

    By a command's first transaction the imports are done, and what they made
    (SQLAlchemy, the mapped models, Typer) lives as long as the process, so the
    collector need not walk it again (benchmarks/README.md, startup). Only once:
    `watch` and `run` go on, and what they make later must stay collectable."""
    if gc.get_freeze_count() == 0:
        gc.freeze()


def emit(json: bool, dry_run: bool, data: dict[str, Any], text: str) -> None:
    """Print a write command's result; a dry run says so first (README "Preemption")."""
    if json:
        out_json({**data, "dry_run": True} if dry_run else data)
        return
    if dry_run:
        out(DRY_RUN_LINE)
    out(text)


def style(ctx: typer.Context) -> Style:
    from resgate.render.text import Style

    return Style.for_stream(state(ctx).color, sys.stdout)


def error(message: str, urls: Sequence[str] = ()) -> None:
    """The one line a failure gets on stderr, with any password of `urls` hidden."""
    from resgate.passwords import hide

    sys.stderr.write(f"Error: {hide(message, list(urls))}\n")
    sys.stderr.flush()


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def out_json(value: Any) -> None:
    import json  # only commands that print JSON pay for it

    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


DRY_RUN_LINE = "Dry run: nothing was changed"
