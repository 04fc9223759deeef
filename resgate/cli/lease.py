"""What `resgate run` keeps track of while COMMAND runs (README "Running a job on
reserved GPUs"): the lease it renews every third of its TTL and the reservation it
looks at in between (at least every 2 s), the time limit, and the job, which it sees
through the job's supervisor (resgate/cli/supervisor.py).

No Typer and no engine: the renewal, the look and the clock are passed in, so the
objects can be driven by tests without a database or, for `Lease`, processes."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from resgate.cli import process
from resgate.errors import Busy, DatabaseProblem, ResgateError

RETRY_PAUSE = 1.0  # seconds between attempts at a renewal that failed for a passing reason
# A preemption, release or lost lease is noticed within 2 s (README "Running a
# job on reserved GPUs"); the look itself takes a moment, so it starts more often.
CHECK_EVERY = 1.5
IDLE_POLL = 1.0  # longest sleep while COMMAND runs: the supervisor's pipe cuts it short


class Standing(Protocol):
    """What a renewal reports about the reservation (resgate.engine.records.ReservationInfo)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def preempted_by(self) -> str | None: ...
    @property
    def preempt_at(self) -> datetime | None: ...


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

    `renew(reservation_id, ttl)` renews it in one (write) transaction and `check(
    reservation_id)` looks at it in a read transaction; both return the reservation
    (when it is not active any more: what became of it). A renewal never takes the
    lease past `until` (the time limit's end) by more than a second."""

    def __init__(
        self,
        reservation_id: str,
        ttl: int,
        started_at: float,
        renew: Callable[[str, int], Standing],
        *,
        check: Callable[[str], Standing] | None = None,
        until: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        retry_pause: float = RETRY_PAUSE,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self.reservation_id = reservation_id
        self.ttl = ttl
        self.every = ttl / 3  # the renewal interval
        self.end = started_at + ttl  # no later than the lease's end in the database
        self.next_renewal = started_at + self.every
        self.until = until
        self._renew = renew
        self._check = check
        self._check_every = check_every
        self.next_check = started_at + check_every if check is not None else math.inf
        self._monotonic = monotonic
        self._retry_pause = retry_pause
        # The reservation as last seen: a planned truncation shows there first.
        self.seen: Standing | None = None

    def due(self, now: float) -> bool:
        """Whether a renewal is due."""
        return now >= self.next_renewal

    @property
    def next_event(self) -> float:
        """When the next renewal or look is due."""
        return min(self.next_renewal, self.next_check)

    def step(self, now: float) -> str | None:
        """The renewal or the look that is due, if any (a renewal looks too): None
        while the lease stands, else why it is lost."""
        if self.due(now):
            return self.renew()
        if now >= self.next_check:
            return self.check()
        return None

    def _ttl(self, now: float) -> int:
        """The renewal's TTL: the lease's, or what is left until `until` (at least 1 s)."""
        if self.until is None:
            return self.ttl
        return max(1, min(self.ttl, math.ceil(self.until - now)))

    def renew(self) -> str | None:
        """Renew the lease; None when it stands (renewed, or to be tried again
        soon), else why it is lost."""
        renewed_at = self._monotonic()  # no later than the new lease's start
        self.next_check = renewed_at + self._check_every
        ttl = self._ttl(renewed_at)
        try:
            current = self._renew(self.reservation_id, ttl)
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
        self.seen = current
        if current.status != "active":
            return lost(current)
        self.end = renewed_at + ttl
        self.next_renewal = renewed_at + self.every
        return None

    def check(self) -> str | None:
        """Look at the reservation (no write lock): None while it is active or
        cannot be seen for a passing reason (the renewals decide then), else why
        the lease is lost."""
        assert self._check is not None
        self.next_check = self._monotonic() + self._check_every
        try:
            current = self._check(self.reservation_id)
        except (Busy, DatabaseProblem):
            return None
        except ResgateError as exc:
            return (
                f"cannot check reservation {self.reservation_id}: {exc.message}; stopping the job"
            )
        self.seen = current
        return None if current.status == "active" else lost(current)


class TimeLimit:
    """The planned end of a run (README "Pool policies") on the monotonic clock: the job gets
    SIGTERM `grace` before it and SIGKILL at it."""

    def __init__(
        self,
        end: float,
        grace: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        why: str = "time limit",
        code: int = 124,
        announced: bool = False,
    ) -> None:
        self.end = end
        self.stop_at = end - grace
        self._monotonic = monotonic
        self.why = why  # for the planned-stop line
        self.code = code  # run's exit status: 124 for a time limit, 75 for a preemption
        self.announced = announced  # the planned-stop line was printed when it was learnt

    def due(self, now: float) -> bool:
        return now >= self.stop_at

    def line(self, reservation_id: str, why: str = "time limit") -> str:
        """The planned-stop line; the end in local time, as HH:MM."""
        at = datetime.now().astimezone() + timedelta(seconds=self.end - self._monotonic())
        return f"resgate: reservation {reservation_id} ends at {at:%H:%M} ({why}); stopping the job"


class Job:
    """COMMAND as `resgate run` sees it: through its supervisor, which starts it and
    owns its process group and what left it (resgate/cli/supervisor.py). Messages
    go down the control pipe; the status pipe says when it started and how it ended."""

    def __init__(self, spawned: process.Spawned) -> None:
        self.supervisor = spawned.process
        self.control = spawned.control
        self.status = spawned.status  # readable: something to read
        self._buffer = b""
        self.pid: int | None = None  # COMMAND's, once it started
        self.failed: int | None = None  # errno: COMMAND could not be executed
        self.result: tuple[int, str] | None = None  # (COMMAND's exit status, how it ended)
        self.vanished = False  # the supervisor died without a word
        self.stopping: str | None = None  # why this process stopped it (a lost lease, …)
        self.stop_code: int | None = None  # and the exit status that gives `run`

    @property
    def over(self) -> bool:
        return self.result is not None or self.failed is not None or self.vanished

    @property
    def running(self) -> bool:
        """COMMAND may be running and nobody asked it to stop: the lease is still wanted."""
        return self.stopping is None and not self.over

    def _tell(self, line: str) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone: nothing to tell
            os.write(self.control, f"{line}\n".encode("ascii"))

    def signal(self, signum: int) -> None:
        """`signum` to COMMAND's process group."""
        self._tell(f"signal {signum}")

    def renewed(self, end: float) -> None:
        """The lease now ends at `end` (monotonic): the supervisor's deadline."""
        self._tell(f"deadline {end!r}")

    def stop(self, reason: str, grace: float, code: int) -> None:
        """SIGTERM to the job now, SIGKILL after `grace`; `run` exits `code`."""
        if self.stopping is None:
            self.stopping, self.stop_code = reason, code
        self._tell(f"stop {max(0.0, grace)!r}")

    def poll(self) -> bool:
        """Read what the supervisor said; True once the job is over."""
        exited = self.supervisor.poll() is not None  # before the read: it wrote all first
        self._read()
        if exited and not self.over:
            self.vanished = True
        return self.over

    def _read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self.status, 4096):
                self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            verb, _, value = line.decode("ascii", "replace").partition(" ")
            if verb == "started":
                self.pid = int(value)
            elif verb == "failed":
                self.failed = int(value)
            elif verb == "done":
                code, _, how = value.partition(" ")
                self.result = (int(code), how)

    def close(self) -> None:
        """Wait for the supervisor, having told it to kill the job unless it is over
        (so nothing is left behind when supervision fails), and close the pipes."""
        if not self.over:
            self._tell("stop 0.0")
        os.close(self.control)  # end of file: it stops the job in any case
        self.supervisor.wait()
        self._read()
        os.close(self.status)
        self.vanished = self.result is None and self.failed is None
        if self.vanished and self.pid is not None:
            process.killpg(self.pid, signal.SIGKILL)  # what we can still reach of it
