"""The lease `resgate run` renews and the job it stops (resgate/cli/lease.py), driven
by a fake renewal and a fake monotonic clock: no database, and for `Lease` no processes
(README "Running a job on reserved GPUs")."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from resgate.cli import process
from resgate.cli.lease import Job, Lease
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


def lease(clock: Clock, renewals: Renewals, ttl: int = 30, **kwargs: float) -> Lease:
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


# ---------------------------------------------------------------- Job, with stand-ins


class Group:
    """Stands in for the process calls: the leader's exit, the rest of its group."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.leader_exited = False
        self.others = False
        self.code = 0
        self.sent: list[tuple[int, int]] = []
        self.pauses: list[float] = []
        self.reaped: list[int] = []

    def job(self, pid: int = 4242, grace: float = 5.0) -> Job:
        return Job(
            pid,
            grace,
            self.pauses.append,
            monotonic=self.clock,
            exited=lambda p: self.leader_exited,
            members=self.members,
            killpg=lambda group, signum: self.sent.append((group, signum)),
            reap=self.reap,
        )

    def members(self, group: int, leader: int) -> bool:
        assert group == leader == 4242
        return self.others

    def reap(self, pid: int) -> int:
        self.reaped.append(pid)
        return self.code


def test_a_job_whose_leader_exits_alone_is_over_without_a_signal():
    group = Group(Clock(0.0))
    job = group.job()
    assert job.running and not job.poll(0.0)
    group.leader_exited, group.code = True, 7
    assert job.poll(0.5)
    assert job.leader_done and not job.running and job.stopping is None
    assert job.reap() == 7
    assert (group.sent, group.reaped) == ([], [4242])  # exited on its own: no SIGKILL


def test_processes_left_behind_get_sigterm_then_sigkill_after_the_grace():
    group = Group(Clock(0.0))
    job = group.job(grace=5.0)
    group.leader_exited = group.others = True
    assert not job.poll(10.0)
    assert group.sent == [(4242, signal.SIGTERM)] and job.kill_at == 15.0
    assert not job.poll(14.9)
    assert group.sent == [(4242, signal.SIGTERM)]
    assert job.poll(15.0)
    assert group.sent == [(4242, signal.SIGTERM), (4242, signal.SIGKILL)]
    assert group.pauses == [0.1]  # a moment for SIGKILL to land before the release
    assert job.stopping is None  # COMMAND's own exit status stands


def test_processes_left_behind_that_obey_sigterm_end_the_job():
    group = Group(Clock(0.0))
    job = group.job()
    group.leader_exited = group.others = True
    assert not job.poll(1.0)
    group.others = False
    assert job.poll(1.2)
    assert group.sent == [(4242, signal.SIGTERM)]


def test_a_stopped_job_gets_sigterm_then_sigkill_and_renews_no_more():
    clock = Clock(50.0)
    group = Group(clock)
    job = group.job(grace=3.0)
    job.stop("reservation r1 was preempted by 'boss'; stopping the job")
    assert group.sent == [(4242, signal.SIGTERM)]
    assert job.stopping == "reservation r1 was preempted by 'boss'; stopping the job"
    assert not job.running and job.kill_at == 53.0
    assert not job.poll(52.0)
    assert not job.poll(53.0)  # SIGKILL sent, the leader is not gone yet
    assert group.sent[-1] == (4242, signal.SIGKILL) and job.kill_at is None
    group.leader_exited = True
    assert job.poll(53.05)
    assert job.reap() == 0 and len(group.sent) == 2


def test_waits_until_the_next_renewal_at_most_a_second():
    clock = Clock(100.0)
    group = Group(clock)
    job = group.job()
    held = lease(clock, Renewals(clock, ACTIVE), ttl=3)  # renewal at 101
    clock.now = 100.7
    assert job.next_wait(held) == pytest.approx(0.3)
    held.next_renewal = 200.0
    assert job.next_wait(held) == 1.0  # SIGCHLD cuts it short anyway
    held.next_renewal = 99.0
    assert job.next_wait(held) <= 0  # overdue: no sleep
    group.leader_exited = group.others = True
    assert not job.poll(clock.now)
    held.next_renewal = 200.0
    assert job.next_wait(held) == pytest.approx(0.1)  # leftovers send no SIGCHLD: poll them


def test_waits_for_the_sigkill_not_the_renewal_once_stopped():
    clock = Clock(100.0)
    group = Group(clock)
    job = group.job(grace=30.0)
    held = lease(clock, Renewals(clock, ACTIVE), ttl=3)
    held.next_renewal = 100.2
    job.stop("lost", 0.4)  # a grace of its own
    assert job.next_wait(held) == pytest.approx(0.4)  # not 0.2: no more renewals
    job.kill_at = None
    assert job.next_wait(held) == pytest.approx(0.1)  # SIGKILL sent: look again soon


def test_reaping_a_job_that_did_not_exit_kills_its_group_first():
    group = Group(Clock(0.0))
    group.code = -signal.SIGKILL
    job = group.job()
    assert job.reap() == -signal.SIGKILL
    assert group.sent == [(4242, signal.SIGKILL)] and group.reaped == [4242]


# ---------------------------------------------------------------- Job, real processes


def supervise(job: Job, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.poll(time.monotonic()):
        assert time.monotonic() < deadline, "the job never ended"
        time.sleep(0.02)


def test_a_real_job_stopped_ends_by_sigterm():
    child = process.start(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, None)
    job = Job(child.pid, 5.0, time.sleep)
    try:
        job.stop("lost")
        supervise(job)
    finally:
        child.returncode = job.reap()
    assert child.returncode == -signal.SIGTERM


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_real_jobs_leftover_is_stopped_and_its_exit_status_kept(tmp_path: Path):
    pidfile = tmp_path / "leftover"
    script = f"sleep 30 & echo $! > {pidfile}; exit 3"
    child = process.start(["sh", "-c", script], {"PATH": "/usr/bin:/bin"}, None)
    job = Job(child.pid, 5.0, time.sleep)
    try:
        supervise(job)
    finally:
        child.returncode = job.reap()
    assert child.returncode == 3
    leftover = int(pidfile.read_text())
    assert not process.group_members(child.pid, child.pid)
    state = Path(f"/proc/{leftover}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"


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
        signals.started(child.pid)
        assert signals.pending == [] and signals.group == child.pid
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        signals.uninstall()
        if child.poll() is None:
            child.kill()
            child.wait()


def test_exited_does_not_reap():
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while not process.exited(child.pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert process.exited(child.pid)  # still there to be asked about: a zombie
    assert process.reap(child.pid) == 0
    assert process.reap(child.pid) == 1  # gone: its status is lost
    child.returncode = 0
