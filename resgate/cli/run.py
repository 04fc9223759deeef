"""resgate run: reserve, run a command on the reservation, give it back
(README "Running a job on reserved GPUs").

The reservation is a lease: it is renewed every third of its TTL while COMMAND
runs, so if this process dies (even by SIGKILL) the lease runs out within one TTL
and the resources come back on their own. COMMAND runs in its own process group;
SIGINT, SIGTERM and SIGHUP are forwarded to the whole group. No transaction is held
open while COMMAND runs: every renewal opens the database, runs one transaction and
closes it again. The processes are handled in resgate/cli/process.py, the lease and
the job's stopping in resgate/cli/lease.py."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from resgate.cli import params, process
from resgate.cli.lease import Job, Lease
from resgate.cli.options import Cpu, Gpu, GpuIds, Memory
from resgate.cli.options import Pool as PoolOpt
from resgate.cli.options import Tenant as TenantOpt
from resgate.cli.process import JobSignals
from resgate.cli.reservations import checked_request
from resgate.cli.state import error, transact
from resgate.engine.validation import check_name
from resgate.interrupts import GUARD

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo
    from resgate.engine.reservations import ReserveRequest

EX_TEMPFAIL = 75  # sysexits.h: try again later
DEFAULT_TTL = "2m"
DEFAULT_GRACE = "30s"

Command = Annotated[
    list[str],
    typer.Argument(
        help="The command to run, and its arguments (after --).",
        metavar="COMMAND [ARGS]...",
        show_default=False,
    ),
]
TtlOpt = Annotated[
    str,
    typer.Option("--ttl", help="Lease, renewed while COMMAND runs: seconds or a duration (not 0)."),
]
PreemptOpt = Annotated[
    bool, typer.Option("--preempt", help="Evict lower-priority reservations if needed.")
]
GraceOpt = Annotated[
    str, typer.Option("--grace", help="After SIGTERM, wait this long before SIGKILL.")
]


# ---------------------------------------------------------------- the database


def _renew(ctx: typer.Context, reservation_id: str, ttl: int) -> ReservationInfo:
    """Poll the reservation and, if it is still active, renew its lease, in one
    transaction. Returns the reservation (not active: what became of it)."""
    from resgate.engine.queries import reservation_info
    from resgate.engine.reservations import renew
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
        return transact(ctx, lambda tx: reservation_info(tx, reservation_id), write=False)


def _release(ctx: typer.Context, reservation_id: str, attempts: int = 3) -> None:
    from resgate.engine.reservations import unreserve
    from resgate.errors import Busy, DatabaseProblem, Refused

    for attempt in range(attempts):
        try:
            transact(ctx, lambda tx: unreserve(tx, reservation_id), write=True)
            return
        except Refused:
            return  # not active any more (preempted, expired, released): nothing to give back
        except (Busy, DatabaseProblem) as exc:
            if attempt == attempts - 1:
                error(
                    f"could not release reservation {reservation_id}: {exc.message} "
                    "(its lease runs out on its own)"
                )
                return
            time.sleep(0.5)


# ---------------------------------------------------------------- the command


def _environment(info: ReservationInfo) -> dict[str, str]:
    """COMMAND's environment: ours, and what it holds (README "Running a job on reserved GPUs")."""
    env = dict(os.environ)
    env.update(
        RESGATE_RESERVATION_ID=info.id,
        RESGATE_TENANT=info.tenant,
        RESGATE_POOL=info.pool,
        CUDA_VISIBLE_DEVICES=",".join(map(str, info.gpu_ids)),
    )
    return env


def _not_started(name: str, exc: OSError) -> int:
    """The exit status of a COMMAND that could not be executed (README: 127, 126)."""
    if isinstance(exc, FileNotFoundError):
        error(f"command not found: {name}")
        return 127
    error(f"cannot execute {name}: {exc.strerror or exc}")
    return 126


