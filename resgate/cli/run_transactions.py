"""The transactions `resgate run` makes around its job (README "Running a job on
reserved GPUs"): renewing the lease, looking at the reservation, waiting for the
jobs of preempted reservations to go, and the end (clear the runner, release).
Each opens the database, runs one transaction and closes it again."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import typer

from resgate.cli import params
from resgate.cli.process import JobSignals
from resgate.cli.state import error, say, transact

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo

VICTIM_MARGIN = 5.0  # seconds past a victim's grace that its job may take to go
VICTIM_POLL = 0.25
DEFAULT_GRACE = "30s"


def renew_lease(ctx: typer.Context, reservation_id: str, ttl: int) -> ReservationInfo:
    """Poll the reservation and, if it is still active, renew its lease, in one
    transaction. Returns the reservation (not active: what became of it)."""
    from resgate.engine.extension import renew
    from resgate.engine.queries import reservation_info
    from resgate.errors import Refused

    def work(tx: Any) -> ReservationInfo:
        info = reservation_info(tx, reservation_id)
        if info.status != "active":
            return info
        return renew(tx, reservation_id, ttl)

    try:
        return transact(ctx, work, write=True)
    except Refused:
        # It stopped being active between our look and the renewal: look again.
        return look_at(ctx, reservation_id)


def look_at(ctx: typer.Context, reservation_id: str) -> ReservationInfo:
    """Look at the reservation in a read transaction: no write lock (README
    "Running a job on reserved GPUs")."""
    from resgate.engine.queries import reservation_info

    return transact(ctx, lambda tx: reservation_info(tx, reservation_id), write=False)


def finish(ctx: typer.Context, reservation_id: str, release: bool, attempts: int = 3) -> None:
    """The job is gone: clear the reservation's runner, and release it if asked."""
    from resgate.engine.release import end_run
    from resgate.errors import Busy, DatabaseProblem

    for attempt in range(attempts):
        try:
            transact(ctx, lambda tx: end_run(tx, reservation_id, release), write=True)
            return
        except (Busy, DatabaseProblem) as exc:
            if attempt == attempts - 1:
                what = "release" if release else "clear the runner of"
                error(
                    f"could not {what} reservation {reservation_id}: {exc.message} "
                    "(its lease runs out on its own)"
                )
                return
            time.sleep(0.5)


def runner_of_this_process(grace: int) -> str:
    """`pid@host+grace`: who runs the job, and how long it gives it after SIGTERM."""
    import socket

    return f"{os.getpid()}@{socket.gethostname()}+{grace}"


def victims_gone(
    ctx: typer.Context, victims: list[str], signals: JobSignals, started: float, quiet: bool
) -> None:
    """An immediate preemption: wait until the victims' jobs are gone (their runner
    cleared) or their grace plus 5 s has passed (README "Running a job on reserved
    GPUs"), printing one line; a signal ends the wait."""
    from resgate.engine.release import runner_parts, runners

    left = transact(ctx, lambda tx: runners(tx, victims), write=False)
    if not left:
        return
    graces = [_grace_of(runner) for runner in left.values()]
    deadline = started + max(graces) + VICTIM_MARGIN
    rid, runner = next(iter(left.items()))
    pid, host, _ = runner_parts(runner)
    say(
        f"resgate: waiting for the job of preempted reservation {rid} (pid {pid} on {host}) "
        "to stop…",
        quiet,
    )
    while left and time.monotonic() < deadline and not signals.pending:
        signals.wait(min(VICTIM_POLL, max(0.0, deadline - time.monotonic())))
        left = transact(ctx, lambda tx: runners(tx, victims), write=False)


def _grace_of(runner: str) -> float:
    from resgate.engine.release import runner_parts

    _, _, grace = runner_parts(runner)
    return float(grace) if grace.isdigit() else float(params.seconds("--grace", DEFAULT_GRACE) or 0)
