"""resgate run: reserve, run a command on the reservation, give it back
(README "Running a job on reserved GPUs").

The reservation is a lease: it is renewed every third of its TTL while COMMAND
runs, and looked at (a read, no write lock) at least every 2 s in between, so a
preemption, a release by someone else or a lost lease stops the job within 2 s.
COMMAND is started by a small supervising process (resgate/cli/supervisor.py) that
owns it, its process group and the descendants that left the group, and that stops
them all when this process dies or stops renewing: the job never outlives its
lease. SIGINT, SIGTERM and SIGHUP are forwarded to COMMAND's group through it. With
a time limit (--time-limit, or the pool's maximum TTL), the job gets SIGTERM
--grace before the end and SIGKILL at it, and resgate exits 124. No transaction is
held open while COMMAND runs: every renewal and every look opens the database, runs
one transaction and closes it again (resgate/cli/run_transactions.py). The processes
are handled in resgate/cli/process.py, the lease, the time limit and the job as seen
from here in resgate/cli/lease.py."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from resgate.cli import params, process
from resgate.cli.lease import IDLE_POLL, Job, Lease, TimeLimit
from resgate.cli.options import FLAGS, Cpu, Gpu, GpuIds, Memory, Preempt, Quiet, Timeout, Wait
from resgate.cli.options import OptionalPool as PoolOpt
from resgate.cli.options import OptionalTenant as TenantOpt
from resgate.cli.permissions import caller, default_name
from resgate.cli.process import JobSignals
from resgate.cli.reservations import checked_request
from resgate.cli.run_transactions import (
    DEFAULT_GRACE,
    finish,
    look_at,
    renew_lease,
    runner_of_this_process,
    victims_gone,
)
from resgate.cli.state import error, say, transact
from resgate.interrupts import GUARD

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo, ReserveResult
    from resgate.engine.reservations import ReserveRequest

EX_TEMPFAIL = 75  # sysexits.h: try again later (preempted, released, lease lost)
TIME_LIMIT_EXIT = 124  # a planned end reached, as timeout(1) says it
DEFAULT_TTL = "2m"

Command = Annotated[
    list[str],
    typer.Argument(
        help="The command to run, and its arguments (after --).",
        metavar="COMMAND [ARGS]...",
        show_default=False,
    ),
]
TtlOpt = Annotated[
    str | None,
    typer.Option(
        "--ttl",
        help=f"Lease, renewed while COMMAND runs: a duration, not 0 [default: {DEFAULT_TTL}].",
        show_default=False,
    ),
]
GraceOpt = Annotated[
    str, typer.Option("--grace", help="After SIGTERM, wait this long before SIGKILL.")
]
TimeLimitOpt = Annotated[
    str | None,
    typer.Option(
        "--time-limit",
        help="Stop COMMAND this long after the reservation (SIGTERM --grace before, exit 124).",
        show_default=False,
    ),
]

Outcome = tuple[int, bool]  # run's exit status; whether the reservation is to be released


@dataclass
class Plan:
    """One run: its reservation, lease, grace and time limit (monotonic clock)."""

    info: ReservationInfo
    ttl: int
    grace: int
    reserved_at: float  # no later than the lease's start
    limit: TimeLimit | None  # a planned truncation learnt while running replaces it
    quiet: bool = False  # --quiet: nothing of resgate's own on stderr but Error: lines
    # A booking (run --reservation): it holds its window anyway, so each renewal
    # is only a look at it.
    booking: bool = False
    # The planned stop before any truncation was learnt: back in force after a pardon.
    unpreempted: TimeLimit | None = None

    def __post_init__(self) -> None:
        if self.limit is None or self.limit.code != EX_TEMPFAIL:
            self.unpreempted = self.limit


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


def _keep(job: Job, lease: Lease, plan: Plan, now: float) -> None:
    """While COMMAND runs: stop it at its time limit; renew the lease or look at the
    reservation when due, and stop the job once the lease is lost."""
    limit = plan.limit
    if limit is not None and limit.due(now):
        line = limit.line(lease.reservation_id, limit.why)
        if not limit.announced:
            say(line, plan.quiet)
        job.stop(line, limit.end - now, limit.code)
        return
    if now < lease.next_event:
        return
    end = lease.end
    reason = lease.step(now)
    if reason is not None:
        error(reason)
        job.stop(reason, plan.grace, EX_TEMPFAIL)
        return
    if lease.end != end:
        job.renewed(lease.end)  # the supervisor's deadline
    _learn_truncation(lease, plan, now)


def _learn_truncation(lease: Lease, plan: Plan, now: float) -> None:
    """A planned preemption seen on the reservation (README "Booking ahead"): say so
    at once, and stop the job by the planned-stop rule at that instant (exit 75)."""
    seen = lease.seen
    if seen is None:
        return
    at = seen.preempt_at
    if at is None:
        if plan.limit is not None and plan.limit.code == EX_TEMPFAIL:
            # Pardoned: the preemptor went before its start (README "Booking ahead").
            say(f"resgate: reservation {lease.reservation_id} is no longer preempted", plan.quiet)
            plan.limit = plan.unpreempted
        return
    end = now + (at - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    current = plan.limit
    if current is not None and current.code == EX_TEMPFAIL and abs(current.end - end) <= 1:
        return  # already known
    if plan.unpreempted is not None and plan.unpreempted.end < end:
        plan.limit = plan.unpreempted  # the time limit (or the booking's end) comes first
        return
    limit = TimeLimit(
        end, plan.grace, why=f"preempted by '{seen.preempted_by}'", code=EX_TEMPFAIL, announced=True
    )
    say(limit.line(lease.reservation_id, limit.why), plan.quiet)
    plan.limit = limit


def _next_wait(job: Job, lease: Lease, plan: Plan) -> float:
    """How long to sleep: until a renewal, a look or the time limit is due, a
    second at most; the supervisor's status pipe and signals cut it short."""
    if not job.running:
        return IDLE_POLL
    due = [lease.next_event] if plan.limit is None else [lease.next_event, plan.limit.stop_at]
    return min(min(due) - time.monotonic(), IDLE_POLL)


