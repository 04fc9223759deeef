"""The job never outlives its lease (README "Running a job on reserved GPUs"),
with real processes: the supervisor of resgate/cli/supervisor.py on its own, then
`resgate run` killed with SIGKILL, stopped with SIGSTOP, preempted or released from
outside, and stopped at its time limit. Times are measured, on the monotonic clock every
process shares."""

from __future__ import annotations

import ast
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_run import (
    TIMEOUT,
    alive,
    reaper,
    reservations,
    start,
    status_of,
    wait_for,
    wait_for_file,
)

from resgate.cli import process, supervisor
from resgate.cli.run import time_limit
from resgate.cli.supervisor import Proc, members

pytestmark = pytest.mark.sqlite_only
__all__ = ["reaper"]  # a fixture of test_run's, used here

MARGIN = 1.0  # for a loaded machine: process start-up, a scan of /proc, the scheduler

# The job the tests run: a leader (COMMAND) that starts a child in a session of its own
# (`setsid`, its parent alive) and, through a middle process that exits at once, a
# grandchild in a session of its own whose parent is gone (reparented to the supervisor).
# Each notes its pid in `pid-ROLE` once its handler is in place (the leader last),
# and each SIGTERM in `term-ROLE` (monotonic and wall-clock time); `obedient` ones
# exit on it, `stubborn` ones go on until SIGKILL. The leader exits with `code` after
# `linger` seconds (never, by default).
JOB = r"""
import os, signal, subprocess, sys, time
out, mode, role = sys.argv[1], sys.argv[2], sys.argv[3]
linger, code = float(sys.argv[4]), int(sys.argv[5])
def note(name, text):
    with open(os.path.join(out, name), "a") as f:
        f.write(text)
def on_term(signum, frame):
    note("term-" + role, f"{time.monotonic()} {time.time()}\n")
    if mode == "obedient":
        os._exit(0)
signal.signal(signal.SIGTERM, on_term)
me = [sys.executable, sys.argv[0], out, mode]
if role == "leader":
    subprocess.Popen([*me, "setsid", "1000", "0"], start_new_session=True)
    subprocess.Popen([*me, "middle", "1000", "0"]).wait()
    while not all(os.path.exists(os.path.join(out, "pid-" + r)) for r in ("setsid", "orphan")):
        time.sleep(0.01)
elif role == "middle":
    subprocess.Popen([*me, "orphan", "1000", "0"], start_new_session=True)
    os._exit(0)
note("pid-" + role, str(os.getpid()))
deadline = time.monotonic() + linger
while time.monotonic() < deadline:
    time.sleep(0.02)
sys.exit(code)
"""
ROLES = ("leader", "setsid", "orphan")


@pytest.fixture
def setup(cli, subprocess_env, tmp_path: Path) -> dict[str, str]:
    for args in (
        ("pool", "create", "--name", "p", "--cpu", "4", "--gpu", "2"),
        ("tenant", "add", "--name", "t"),
        ("tenant", "add", "--name", "boss", "--priority", "9"),
    ):
        assert cli(*args).code == 0
    (tmp_path / "job.py").write_text(JOB)
    return subprocess_env


def job(tmp_path: Path, mode: str, linger: float = 1000, code: int = 0) -> list[str]:
    script = str(tmp_path / "job.py")
    return [sys.executable, script, str(tmp_path), mode, "leader", str(linger), str(code)]


def job_pids(tmp_path: Path, reap) -> dict[str, int]:
    """Every process of the job, once each is ready; each is killed at the test's end."""
    pids = {role: int(wait_for(tmp_path / f"pid-{role}")) for role in ROLES}
    for pid in pids.values():
        reap(pid)  # a group id or a pid: either is SIGKILLed at the end
    return pids


def ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def children(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and ppid(int(e)) == pid]


