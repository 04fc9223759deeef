"""resgate queue | queue cancel: the line of requests waiting for room (README
"Waiting in line")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from resgate.cli.options import Json, Wide
from resgate.cli.permissions import caller
from resgate.cli.state import out, out_json, style, transact
from resgate.engine.validation import check_name

if TYPE_CHECKING:
    from datetime import datetime

    from resgate.engine.records import Ticket
    from resgate.store.database import Tx

app = typer.Typer(
    help="The requests waiting for room, in the order they get in.",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)

OnlyPool = Annotated[
    str | None, typer.Option("--pool", "-p", show_default=False, help="Only this pool.")
]


@app.callback()
def show(ctx: typer.Context, pool: OnlyPool = None, json: Json = False, wide: Wide = False) -> None:
    """The waiting tickets in admission order: position, who, what, how long they
    have waited, the ETA and why they wait."""
    if ctx.invoked_subcommand is not None:
        return
    from resgate.engine.queries import pool_row
    from resgate.engine.queue import line
    from resgate.render import data
    from resgate.render.views import queue_table

    if pool is not None:
        check_name("pool", pool)

    def look(tx: Tx) -> tuple[list[Ticket], datetime]:
        pool_id = None if pool is None else pool_row(tx, pool).id
        return line(tx, pool_id), tx.now

    tickets, now = transact(ctx, look, write=False)
    if json:
        out_json([data.ticket(t) for t in tickets])
    elif not tickets:
        out("Nobody is waiting.")
    else:
        out(queue_table(tickets, now, style(ctx).widened(wide)))


TicketArgument = Annotated[
    str, typer.Argument(metavar="TICKET", help="Ticket id, or its first 4 or more hex digits.")
]


@app.command("cancel")
def cancel(ctx: typer.Context, ticket: TicketArgument, json: Json = False) -> None:
    """Withdraw a waiting ticket (yours, or any of a tenant you are a member of)."""
    from resgate.engine.queue import leave
    from resgate.render import data

    who = caller(ctx)
    ended = transact(ctx, lambda tx: leave(tx, ticket, "cancelled", "withdrawn", who), write=True)
    if json:
        out_json(data.ticket(ended))
    else:
        out(f"Ticket '{ended.id}' {ended.status.replace('_', ' ')}")