def _supervise(job: Job, lease: Lease, plan: Plan, signals: JobSignals) -> None:
    """Until the job is over (its supervisor says so)."""
    while not job.poll():
        if job.running:
            _keep(job, lease, plan, time.monotonic())
        signals.wait(_next_wait(job, lease, plan), job.status)


def _outcome(job: Job, command: str) -> Outcome:
    """What the supervisor's report means for `run`'s exit status and the release."""
    if job.failed is not None:
        return _not_started(command, OSError(job.failed, os.strerror(job.failed))), True
    if job.result is None:
        error(f"the job's supervisor (pid {job.supervisor.pid}) died; the job was killed")
        return 1, True
    code, how = job.result
    if job.stop_code is not None:  # we stopped it: a lost lease (75) or the time limit (124)
        return job.stop_code, job.stop_code != EX_TEMPFAIL
    if how == "lapsed":
        # Stopped at the supervisor's own deadline (it said so on stderr). A renewal
        # may have come through late: give back what may still be ours.
        return EX_TEMPFAIL, True
    return code, True


def _start(plan: Plan, command: list[str], terminal: int | None, deadline: float) -> Job:
    """COMMAND, started by its supervisor."""
    spawned = process.spawn_supervisor(
        command,
        _environment(plan.info),
        terminal,
        reservation=plan.info.id,
        ttl=plan.ttl,
        grace=plan.grace,
        deadline=deadline,
    )
    return Job(spawned)


