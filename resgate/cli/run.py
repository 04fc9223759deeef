"""resgate run: reserve, run a command on the reservation, give it back (README "GPU devices").

The reservation is a lease: it is renewed every third of its TTL while COMMAND
runs, so if this process dies (even by SIGKILL) the lease runs out within one TTL
and the resources come back on their own. COMMAND runs in its own process group;
SIGINT, SIGTERM and SIGHUP are forwarded to the whole group. No transaction is held
open while COMMAND runs: every renewal opens the database, runs one transaction and
closes it again."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from resgate.cli import params
from resgate.cli.reservations import Cpu, Gpu, Memory, PoolOpt, TenantOpt
from resgate.cli.signals import SignalWait
from resgate.cli.state import transact
from resgate.interrupts import GUARD

if TYPE_CHECKING:
    from resgate.engine.records import ReservationInfo

EX_TEMPFAIL = 75  # sysexits.h: try again later
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_TTL = "2m"
DEFAULT_GRACE = "30s"
RETRY_PAUSE = 1.0  # seconds between attempts at a renewal that failed for a passing reason


def _error(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- signals


class _Signals(SignalWait):
    """The forwarded signals and SIGCHLD (only to wake `wait`): before COMMAND
    starts they are kept in `pending`, after that they go to its process group."""

    def __init__(self) -> None:
        super().__init__((*FORWARDED, signal.SIGCHLD), self._forward)
        self.group: int | None = None  # COMMAND's process group, once started
        self.pending: list[int] = []  # received before it started

    def _forward(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return
        if self.group is None:
            self.pending.append(signum)
        else:
            _killpg(self.group, signum)


def _killpg(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signum)


@contextlib.contextmanager
def _ttou_ignored() -> Iterator[None]:
    # tcsetpgrp from a background process group would stop us with SIGTTOU.
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTTOU, old)


def _terminal() -> int | None:
    """stdin's fd when it is a terminal whose foreground group is ours, else None:
    then COMMAND's group becomes the foreground group, so Ctrl-C reaches it once."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp():
            return 0
    except OSError:
        pass
    return None


def _take_terminal_back(terminal: int | None) -> None:
    if terminal is not None:
        with _ttou_ignored(), contextlib.suppress(OSError):
            os.tcsetpgrp(terminal, os.getpgrp())