def terms(tmp_path: Path, role: str) -> list[tuple[float, float]]:
    """When `role` got SIGTERM: (monotonic, wall clock) each time."""
    path = tmp_path / f"term-{role}"
    if not path.exists():
        return []
    pairs = [line.split() for line in path.read_text().splitlines()]
    return [(float(mono), float(wall)) for mono, wall in pairs]


def wait_until_gone(pids: Iterable[int], timeout: float = 30) -> float:
    """The monotonic time by which none of `pids` is alive (polled every 20 ms)."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if alive(pid)]
        time.sleep(0.02)
    return time.monotonic()


def finish(run: subprocess.Popen[str]) -> tuple[int, str]:
    _, stderr = run.communicate(timeout=TIMEOUT)
    return run.returncode, stderr


# ---------------------------------------------------------------- pieces


def test_time_limit_is_the_option_or_the_pools_maximum_whichever_is_shorter():
    assert time_limit(None, None) is None
    assert time_limit(600, None) == 600
    assert time_limit(None, 3600) == 3600
    assert time_limit(600, 3600) == 600
    assert time_limit(7200, 3600) == 3600


def test_the_job_is_the_group_and_every_descendant_of_the_supervisor():
    me, leader = 10, 11
    table = [
        Proc(1, 0, 1, False),
        Proc(me, 1, me, False),
        Proc(leader, me, leader, True),  # exited, not reaped
        Proc(12, leader, leader, False),  # still in the group
        Proc(13, me, 13, False),  # setsid'd, reparented to us
        Proc(14, 13, 13, False),  # and its child
        Proc(15, me, 15, True),  # a dead child of ours: to be reaped
        Proc(16, 1, 16, False),  # a stranger
    ]
    found = members(table, me, leader, leader)
    assert found.in_group and sorted(found.others) == [13, 14] and found.zombies == [15]
    assert not members([Proc(me, 1, me, False), Proc(leader, me, leader, True)], me, leader, leader)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_subreaper_can_be_had_here():
    # In a child: the mark would stay on the test process otherwise.
    done = subprocess.run(
        [sys.executable, "-c", "from resgate.cli.supervisor import *; print(become_subreaper())"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.stdout.strip() == "True", done.stderr


def test_the_supervisor_imports_the_standard_library_alone():
    # It runs as a script of `python -I -S`: no resgate, no site-packages (SQLAlchemy).
    tree = ast.parse(Path(supervisor.__file__).read_text())
    names = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in names} <= sys.stdlib_module_names | {"__future__"}


class Alone:
    """The supervisor started as `run` starts it, without `run`: its pipes are ours."""

    def __init__(self, command: list[str], *, ttl: float, grace: float, deadline: float):
        spawned = process.spawn_supervisor(
            command,
            dict(os.environ),
            None,
            reservation="r1",
            ttl=ttl,
            grace=grace,
            deadline=deadline,
        )
        self.process, self.control, self.status = spawned.process, spawned.control, spawned.status
        self.buffer = b""

    def tell(self, line: str) -> None:
        os.write(self.control, f"{line}\n".encode())

    def lines(self, timeout: float = TIMEOUT) -> list[str]:
        """Everything it says until it exits."""
        deadline = time.monotonic() + timeout
        while True:
            assert time.monotonic() < deadline, self.buffer
            select.select([self.status], [], [], 0.5)
            try:
                data = os.read(self.status, 4096)
            except BlockingIOError:
                continue
            if not data:
                break
            self.buffer += data
        self.process.wait(timeout=TIMEOUT)
        os.close(self.status)
        return self.buffer.decode().splitlines()

    def close(self) -> None:
        if self.control >= 0:
            os.close(self.control)
            self.control = -1


def test_the_supervisor_alone_runs_the_command_and_says_how_it_ended():
    alone = Alone(["sh", "-c", "exit 3"], ttl=60, grace=5, deadline=time.monotonic() + 60)
    try:
        said = alone.lines()
    finally:
        alone.close()
    assert len(said) == 2 and re.fullmatch(r"started \d+", said[0]), said
    assert said[1] == "done 3 exited"
    assert alone.process.returncode == 0


def test_the_supervisor_alone_reports_a_command_that_cannot_run():
    alone = Alone(["no-such-command-here"], ttl=60, grace=5, deadline=time.monotonic() + 60)
    try:
        assert alone.lines() == ["failed 2"]  # ENOENT: run says "command not found" (127)
    finally:
        alone.close()


def test_the_supervisor_alone_passes_signals_on_and_stops_when_told(tmp_path: Path):
    script = f"trap 'echo INT >> {tmp_path}/got' INT; touch {tmp_path}/ready; "
    script += "while :; do sleep 0.05; done"
    alone = Alone(["sh", "-c", script], ttl=60, grace=0.5, deadline=time.monotonic() + 60)
    try:
        wait_for_file(tmp_path / "ready")
        alone.tell(f"signal {int(signal.SIGINT)}")
        wait_for(tmp_path / "got")
        alone.tell("stop 5")  # sh dies of the SIGTERM
        said = alone.lines()
    finally:
        alone.close()
    assert said[-1] == f"done {128 + signal.SIGTERM} stopped"
    assert (tmp_path / "got").read_text() == "INT\n"


def test_the_supervisor_reaps_orphans_while_the_command_runs(tmp_path: Path):
    # Twenty daemons that die at once, reparented to the supervisor while COMMAND runs on.
    script = f"for i in $(seq 20); do (sleep 0 &); done; touch {tmp_path}/spawned; sleep 30"
    alone = Alone(["sh", "-c", script], ttl=60, grace=1, deadline=time.monotonic() + 60)
    try:
        wait_for_file(tmp_path / "spawned")
        deadline = time.monotonic() + 10
        while zombies := [
            pid for pid in children(alone.process.pid) if not alive(pid) and ppid(pid) is not None
        ]:
            assert time.monotonic() < deadline, f"zombies left unreaped: {zombies}"
            time.sleep(0.05)
        (leader,) = children(alone.process.pid)  # what is left: COMMAND, running
        assert alive(leader)
        alone.tell("stop 1")
        assert alone.lines()[-1] == f"done {128 + signal.SIGTERM} stopped"
    finally:
        alone.close()


# ---------------------------------------------------------------- resgate run dies


@pytest.mark.parametrize(
    ("ttl", "grace", "kill_after"),
    [("6s", "1s", 1.0), ("4s", "30s", 2.0)],  # --grace, or half the TTL if that is shorter
)
def test_a_killed_run_takes_its_whole_job_with_it(
    setup, cli, tmp_path, reaper, ttl, grace, kill_after
):
    run = start(
        setup, "--cpu", "1", "--ttl", ttl, "--grace", grace, "--", *job(tmp_path, "stubborn")
    )
    pids = job_pids(tmp_path, reaper)
    (supervisor,) = children(run.pid)
    # The grandchild whose parent exited was reparented to the supervisor (the subreaper).
    assert ppid(pids["orphan"]) == supervisor
    assert ppid(pids["setsid"]) == pids["leader"]
    killed_at = time.monotonic()
    run.kill()
    run.wait(timeout=TIMEOUT)
    gone_at = wait_until_gone([*pids.values(), supervisor])
    # SIGTERM to every process at once, SIGKILL (they ignore SIGTERM) after the grace.
    for role in ROLES:
        ((term_at, _),) = terms(tmp_path, role)
        assert 0 <= term_at - killed_at <= MARGIN, role
    assert kill_after - 0.1 <= gone_at - killed_at <= kill_after + MARGIN
    assert run.stdout is not None and run.stderr is not None
    stderr = run.stderr.read()  # end of file: the supervisor is gone too
    run.stdout.close()
    run.stderr.close()
    assert (
        f"resgate: resgate run (pid {run.pid}) is gone; stopping the job of reservation" in stderr
    )
    (row,) = reservations(cli, "--all")
    assert row["status"] == "active"  # nobody released it: it expires within one TTL


# ---------------------------------------------------------------- resgate run stopped


def test_a_stopped_run_has_its_job_stopped_before_the_lease_ends(setup, cli, tmp_path, reaper):
    run = start(
        setup, "--cpu", "1", "--ttl", "3s", "--grace", "1s", "--", *job(tmp_path, "obedient")
    )
    pids = job_pids(tmp_path, reaper)
    os.kill(run.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        gone_at = wait_until_gone(pids.values(), timeout=10)
        gone_wall = time.time()
        # Read while `run` cannot renew any more: the lease's end as the database has it.
        (row,) = reservations(cli)
        expires_at = datetime.fromisoformat(row["expires_at"]).timestamp()
    finally:
        os.kill(run.pid, signal.SIGCONT)
    code, stderr = finish(run)
    (term_at, term_wall), *_ = terms(tmp_path, "leader")
    # SIGTERM --grace before the lease's end, the job gone before it; all within one TTL.
    assert term_wall <= expires_at - 1 + 0.2, (term_wall, expires_at)
    assert gone_wall < expires_at
    assert gone_at - stopped_at <= 3
    assert {role for role in ROLES if terms(tmp_path, role)} == set(ROLES)
    assert code == 75
    assert f"resgate: reservation {row['id']} was not renewed in time" in stderr
    assert term_at >= stopped_at


# ---------------------------------------------------------------- stopped from outside


@pytest.mark.parametrize("how", ["preempt", "unreserve"])
def test_a_preemption_or_release_stops_the_job_within_2_s(setup, cli, tmp_path, reaper, how):
    # A TTL of a minute: the first renewal would come after 20 s, so only the looks
    # in between can notice.
    run = start(
        setup, "--cpu", "1", "--ttl", "60s", "--grace", "5s", "--", *job(tmp_path, "obedient")
    )
    pids = job_pids(tmp_path, reaper)
    (row,) = reservations(cli)
    acted_at = time.monotonic()
    if how == "preempt":
        assert cli("preempt", "--tenant", "boss", "--target", "t").code == 0
        said = f"Error: reservation {row['id']} was preempted by 'boss'; stopping the job\n"
    else:
        assert cli("unreserve", "--id", row["id"]).code == 0
        said = f"Error: reservation {row['id']} was released by someone else; stopping the job\n"
    code, stderr = finish(run)
    (term_at, _), *_ = terms(tmp_path, "leader")
    assert term_at - acted_at <= 2 + 0.5, term_at - acted_at
    assert (code, stderr) == (75, said)
    assert not any(alive(pid) for pid in pids.values())
    assert status_of(cli, row["id"]) == ("preempted" if how == "preempt" else "released")


# ---------------------------------------------------------------- the time limit


@pytest.mark.parametrize("mode", ["obedient", "stubborn"])
def test_the_time_limit_stops_the_job_grace_before_the_end(setup, cli, tmp_path, reaper, mode):
    run = start(
        setup, "--cpu", "1", "--time-limit", "3s", "--grace", "1s", "--", *job(tmp_path, mode)
    )
    pids = job_pids(tmp_path, reaper)
    code, stderr = finish(run)
    done_wall = time.time()
    (row,) = reservations(cli, "--all")
    created = datetime.fromisoformat(row["created_at"]).timestamp()
    (_, term_wall), *_ = terms(tmp_path, "leader")
    assert code == 124
    match = re.fullmatch(
        rf"resgate: reservation {row['id']} ends at (\d\d:\d\d) \(time limit\); stopping the job\n",
        stderr,
    )
    assert match, stderr
    end = datetime.fromtimestamp(created).astimezone() + timedelta(seconds=3)
    assert match.group(1) in {f"{end - timedelta(seconds=1):%H:%M}", f"{end:%H:%M}"}
    # SIGTERM --grace (1 s) before the end, 3 s after the reservation.
    assert 2 - 0.3 <= term_wall - created <= 2 + MARGIN
    if mode == "stubborn":  # SIGKILL at the end, not before
        assert 3 - 0.3 <= done_wall - created <= 3 + MARGIN
    assert not any(alive(pid) for pid in pids.values())
    assert row["status"] == "released"


@pytest.mark.parametrize("value", ["0", "soon", "-5"])
def test_a_bad_time_limit_is_refused(setup, tmp_path, value):
    run = start(setup, "--cpu", "1", "--time-limit", value, "--", "touch", str(tmp_path / "ran"))
    code, stderr = finish(run)
    assert code == 2 and stderr.startswith("Error: invalid duration for --time-limit")
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- a job that ends


def test_a_job_that_ends_gives_its_exit_status_and_what_it_left_behind_is_stopped(
    setup, cli, tmp_path, reaper
):
    run = start(
        setup, "--cpu", "1", "--grace", "5s", "--", *job(tmp_path, "obedient", linger=0.5, code=7)
    )
    pids = job_pids(tmp_path, reaper)
    code, stderr = finish(run)
    assert (code, stderr) == (7, "")
    # The leader ended on its own; what it left in other sessions got SIGTERM, and was
    # gone before the release.
    assert not terms(tmp_path, "leader")
    assert terms(tmp_path, "setsid") and terms(tmp_path, "orphan")
    assert not any(alive(pid) for pid in pids.values())
    assert [r["status"] for r in reservations(cli, "--all")] == ["released"]


# ---------------------------------------------------------------- two jobs, one GPU


def runner_of(db: str, reservation_id: str) -> str | None:
    import sqlite3

    with sqlite3.connect(db) as connection:
        (runner,) = connection.execute(
            "SELECT runner FROM reservations WHERE id = ?", (reservation_id,)
        ).fetchone()
    return runner


def test_the_preemptors_job_starts_once_the_victims_job_is_gone(setup, cli, tmp_path, reaper):
    """`run --preempt` takes the GPUs of a running job: it waits, saying so, until
    that job is gone (its runner cleared), so the two never share a GPU; both
    runners are cleared at the end."""
    import socket

    db = setup["RESGATE_DB"]
    victim = start(setup, "--gpu", "2", "--ttl", "60s", "--grace", "2s", "--",
                   *job(tmp_path, "stubborn"))  # fmt: skip
    reaper(victim.pid)
    pids = job_pids(tmp_path, reaper)
    (held,) = reservations(cli)
    assert runner_of(db, held["id"]) == f"{victim.pid}@{socket.gethostname()}+2"
    # The preemptor's job notes which of the victim's processes it finds alive.
    seen = tmp_path / "seen"
    check = (
        "import os, sys; alive = [p for p in sys.argv[2:] if os.path.exists('/proc/' + p)"
        " and open('/proc/' + p + '/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'];"
        " open(sys.argv[1], 'w').write(' '.join(alive) or '-')"
    )
    boss = subprocess.Popen(
        [*start_args("boss"), "--gpu", "2", "--preempt", "--", sys.executable, "-c", check,
         str(seen), *map(str, pids.values())],
        env=setup, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reaper(boss.pid)
    code, stderr = finish(boss)
    assert code == 0, stderr
    assert f"waiting for the job of preempted reservation {held['id']} (pid {victim.pid} on " in (
        stderr
    )
    assert seen.read_text() == "-"  # none of the victim's job was left when it started
    assert terms(tmp_path, "leader")  # it was asked to stop, and then killed
    assert finish(victim)[0] == 75
    assert [runner_of(db, r["id"]) for r in reservations(cli, "--all")] == [None, None]


def start_args(tenant: str) -> list[str]:
    from harness import resgate_command

    return [*resgate_command(), "run", "--tenant", tenant, "--pool", "p"]