def run_job(ctx: typer.Context, plan: Plan, command: list[str], signals: JobSignals) -> Outcome:
    """Start COMMAND on the reservation and see it through: its exit status for
    ours, and whether the reservation is still to be released."""
    info = plan.info
    if signals.pending:
        # Interrupted between the reservation and the start: do not start at all;
        # the caller gives the reservation back.
        error(f"interrupted before {command[0]} started; releasing reservation {info.id}")
        return 128 + signals.pending[0], True
    lease = Lease(
        info.id,
        plan.ttl,
        plan.reserved_at,
        (lambda id_, _: look_at(ctx, id_))
        if plan.booking
        else (lambda id_, t: renew_lease(ctx, id_, t)),
        check=lambda id_: look_at(ctx, id_),
        until=None if plan.limit is None else plan.limit.end,
    )
    terminal = process.terminal()
    try:
        job = _start(plan, command, terminal, lease.end)
    except OSError as exc:
        error(f"cannot start the job's supervisor ({sys.executable}): {exc.strerror or exc}")
        return 126, True
    signals.started(job.signal)
    try:
        _supervise(job, lease, plan, signals)
    finally:
        signals.stopped()
        job.close()
        process.take_terminal_back(terminal)  # COMMAND may have had it, even if exec failed
    return _outcome(job, command[0])


def time_limit(option: int | None, pool_max: int | None) -> int | None:
    """`run`'s time limit in seconds (README "Pool policies"), or None: --time-limit, or the
    pool's maximum reservation length when there is one and it is shorter."""
    return min((limit for limit in (option, pool_max) if limit), default=None)


def _pool_max_ttl(tx: Any, pool: str) -> int | None:
    """The pool's maximum reservation length (README "Pool policies"), which bounds
    `run`'s time limit; read in the reservation's transaction."""
    from resgate.engine.queries import pool_row

    max_ttl: int | None = pool_row(tx, pool).max_ttl
    return max_ttl


def _reserve_and_run(
    ctx: typer.Context,
    request: ReserveRequest,
    settings: tuple[int, int, int | None],
    command: list[str],
    quiet: bool = False,
    patience: tuple[bool, int | None] = (False, None),
) -> int:
    """Reserve (or, with `patience` = (--wait, --timeout), wait in line), run
    COMMAND, release: `settings` are the lease, the grace and --time-limit, in
    seconds."""
    from resgate.engine.reservations import reserve_and_report
    from resgate.errors import InsufficientResources

    def work(tx: Any) -> tuple[ReserveResult, int | None]:
        result = reserve_and_report(tx, request, FLAGS)
        return result, _pool_max_ttl(tx, result.reservation.pool)

    ttl, grace, option = settings
    request = replace(request, runner=runner_of_this_process(grace))
    reserved_at = time.monotonic()  # no later than the lease's start
    try:
        result, pool_max = transact(ctx, work, write=True)
    except InsufficientResources as refusal:
        if not patience[0]:
            raise
        result, pool_max, reserved_at = _wait_in_line(ctx, request, refusal, patience[1], quiet)
    limit = time_limit(option, pool_max)
    plan = Plan(
        result.reservation,
        ttl,
        grace,
        reserved_at,
        None if limit is None else TimeLimit(reserved_at + limit, grace),
        quiet,
    )
    signals = JobSignals()
    code, release = 1, True
    try:
        signals.install()
        # Signals that came once the reservation had committed, before they were ours.
        signals.pending.extend(GUARD.take_noted())
        if request.preempt and result.preempted:
            from resgate.render.tables import victims_summary

            say(victims_summary(result.preempted), quiet)
            victims = [v.reservation.id for v in result.preempted]
            victims_gone(ctx, victims, signals, reserved_at, quiet)
        code, release = run_job(ctx, plan, command, signals)
    finally:
        try:
            # Whatever happened in here; a lost lease has nothing left to give back.
            finish(ctx, result.reservation.id, release)
        finally:
            signals.uninstall()
    return code


