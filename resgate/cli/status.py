"""resgate status | watch"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli import params
from resgate.cli.options import Json, Wide
from resgate.cli.signals import SignalWait
from resgate.cli.state import out, out_json, style, target, transact

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo, StatusReport

CLEAR = "\033[2J\033[H"


def _report(ctx: typer.Context) -> StatusReport:
    from resgate.engine.status import status as engine_status

    return transact(ctx, engine_status, write=False)


def _report_and_holders(ctx: typer.Context) -> tuple[StatusReport, list[ReservationInfo]]:
    """The status view and the active reservations (who holds each pool), read in
    one transaction."""
    from resgate.engine.listing import list_reservations
    from resgate.engine.status import status as engine_status

    return transact(ctx, lambda tx: (engine_status(tx), list_reservations(tx)), write=False)


def status(ctx: typer.Context, json: Json = False, wide: Wide = False) -> None:
    """Counts, per-pool utilisation bars, tenants by priority."""
    report = _report(ctx)
    if json:
        from resgate.render import data

        out_json(data.status(report))
    else:
        from resgate.render.views import status_view

        out(status_view(report, style(ctx).widened(wide)))


def _json_line(ctx: typer.Context) -> None:
    """One draw of `watch --json`: the status object on one line (NDJSON)."""
    import json

    from resgate.render import data

    report = _report(ctx)
    sys.stdout.write(json.dumps(data.status(report), separators=(",", ":"), ensure_ascii=False))
    sys.stdout.write("\n")


def _plain(ctx: typer.Context, wide: bool) -> None:
    """One draw on a pipe or a file: a time line, then the status view, whole."""
    from resgate.render.views import status_view

    report = _report(ctx)
    out(f"--- {datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")
    out(status_view(report, style(ctx).widened(wide)))


def _screen(ctx: typer.Context, every: float, wide: bool) -> None:
    """One draw on a terminal: the screen cleared, a title line, a line per pool,
    all in the terminal's size."""
    from resgate.render.views import watch_title, watch_view

    report, active = _report_and_holders(ctx)
    shown = style(ctx).widened(wide)
    title = watch_title(every, datetime.now(), target(ctx).display, shown)
    sys.stdout.write(CLEAR)
    out(watch_view(report, active, shown, title))


def watch(
    ctx: typer.Context,
    interval: Annotated[str, typer.Option("--interval", help="Seconds between draws (> 0).")] = "3",
    count: Annotated[
        str | None, typer.Option("--count", show_default=False, help="Stop after N draws.")
    ] = None,
    json: Json = False,
    wide: Wide = False,
) -> None:
    """The status view, redrawn from the database every --interval seconds: on a
    terminal in one screen, with --json one line of JSON per draw."""
    every = params.interval(interval)
    draws = params.count(count)
    draw: Callable[[], None]
    if json:
        draw = partial(_json_line, ctx)
    elif sys.stdout.isatty():
        draw = partial(_screen, ctx, every, wide)
    else:
        draw = partial(_plain, ctx, wide)
    # Each signal is only noted, and checked between draws: an exception raised
    # from a handler can land inside SQLAlchemy's connection close, which logs
    # it and goes on (resgate/cli/signals.py).
    stop: list[int] = []
    signals = SignalWait((signal.SIGINT, signal.SIGTERM), stop.append)
    signals.install()
    try:
        _loop(draw, every, draws, stop, signals)
        if not stop:
            return
        if json:
            sys.stderr.write("Watch stopped.\n")
        else:
            out("Watch stopped.")
    finally:
        signals.uninstall()


def _loop(
    draw: Callable[[], None],
    every: float,
    draws: int | None,
    stop: list[int],
    signals: SignalWait,
) -> None:
    """Draw every `every` seconds until `draws` are done or a signal is noted."""
    drawn = 0
    while not stop:
        draw()
        sys.stdout.flush()
        drawn += 1
        if draws is not None and drawn >= draws:
            return
        wake = time.monotonic() + every
        while not stop and (left := wake - time.monotonic()) > 0:
            signals.wait(left)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("watch")(watch)