def _group_members(group: int, leader: int) -> bool:
    """Whether processes other than the (exited, unreaped) leader remain in `group`.
    Reads /proc (Linux); elsewhere answers False."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit() or int(entry) == leader:
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and int(fields[2]) == group and fields[0] != b"Z":
            return True
    return False


# ---------------------------------------------------------------- the lease


def _lost(info: ReservationInfo) -> str:
    """What happened to a reservation that is no longer active, in one line."""
    if info.status == "preempted":
        return f"reservation {info.id} was preempted by '{info.preempted_by}'; stopping the job"
    if info.status == "expired":
        return f"reservation {info.id} expired (its lease ran out); stopping the job"
    if info.status == "released":
        return f"reservation {info.id} was released by someone else; stopping the job"
    return f"reservation {info.id} is no longer active ({info.status}); stopping the job"


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
                _error(
                    f"could not release reservation {reservation_id}: {exc.message} "
                    "(its lease runs out on its own)"
                )
                return
            time.sleep(0.5)


# ---------------------------------------------------------------- the command


def _start(command: list[str], env: dict[str, str], terminal: int | None) -> Any:
    import subprocess

    if terminal is None:
        return subprocess.Popen(command, env=env, process_group=0)

    def foreground() -> None:
        # In the child, before exec: its own group, the terminal's foreground group
        # (done here rather than in the parent, so COMMAND never runs in the background).
        os.setpgid(0, 0)
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(terminal, os.getpid())
        signal.signal(signal.SIGTTOU, old)

    return subprocess.Popen(command, env=env, preexec_fn=foreground)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: while it is an unreaped
    zombie its process-group id cannot be reused, so signalling the group is safe."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _supervise(
    ctx: typer.Context,
    info: ReservationInfo,
    ttl: int,
    grace: int,
    command: list[str],
    signals: _Signals,
    reserved_at: float,
) -> int:
    from resgate.errors import Busy, DatabaseProblem, ResgateError

    env = dict(os.environ)
    env.update(
        RESGATE_RESERVATION_ID=info.id,
        RESGATE_TENANT=info.tenant,
        RESGATE_POOL=info.pool,
        CUDA_VISIBLE_DEVICES=",".join(map(str, info.gpu_ids)),
    )
    if signals.pending:
        # Interrupted between the reservation and the start: do not start at all;
        # run() gives the reservation back.
        _error(f"interrupted before {command[0]} started; releasing reservation {info.id}")
        return 128 + signals.pending[0]
    terminal = _terminal()
    lease_end = reserved_at + ttl
    try:
        child = _start(command, env, terminal)
    except OSError as exc:
        _take_terminal_back(terminal)  # the child may have had it before exec failed
        if isinstance(exc, FileNotFoundError):
            _error(f"command not found: {command[0]}")
            return 127
        _error(f"cannot execute {command[0]}: {exc.strerror or exc}")
        return 126
    pid: int = child.pid
    signals.group = pid
    for signum in signals.pending:
        _killpg(pid, signum)
    signals.pending.clear()

    every = ttl / 3
    next_renewal = reserved_at + every
    stopping = False  # the lease is lost: the group got SIGTERM
    kill_at: float | None = None  # when the group gets SIGKILL
    leader_done = False
    try:
        while True:
            now = time.monotonic()
            if not leader_done and _exited(pid):
                leader_done = True
                if _group_members(pid, pid):
                    # COMMAND left processes behind in its group: they would go on
                    # using what is about to be released. Stop them too.
                    _killpg(pid, signal.SIGTERM)
                    if kill_at is None:
                        kill_at = now + grace
            if leader_done and not _group_members(pid, pid):
                break
            if kill_at is not None and now >= kill_at:
                _killpg(pid, signal.SIGKILL)
                kill_at = None
                if leader_done:
                    signals.wait(0.1)
                    break
            if not stopping and not leader_done and now >= next_renewal:
                reason: str | None = None
                try:
                    renewed_at = time.monotonic()
                    current = _renew(ctx, info.id, ttl)
                    if current.status == "active":
                        lease_end = renewed_at + ttl
                        next_renewal = renewed_at + every
                    else:
                        reason = _lost(current)
                except (Busy, DatabaseProblem) as exc:
                    # A passing problem: try again, until the lease would have run out.
                    if time.monotonic() >= lease_end:
                        reason = (
                            f"could not renew reservation {info.id} before its lease ran out "
                            f"({exc.message}); stopping the job"
                        )
                    else:
                        next_renewal = time.monotonic() + min(RETRY_PAUSE, every)
                except ResgateError as exc:  # not a passing problem: the lease is lost
                    reason = f"cannot renew reservation {info.id}: {exc.message}; stopping the job"
                if reason is not None:
                    _error(reason)
                    stopping = True
                    _killpg(pid, signal.SIGTERM)
                    kill_at = time.monotonic() + grace
                continue
            deadlines = [] if stopping or leader_done else [next_renewal]
            if kill_at is not None:
                deadlines.append(kill_at)
            pause = min(deadlines, default=now + 0.1) - time.monotonic()
            # Leftover group members are not our children: no SIGCHLD, so poll them.
            signals.wait(min(pause, 0.1) if leader_done else min(pause, 1.0))
    finally:
        _take_terminal_back(terminal)
        if not leader_done:
            # Something went wrong in here: do not leave COMMAND behind.
            _killpg(pid, signal.SIGKILL)
        signals.group = None
        try:
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped elsewhere: its status is lost
            code = 1
        child.returncode = code
    if stopping:
        return EX_TEMPFAIL
    return 128 - code if code < 0 else code


def run(
    ctx: typer.Context,
    tenant: TenantOpt,
    pool: PoolOpt,
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command to run, and its arguments (after --).",
            metavar="COMMAND [ARGS]...",
            show_default=False,
        ),
    ],
    cpu: Cpu = None,
    memory: Memory = None,
    gpu: Gpu = None,
    gpu_ids: Annotated[
        str | None,
        typer.Option("--gpu-ids", help="These GPU devices, like 2,3.", show_default=False),
    ] = None,
    ttl: Annotated[
        str,
        typer.Option(
            "--ttl", help="Lease, renewed while COMMAND runs: seconds or a duration (not 0)."
        ),
    ] = DEFAULT_TTL,
    preempt: Annotated[
        bool,
        typer.Option("--preempt", help="Evict lower-priority reservations if needed."),
    ] = False,
    grace: Annotated[
        str,
        typer.Option("--grace", help="After SIGTERM, wait this long before SIGKILL."),
    ] = DEFAULT_GRACE,
) -> int:
    """Reserve, run COMMAND on the reservation, release it when COMMAND ends.

    COMMAND sees RESGATE_RESERVATION_ID, RESGATE_TENANT, RESGATE_POOL and
    CUDA_VISIBLE_DEVICES. The lease (--ttl) is renewed while it runs; if the
    reservation is preempted or lost, COMMAND's process group gets SIGTERM, then
    SIGKILL after --grace, and resgate exits 75."""
    from resgate.errors import InvalidInput

    params.name("tenant", tenant)
    params.name("pool", pool)
    amounts, ids = params.request(cpu, memory, gpu, gpu_ids)
    seconds = params.seconds("--ttl", ttl)
    if not seconds:
        raise InvalidInput(
            "invalid duration for --ttl: '0' (resgate run needs a lease: the reservation must "
            "expire if this process dies)"
        )
    grace_seconds = params.seconds("--grace", grace)
    assert grace_seconds is not None
    if amounts.is_zero():
        raise InvalidInput("a reservation needs at least one of --cpu, --memory, --gpu above 0")
    if not command or not command[0]:
        raise InvalidInput("missing COMMAND to run")
    import dataclasses

    from resgate.engine.reservations import ReserveRequest, reserve_and_report

    extra: dict[str, Any] = {}
    if ids is not None:
        if "gpu_ids" not in {f.name for f in dataclasses.fields(ReserveRequest)}:
            raise InvalidInput("--gpu-ids is not supported by this version of resgate yet")
        extra["gpu_ids"] = tuple(ids)
    request = ReserveRequest(tenant, pool, amounts, seconds, None, preempt, **extra)
    reserved_at = time.monotonic()  # no later than the lease's start
    result = transact(ctx, lambda tx: reserve_and_report(tx, request), write=True)
    signals = _Signals()
    code = 1
    try:
        signals.install()
        # Signals that came once the reservation had committed, before they were ours.
        signals.pending.extend(GUARD.take_noted())
        if preempt and result.preempted:
            from resgate.render.text import victims_summary

            sys.stderr.write(victims_summary(result.preempted) + "\n")
            sys.stderr.flush()
        code = _supervise(
            ctx, result.reservation, seconds, grace_seconds, command, signals, reserved_at
        )
    finally:
        try:
            if code != EX_TEMPFAIL:
                # Whatever happened in here; a lost lease has nothing left to give back.
                _release(ctx, result.reservation.id)
        finally:
            signals.uninstall()
    return code


def register(app: typer.Typer) -> None:
    app.command("run", context_settings={"allow_interspersed_args": False})(run)