def _supervise(job: Job, lease: Lease, signals: JobSignals) -> None:
    """Until the job is over: renew the lease when it is due, stop the job once it is lost."""
    while True:
        now = time.monotonic()
        if job.poll(now):
            return
        if job.running and lease.due(now):
            reason = lease.renew()
            if reason is not None:
                error(reason)
                job.stop(reason)
            continue
        signals.wait(job.next_wait(lease))


def _run_job(
    ctx: typer.Context,
    info: ReservationInfo,
    ttl: int,
    grace: int,
    command: list[str],
    signals: JobSignals,
    reserved_at: float,
) -> int:
    """Start COMMAND on the reservation and supervise it; its exit status for ours."""
    if signals.pending:
        # Interrupted between the reservation and the start: do not start at all;
        # the caller gives the reservation back.
        error(f"interrupted before {command[0]} started; releasing reservation {info.id}")
        return 128 + signals.pending[0]
    terminal = process.terminal()
    try:
        child = process.start(command, _environment(info), terminal)
    except OSError as exc:
        process.take_terminal_back(terminal)  # the child may have had it before exec failed
        return _not_started(command[0], exc)
    signals.started(child.pid)
    lease = Lease(info.id, ttl, reserved_at, lambda id_, ttl_: _renew(ctx, id_, ttl_))
    job = Job(child.pid, grace, signals.wait)
    try:
        _supervise(job, lease, signals)
    finally:
        process.take_terminal_back(terminal)
        signals.group = None  # before the reap, which frees the group id for reuse
        code = child.returncode = job.reap()
    if job.stopping is not None:
        return EX_TEMPFAIL
    return 128 - code if code < 0 else code


def _reserve_and_run(
    ctx: typer.Context, request: ReserveRequest, ttl: int, grace: int, command: list[str]
) -> int:
    from resgate.engine.reservations import reserve_and_report

    reserved_at = time.monotonic()  # no later than the lease's start
    result = transact(ctx, lambda tx: reserve_and_report(tx, request), write=True)
    signals = JobSignals()
    code = 1
    try:
        signals.install()
        # Signals that came once the reservation had committed, before they were ours.
        signals.pending.extend(GUARD.take_noted())
        if request.preempt and result.preempted:
            from resgate.render.text import victims_summary

            sys.stderr.write(victims_summary(result.preempted) + "\n")
            sys.stderr.flush()
        code = _run_job(ctx, result.reservation, ttl, grace, command, signals, reserved_at)
    finally:
        try:
            if code != EX_TEMPFAIL:
                # Whatever happened in here; a lost lease has nothing left to give back.
                _release(ctx, result.reservation.id)
        finally:
            signals.uninstall()
    return code


def run(
    ctx: typer.Context,
    tenant: TenantOpt,
    pool: PoolOpt,
    command: Command,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    ttl: TtlOpt = DEFAULT_TTL,
    preempt: PreemptOpt = False,
    grace: GraceOpt = DEFAULT_GRACE,
) -> int:
    """Reserve, run COMMAND on the reservation, release it when COMMAND ends.

    COMMAND sees RESGATE_RESERVATION_ID, RESGATE_TENANT, RESGATE_POOL and
    CUDA_VISIBLE_DEVICES. The lease (--ttl) is renewed while it runs; if the
    reservation is preempted or lost, COMMAND's process group gets SIGTERM, then
    SIGKILL after --grace, and resgate exits 75."""
    from resgate.errors import InvalidInput

    check_name("tenant", tenant)
    check_name("pool", pool)
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = params.seconds("--ttl", ttl)
    if not seconds:
        raise InvalidInput(
            "invalid duration for --ttl: '0' (resgate run needs a lease: the reservation must "
            "expire if this process dies)"
        )
    grace_seconds = params.seconds("--grace", grace)
    assert grace_seconds is not None
    request = checked_request(tenant, pool, amounts, ids, seconds, preempt=preempt)
    if not command or not command[0]:
        raise InvalidInput("missing COMMAND to run")
    return _reserve_and_run(ctx, request, seconds, grace_seconds, command)


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_interspersed_args": False})(run)
