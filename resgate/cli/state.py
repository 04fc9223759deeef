"""What every command shares: the global options, opening the database for one
transaction, and writing output. Heavy modules are imported only when a command
actually runs."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import typer

if TYPE_CHECKING:
    from resgate.clock import Clock
    from resgate.config import Setting
    from resgate.render.text import Style
    from resgate.store.database import Tx
    from resgate.store.target import Target

T = TypeVar("T")


@dataclass
class State:
    """One invocation's settings: the global options, and what the caller of
    resgate.cli.invoke injects."""

    db: str | None = None
    color: str | None = None  # None: --color not given
    # The moment every transaction acts at: None is the system clock (SQLite) or
    # the server's (PostgreSQL).
    clock: Clock | None = None
    freeze: bool = False
    # The database URLs whose passwords every message hides (cli.invoke's list: a
    # configuration file's URL joins it once read).
    urls: list[str] = field(default_factory=list)
    settings: Settings | None = None  # read on first use, by settings()


@dataclass(frozen=True)
class Settings:
    """Every effective setting, each with its source (README "Configuration
    files"): option > environment > user file > system file > default."""

    db: Setting  # value None: the default path
    tenant: Setting
    pool: Setting
    busy_timeout: Setting
    color: Setting
    admins: Setting


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def settings(ctx: typer.Context) -> Settings:
    """The effective settings, the configuration files read once, when a command
    first needs one (never for --help, version or completion). A bad file, or a
    bad value in one: InvalidInput (exit 2), before any database is opened."""
    current = state(ctx)
    if current.settings is None:
        current.settings = _resolve(current)
        db = current.settings.db.value
        if isinstance(db, str) and "://" in db:
            current.urls.append(db)
    return current.settings


def _resolve(current: State) -> Settings:
    from resgate.config import Setting, load

    files = load()

    def pick(key: str, option: str | None, variable: str) -> Setting:
        if option is not None:
            return Setting(option, "option")
        if os.environ.get(variable):  # set and empty is unset, as RESGATE_DB always was
            return Setting(os.environ[variable], "env")
        return files.get(key) or Setting(None, "default")

    return Settings(
        db=pick("db", current.db, "RESGATE_DB"),
        tenant=pick("tenant", None, "RESGATE_TENANT"),
        pool=pick("pool", None, "RESGATE_POOL"),
        busy_timeout=_busy_timeout(files.get("busy_timeout")),
        color=_color(current.color, files.get("color")),
        admins=files.get("admins") or Setting(None, "default"),
    )


def _busy_timeout(configured: Setting | None) -> Setting:
    """RESGATE_BUSY_TIMEOUT, else a file's (the same limits, its path in the
    message), else the default."""
    from resgate.config import Setting
    from resgate.store.target import DEFAULT_BUSY_TIMEOUT, busy_timeout, checked_busy_timeout

    if os.environ.get("RESGATE_BUSY_TIMEOUT"):
        return Setting(busy_timeout(), "env")
    if configured is None:
        return Setting(DEFAULT_BUSY_TIMEOUT, "default")
    value = configured.value
    assert isinstance(value, int | float)
    shown = repr(value)
    checked = checked_busy_timeout(float(value), f"{configured.source}: busy_timeout", shown)
    return Setting(checked, configured.source)


def _color(option: str | None, configured: Setting | None) -> Setting:
    """--color, else FORCE_COLOR (always) or NO_COLOR (never), else a file's,
    else auto (colour on a terminal)."""
    from resgate.config import Setting
    from resgate.render.text import forced_colour

    if option is not None:
        return Setting(option, "option")
    if forced_colour():
        return Setting("always", "env")
    if "NO_COLOR" in os.environ:
        return Setting("never", "env")
    return configured or Setting("auto", "default")


def target(ctx: typer.Context) -> Target:
    """The database the settings name, with a configuration file's busy timeout."""
    from resgate.store.target import resolve_target

    chosen = settings(ctx)
    db, busy = chosen.db.value, chosen.busy_timeout.value  # busy: already the effective one
    assert (db is None or isinstance(db, str)) and isinstance(busy, int | float)
    from dataclasses import replace

    from resgate.cli.permissions import administers

    return replace(resolve_target(db, busy=float(busy)), may_upgrade=administers(ctx))


def transact(
    ctx: typer.Context, work: Callable[[Tx], T], *, write: bool, dry_run: bool = False
) -> T:
    """Open the database the settings name (--db, RESGATE_DB, a configuration file)
    and run `work` in one transaction; a dry run goes through the same code and
    rolls back."""
    from resgate.store.database import open_database

    current = state(ctx)
    if current.freeze:
        _freeze_what_lives_on()
    where = target(ctx)  # a bad configuration file: exit 2, nothing opened
    if write:
        from resgate.engine.audit import actor

        actor()  # a bad RESGATE_ACTOR is refused (exit 2) before any file is created
    # A dry run creates no database either: a missing file is an empty one.
    database = open_database(where, write=write and not dry_run, on_wait=lock_notice())
    try:
        return database.run(work, write=write, commit=not dry_run, clock=current.clock)
    finally:
        database.dispose()


WAITING_LINE = "waiting for the database lock (another resgate command is writing)…"


def lock_notice() -> Callable[[], None] | None:
    """What a writer calls once it has waited a second for the lock: on a terminal,
    one line on stderr (README "Sharing one machine"); elsewhere nothing, so
    scripts and logs see only the outcome."""
    if not sys.stderr.isatty():
        return None

    def notice() -> None:
        sys.stderr.write(WAITING_LINE + "\n")
        sys.stderr.flush()

    return notice


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

    color = settings(ctx).color.value
    assert isinstance(color, str)
    return Style.for_stream(color, sys.stdout)


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


def say(line: str, quiet: bool) -> None:
    """One line of resgate's own on stderr (not an error), unless --quiet."""
    if not quiet:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
