"""What `resgate run` keeps track of while COMMAND runs (README "Running a job on
reserved GPUs"): the lease it renews every third of its TTL, and the job it stops
when the lease is lost.

No Typer and no engine: the renewal itself and the clock are passed in, so both
objects can be driven by tests without a database or, for `Lease`, processes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Protocol

from resgate.cli import process
from resgate.errors import Busy, DatabaseProblem, ResgateError

RETRY_PAUSE = 1.0  # seconds between attempts at a renewal that failed for a passing reason
IDLE_POLL = 1.0  # longest sleep while COMMAND runs: SIGCHLD cuts it short anyway
SHORT_POLL = 0.1  # the group on its way out: leftovers are not our children, no SIGCHLD


class Standing(Protocol):
    """What a renewal reports about the reservation (resgate.engine.records.ReservationInfo)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def preempted_by(self) -> str | None: ...


def lost(info: Standing) -> str:
    """What happened to a reservation that is no longer active, in one line."""
    if info.status == "preempted":
        return f"reservation {info.id} was preempted by '{info.preempted_by}'; stopping the job"
    if info.status == "expired":
        return f"reservation {info.id} expired (its lease ran out); stopping the job"
    if info.status == "released":
        return f"reservation {info.id} was released by someone else; stopping the job"
    return f"reservation {info.id} is no longer active ({info.status}); stopping the job"


class Lease:
    """The reservation's lease, as this process sees it on its monotonic clock.

    `renew(reservation_id, ttl)` renews it in one transaction and returns the
    reservation (when it is not active any more: what became of it)."""

    def __init__(
        self,
        reservation_id: str,
        ttl: int,
        started_at: float,
        renew: Callable[[str, int], Standing],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        retry_pause: float = RETRY_PAUSE,
    ) -> None:
        self.reservation_id = reservation_id
        self.ttl = ttl
        self.every = ttl / 3  # the renewal interval
        self.end = started_at + ttl  # no later than the lease's end in the database
        self.next_renewal = started_at + self.every
        self._renew = renew
        self._monotonic = monotonic
        self._retry_pause = retry_pause

    def due(self, now: float) -> bool:
        return now >= self.next_renewal

    def renew(self) -> str | None:
        """Renew the lease; None when it stands (renewed, or to be tried again
        soon), else why it is lost."""
        try:
            renewed_at = self._monotonic()  # no later than the new lease's start
            current = self._renew(self.reservation_id, self.ttl)
        except (Busy, DatabaseProblem) as exc:
            # README: a busy or briefly unreachable database is retried until the
            # lease would have run out.
            now = self._monotonic()
            if now >= self.end:
                return (
                    f"could not renew reservation {self.reservation_id} before its lease ran "
                    f"out ({exc.message}); stopping the job"
                )
            self.next_renewal = now + min(self._retry_pause, self.every)
            return None
        except ResgateError as exc:  # not a passing problem: the lease is lost
            return (
                f"cannot renew reservation {self.reservation_id}: {exc.message}; stopping the job"
            )
        if current.status != "active":
            return lost(current)
        self.end = renewed_at + self.ttl
        self.next_renewal = renewed_at + self.every
        return None


class Job:
    """COMMAND's process group, led by `pid`, from its start until it is reaped.

    The process calls are parameters (resgate.cli.process by default) so that
    tests can stand in for them; `pause` is the sleep a signal cuts short."""

    def __init__(
        self,
        pid: int,
        grace: float,
        pause: Callable[[float], None],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        exited: Callable[[int], bool] = process.exited,
        members: Callable[[int, int], bool] = process.group_members,
        killpg: Callable[[int, int], None] = process.killpg,
        reap: Callable[[int], int] = process.reap,
    ) -> None:
        self.pid = pid
        self.group = pid  # the leader's pid is the group's id
        self.grace = grace
        self.leader_done = False  # exited, not reaped yet
        self.kill_at: float | None = None  # when the group gets SIGKILL
        self.stopping: str | None = None  # why the group got SIGTERM (a lost lease)
        self._pause = pause
        self._monotonic = monotonic
        self._exited = exited
        self._members = members
        self._killpg = killpg
        self._reap = reap

    @property
    def running(self) -> bool:
        """COMMAND is running and nobody asked it to stop: the lease is still wanted."""
        return self.stopping is None and not self.leader_done

    def poll(self, now: float) -> bool:
        """Note an exit, send SIGKILL when its time has come; True once the job is over."""
        if not self.leader_done and self._exited(self.pid):
            self.leader_done = True
            if self._members(self.group, self.pid):
                # README: processes COMMAND leaves behind in its group would go on
                # using what is about to be released. Stop them too.
                self._killpg(self.group, signal.SIGTERM)
                if self.kill_at is None:
                    self.kill_at = now + self.grace
        if self.leader_done and not self._members(self.group, self.pid):
            return True
        if self.kill_at is not None and now >= self.kill_at:
            self._killpg(self.group, signal.SIGKILL)
            self.kill_at = None
            if self.leader_done:
                self._pause(SHORT_POLL)
                return True
        return False

    def stop(self, reason: str, grace: float | None = None) -> None:
        """SIGTERM to the group now, SIGKILL after `grace` (the job's own by default)."""
        self.stopping = reason
        self._killpg(self.group, signal.SIGTERM)
        self.kill_at = self._monotonic() + (self.grace if grace is None else grace)

    def next_wait(self, lease: Lease) -> float:
        """How long to sleep before something is due: a renewal or a SIGKILL."""
        deadlines = [lease.next_renewal] if self.running else []
        if self.kill_at is not None:
            deadlines.append(self.kill_at)
        now = self._monotonic()
        pause = min(deadlines, default=now + SHORT_POLL) - now
        return min(pause, SHORT_POLL if self.leader_done else IDLE_POLL)

    def reap(self) -> int:
        """Wait for the leader, SIGKILLing the group first unless it exited on its
        own (so nothing is left behind when supervision fails). Popen's returncode."""
        if not self.leader_done:
            self._killpg(self.group, signal.SIGKILL)
        return self._reap(self.pid)
