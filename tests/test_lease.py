"""The lease `resgate run` renews and looks at, and its time limit (resgate/cli/lease.py),
driven by a fake renewal and a fake monotonic clock: no database, no processes; and the
signals it passes on (README "Running a job on reserved GPUs"). The job itself, under
its supervisor, is tested with real processes in tests/test_supervisor.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from resgate.cli import process
from resgate.cli.lease import Lease, TimeLimit
from resgate.errors import Busy, DatabaseProblem, NotFound, Refused


@dataclass(frozen=True)
class Info:
    id: str
    status: str
    preempted_by: str | None = None


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Renewals:
    """The renewal call: each call takes `takes` seconds on the clock and then gives
    the next of `outcomes` (an exception is raised); the last one repeats."""

    def __init__(self, clock: Clock, *outcomes: Info | Exception, takes: float = 0.0) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.takes = takes
        self.calls: list[tuple[str, int, float]] = []

    def __call__(self, reservation_id: str, ttl: int) -> Info:
        self.calls.append((reservation_id, ttl, self.clock.now))
        self.clock.now += self.takes
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


ACTIVE = Info("r1", "active")


def lease(clock: Clock, renewals: Renewals, ttl: int = 30, **kwargs: Any) -> Lease:
    return Lease("r1", ttl, clock.now, renewals, monotonic=clock, **kwargs)


# ---------------------------------------------------------------- Lease


def test_the_first_renewal_is_due_a_third_of_the_ttl_after_the_start():
    clock = Clock(100.0)
    renewals = Renewals(clock, ACTIVE)
    held = lease(clock, renewals)
    assert (held.every, held.end, held.next_renewal) == (10.0, 130.0, 110.0)
    assert not held.due(109.99)
    assert held.due(110.0) and held.due(111.0)
    assert renewals.calls == []  # due() only answers


def test_a_renewal_moves_the_lease_on_from_when_it_was_asked_for():
    clock = Clock(100.0)
    renewals = Renewals(clock, ACTIVE, takes=2.0)
    held = lease(clock, renewals)
    clock.now = 110.5
    assert held.renew() is None
    assert renewals.calls == [("r1", 30, 110.5)]
    # From before the call, not after it: never later than the database's lease.
    assert (held.end, held.next_renewal) == (140.5, 120.5)
    assert not held.due(120.4) and held.due(120.5)


def test_renewals_keep_to_the_schedule_for_a_long_job():
    clock = Clock(0.0)
    renewals = Renewals(clock, ACTIVE)
    held = lease(clock, renewals, ttl=9)
    for _ in range(100):
        clock.now += 0.5
        if held.due(clock.now):
            assert held.renew() is None
    assert [when for _, _, when in renewals.calls] == [3.0 * n for n in range(1, 17)]
    assert held.end == 48.0 + 9


@pytest.mark.parametrize("problem", [Busy("database is locked"), DatabaseProblem("gone")])
def test_a_passing_problem_is_tried_again_a_moment_later_and_may_succeed(problem):
    clock = Clock(100.0)
    renewals = Renewals(clock, problem, ACTIVE)
    held = lease(clock, renewals)
    clock.now = 110.0
    assert held.renew() is None  # not lost: tried again
    assert held.end == 130.0  # not renewed either
    assert held.next_renewal == 111.0  # RETRY_PAUSE later
    assert not held.due(110.9)
    clock.now = 111.0
    assert held.renew() is None
    assert (held.end, held.next_renewal) == (141.0, 121.0)
    assert len(renewals.calls) == 2


def test_the_retry_pause_is_never_longer_than_the_renewal_interval():
    clock = Clock(0.0)
    renewals = Renewals(clock, Busy("locked"))
    held = lease(clock, renewals, ttl=3, retry_pause=5.0)
    clock.now = 1.0
    assert held.renew() is None
    assert held.next_renewal == 2.0  # every = 1 s, not 5 s


def test_retries_stop_at_the_lease_end_with_the_reason():
    clock = Clock(0.0)
    renewals = Renewals(clock, Busy("database is locked"))
    held = lease(clock, renewals, ttl=30)
    reason = None
    while reason is None:
        clock.now = held.next_renewal
        assert clock.now <= 30.0, "retried past the lease end"
        reason = held.renew()
    assert reason == (
        "could not renew reservation r1 before its lease ran out (database is locked); "
        "stopping the job"
    )
    # At 10 s, then every second until the lease ran out at 30 s.
    assert [when for _, _, when in renewals.calls] == [float(t) for t in range(10, 31)]


def test_a_slow_failing_renewal_that_outlasts_the_lease_gives_up():
    clock = Clock(0.0)
    renewals = Renewals(clock, DatabaseProblem("server closed the connection"), takes=25.0)
    held = lease(clock, renewals, ttl=30)
    clock.now = 10.0
    reason = held.renew()  # asked at 10 s, failed at 35 s: the lease is over
    assert reason is not None and "(server closed the connection)" in reason
    assert len(renewals.calls) == 1


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (
            Info("r1", "preempted", "boss"),
            "reservation r1 was preempted by 'boss'; stopping the job",
        ),
        (Info("r1", "expired"), "reservation r1 expired (its lease ran out); stopping the job"),
        (Info("r1", "released"), "reservation r1 was released by someone else; stopping the job"),
        (Info("r1", "odd"), "reservation r1 is no longer active (odd); stopping the job"),
    ],
)
def test_a_reservation_that_ended_gives_its_reason_at_once(info, reason):
    clock = Clock(100.0)
    renewals = Renewals(clock, info)
    held = lease(clock, renewals)
    clock.now = 110.0
    assert held.renew() == reason
    assert len(renewals.calls) == 1
    assert held.end == 130.0  # a lost lease is not extended


@pytest.mark.parametrize(
    "error", [NotFound("reservation r1 not found"), Refused("reservation r1 is not active")]
)
def test_a_lasting_error_loses_the_lease_without_retries(error):
    clock = Clock(100.0)
    renewals = Renewals(clock, error, ACTIVE)
    held = lease(clock, renewals)
    clock.now = 110.0
    assert held.renew() == f"cannot renew reservation r1: {error.message}; stopping the job"
    assert len(renewals.calls) == 1 and held.next_renewal == 110.0


# ---------------------------------------------------------------- looks between renewals


class Looks:
    """The look at the reservation (a read): the next of `outcomes` each time."""

    def __init__(self, clock: Clock, *outcomes: Info | Exception) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.calls: list[float] = []

    def __call__(self, reservation_id: str) -> Info:
        assert reservation_id == "r1"
        self.calls.append(self.clock.now)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_the_reservation_is_looked_at_every_1_5_s_between_renewals():
    clock = Clock(0.0)
    renewals, looks = Renewals(clock, ACTIVE), Looks(clock, ACTIVE)
    held = lease(clock, renewals, ttl=30, check=looks)
    while clock.now < 12.0:
        clock.now = round(clock.now + 0.1, 1)
        assert held.step(clock.now) is None
    # At least every 2 s (README "Running a job on reserved GPUs"). The renewal at
    # 10 s looks too, and moves the next look.
    assert looks.calls == [1.5, 3.0, 4.5, 6.0, 7.5, 9.0, 11.5]
    assert [when for _, _, when in renewals.calls] == [10.0]
    assert held.next_event == 13.0


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (Info("r1", "preempted", "boss"), "reservation r1 was preempted by 'boss'"),
        (Info("r1", "released"), "reservation r1 was released by someone else"),
        (Info("r1", "expired"), "reservation r1 expired (its lease ran out)"),
        (NotFound("reservation 'r1' not found"), "cannot check reservation r1: reservation 'r1'"),
    ],
)
def test_a_look_that_finds_the_reservation_gone_loses_the_lease(info, reason):
    clock = Clock(0.0)
    held = lease(clock, Renewals(clock, ACTIVE), check=Looks(clock, info))
    clock.now = 1.5
    lost = held.step(clock.now)
    assert lost is not None and lost.startswith(reason) and lost.endswith("; stopping the job")


@pytest.mark.parametrize("problem", [Busy("database is locked"), DatabaseProblem("gone")])
def test_a_look_that_fails_for_a_passing_reason_leaves_it_to_the_renewals(problem):
    clock = Clock(0.0)
    held = lease(clock, Renewals(clock, ACTIVE), check=Looks(clock, problem))
    clock.now = 1.5
    assert held.step(clock.now) is None
    assert held.next_check == 3.0 and held.end == 30.0


def test_renewals_stop_at_the_time_limit():
    clock = Clock(0.0)
    renewals = Renewals(clock, ACTIVE)
    held = lease(clock, renewals, ttl=9, until=10.0)
    for when in (3.0, 6.0, 9.0, 9.9):
        clock.now = when
        assert held.renew() is None
    # Never past the end (rounded up to a whole second, at least 1 s).
    assert [ttl for _, ttl, _ in renewals.calls] == [7, 4, 1, 1]
    assert held.end == 9.9 + 1


def test_the_planned_stop_line_names_the_end_in_local_time():
    clock = Clock(1000.0)
    limit = TimeLimit(1000.0 + 90, 30.0, monotonic=clock)
    assert limit.stop_at == 1060.0 and not limit.due(1059.9) and limit.due(1060.0)
    before = datetime.now().astimezone() + timedelta(seconds=90)
    line = limit.line("r1")
    after = datetime.now().astimezone() + timedelta(seconds=90)
    assert line in {
        f"resgate: reservation r1 ends at {at:%H:%M} (time limit); stopping the job"
        for at in (before, after)
    }


# ---------------------------------------------------------------- signals and the terminal


def _handler(signum: int, frame: object) -> None:
    pass


def test_handlers_replaced_are_given_back_not_reset_to_the_default():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    old = {s: signal.signal(s, _handler) for s in (signal.SIGHUP, signal.SIGTTOU)}
    try:
        signals = process.JobSignals()
        signals.install()
        assert signal.getsignal(signal.SIGHUP) is not _handler
        signals.uninstall()
        with process.ttou_ignored():
            assert signal.getsignal(signal.SIGTTOU) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGHUP) is signal.getsignal(signal.SIGTTOU) is _handler
        assert {s: signal.getsignal(s) for s in before} == before
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)


def test_job_signals_keep_what_came_before_the_start_and_forward_it():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], process_group=0)
    signals = process.JobSignals()
    signals.install()
    try:
        signals._forward(signal.SIGCHLD)  # only wakes the wait
        signals._forward(signal.SIGTERM)
        assert signals.pending == [signal.SIGTERM]
        signals.started(lambda signum: os.killpg(child.pid, signum))
        assert signals.pending == []
        assert child.wait(timeout=10) == -signal.SIGTERM
        signals.stopped()
        signals._forward(signal.SIGINT)  # COMMAND is over: kept, never sent
        assert signals.pending == [signal.SIGINT]
    finally:
        signals.uninstall()
        if child.poll() is None:
            child.kill()
            child.wait()