def _wait_in_line(
    ctx: typer.Context,
    request: ReserveRequest,
    refusal: Exception,
    timeout: int | None,
    quiet: bool,
) -> tuple[ReserveResult, int | None, float]:
    """`run --wait`: the lease the line gave, the pool's maximum, and a monotonic
    instant no later than the lease's start (another write may have admitted it)."""
    from resgate.cli.waiting import wait_in_line
    from resgate.errors import InsufficientResources

    assert isinstance(refusal, InsufficientResources)
    result = wait_in_line(ctx, request, refusal, timeout, quiet)
    info = result.reservation
    since = max(0.0, (result.now - info.created_at).total_seconds())
    pool_max = transact(ctx, lambda tx: _pool_max_ttl(tx, info.pool), write=False)
    return result, pool_max, time.monotonic() - since


def _positive(option: str, value: str | None, why: str) -> int | None:
    """A duration that may be absent but not 0."""
    from resgate.errors import InvalidInput

    seconds = params.seconds(option, value)
    if seconds == 0:
        raise InvalidInput(f"invalid duration for {option}: {params.shown(value or '')} ({why})")
    return seconds


def run(
    ctx: typer.Context,
    command: Command,
    tenant: TenantOpt = None,
    pool: PoolOpt = None,
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: GpuIds = None,
    ttl: TtlOpt = None,
    preempt: Preempt = False,
    grace: GraceOpt = DEFAULT_GRACE,
    limit: TimeLimitOpt = None,
    wait: Wait = False,
    timeout: Timeout = None,
    reservation: Annotated[
        str | None,
        typer.Option(
            "--reservation",
            metavar="ID",
            show_default=False,
            help="Run on this booking: wait for its start, stop at its end.",
        ),
    ] = None,
    quiet: Quiet = False,
) -> int:
    """Reserve, run COMMAND on the reservation, release it when COMMAND ends.

    COMMAND sees RESGATE_RESERVATION_ID, RESGATE_TENANT, RESGATE_POOL and
    CUDA_VISIBLE_DEVICES. The lease (--ttl) is renewed while it runs; if the
    reservation is preempted or lost, COMMAND and what it started get SIGTERM,
    then SIGKILL after --grace, and resgate exits 75; should resgate itself die,
    they get SIGTERM at once and SIGKILL after --grace or half the TTL, whichever
    is shorter. At the time limit: SIGTERM --grace before it, SIGKILL at it, exit 124."""
    # Long only for its options and their checks: the work is in _reserve_and_run
    # and run_booking.
    from resgate.errors import InvalidInput

    if not command or not command[0]:
        raise InvalidInput("missing COMMAND to run")
    if reservation is not None:
        from resgate.cli.run_booking import run_booking

        given = {"--tenant": tenant, "--pool": pool, "--cpu": cpu, "--memory": memory}
        given |= {"--gpu": gpu, "--gpu-ids": gpu_ids, "--ttl": ttl, "--time-limit": limit}
        given |= {"--preempt": "yes" if preempt else None, "--wait": "yes" if wait else None}
        extra = [flag for flag, value in given.items() if value is not None]
        if extra:
            raise InvalidInput(
                f"--reservation runs on the booking as it is: drop {', '.join(extra)}"
            )
        return run_booking(ctx, reservation, params.seconds("--grace", grace) or 0, command, quiet)
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = _positive(
        "--ttl",
        ttl or DEFAULT_TTL,
        "resgate run needs a lease: the reservation must expire if this process dies",
    )
    grace_seconds = params.seconds("--grace", grace)
    limit_seconds = _positive("--time-limit", limit, "a time limit above 0")
    assert seconds is not None and grace_seconds is not None
    request = checked_request(
        default_name(ctx, tenant, "tenant"),
        default_name(ctx, pool, "pool"),
        amounts,
        ids,
        seconds,
        preempt=preempt,
        caller=caller(ctx),
        lease=True,
    )
    if timeout is not None and not wait:
        raise InvalidInput("--timeout goes with --wait")
    patience = (wait, None if timeout is None else params.seconds("--timeout", timeout))
    settings = (seconds, grace_seconds, limit_seconds)
    return _reserve_and_run(ctx, request, settings, command, quiet, patience)


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_interspersed_args": False})(run)
