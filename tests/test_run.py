"""`resgate run` with real processes (README "GPU devices"): the child's environment, exit
statuses, signal forwarding, lease renewal, preemption, crashes, terminals."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from harness import resgate_command

pytestmark = pytest.mark.sqlite_only

TIMEOUT = 60

# The job the tests run. It writes `ready` (its pid) once its handlers are in place;
# a trapped signal is appended to `got`; a grandchild's pid goes to `grandchild`.
CHILD = r"""
import os, signal, subprocess, sys, time
mode, out = sys.argv[1], sys.argv[2]
def note(name, text):
    with open(os.path.join(out, name), "a") as f:
        f.write(text)
got = []
def trap(signum, frame):
    got.append(signum)
    note("got", signal.Signals(signum).name + "\n")
if mode in ("trap", "count", "stubborn"):
    signal.signal(signal.SIGINT, trap)
    signal.signal(signal.SIGTERM, trap)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, lambda *_: note("got", "SIGTERM\n"))
if mode == "count":
    note("foreground", str(os.tcgetpgrp(0) == os.getpgrp()))
if mode == "grandchild":
    worker = subprocess.Popen(["sleep", "60"])
    note("grandchild", str(worker.pid))
note("ready", str(os.getpid()))
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if got and mode in ("trap", "count"):
        time.sleep(0.5)  # a second copy of the signal would arrive meanwhile
        break
    if mode == "grandchild":
        worker.wait()
        break
    time.sleep(0.05)
note("count", str(len(got)))
"""


@pytest.fixture
def setup(cli, subprocess_env, tmp_path: Path) -> dict[str, str]:
    for args in (
        ("pool", "create", "--name", "p", "--cpu", "4", "--gpu", "2"),
        ("tenant", "add", "--name", "t"),
        ("tenant", "add", "--name", "boss", "--priority", "9"),
    ):
        assert cli(*args).code == 0
    (tmp_path / "child.py").write_text(CHILD)
    return subprocess_env


def child(tmp_path: Path, mode: str) -> list[str]:
    return [sys.executable, str(tmp_path / "child.py"), mode, str(tmp_path)]


def start(env: dict[str, str], *args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*resgate_command(), "run", "--tenant", "t", "--pool", "p", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
    return path.read_text()


def wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reservations(cli, *args: str) -> list[dict]:
    done = cli("list", "--json", *args)
    assert done.code == 0, done.stderr
    return json.loads(done.stdout)


def status_of(cli, reservation_id: str) -> str:
    (row,) = [r for r in reservations(cli, "--all") if r["id"] == reservation_id]
    return row["status"]


@pytest.fixture
def reaper() -> Iterator[Callable[[int], None]]:
    """Kills the process groups it is given at the end of the test, whatever happened."""
    groups: list[int] = []
    yield groups.append
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


@pytest.mark.parametrize(("gpus", "visible"), [(["--gpu", "1"], "0"), (["--gpu-ids", "1"], "1")])
def test_child_sees_its_reservation_and_it_is_released(setup, cli, gpus, visible):
    done = start(
        setup,
        *gpus,
        "--",
        "sh",
        "-c",
        'echo "$RESGATE_RESERVATION_ID $RESGATE_TENANT $RESGATE_POOL [$CUDA_VISIBLE_DEVICES]"',
    )
    stdout, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 0 and stderr == "", stderr
    reservation_id, tenant, pool, devices = stdout.split()
    assert (tenant, pool) == ("t", "p")
    (row,) = reservations(cli, "--all")
    assert row["id"] == reservation_id and row["status"] == "released"
    assert devices == f"[{visible}]" and row["gpu_ids"] == [int(visible)]


@pytest.mark.parametrize(
    ("script", "code"), [("exit 0", 0), ("exit 7", 7), ("kill -USR1 $$", 128 + signal.SIGUSR1)]
)
def test_exit_status_is_the_childs(setup, cli, script, code):
    done = start(setup, "--cpu", "1", "--", "sh", "-c", script)
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == code, stderr
    assert [r["status"] for r in reservations(cli, "--all")] == ["released"]


def test_command_not_found(setup, cli):
    done = start(setup, "--cpu", "1", "--", "no-such-command-here")
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 127
    assert stderr == "Error: command not found: no-such-command-here\n"
    assert [r["status"] for r in reservations(cli, "--all")] == ["released"]


def test_reservation_failure_never_starts_the_command(setup, cli, tmp_path: Path):
    marker = tmp_path / "ran"
    done = start(setup, "--cpu", "5", "--", "touch", str(marker))
    _, stderr = done.communicate(timeout=TIMEOUT)
    reserve = cli("reserve", "--tenant", "t", "--pool", "p", "--cpu", "5")
    assert (done.returncode, stderr) == (reserve.code, reserve.stderr) == (3, stderr)
    assert stderr.startswith("Error: insufficient resources in 'p'")
    assert not marker.exists()
    assert reservations(cli, "--all") == []


def test_ttl_zero_is_refused(setup, cli, tmp_path: Path):
    done = start(setup, "--cpu", "1", "--ttl", "0", "--", "touch", str(tmp_path / "ran"))
    _, stderr = done.communicate(timeout=TIMEOUT)
    assert done.returncode == 2 and stderr.startswith("Error: invalid duration for --ttl")
    assert not (tmp_path / "ran").exists()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_are_forwarded_even_when_started_ignoring_sigint(
    setup, cli, tmp_path, signum, reaper
):
    run = start(setup, "--cpu", "1", "--", *child(tmp_path, "trap"), preexec_fn=_ignore_sigint)
    reaper(int(wait_for(tmp_path / "ready")))
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 0, stderr
    assert (tmp_path / "got").read_text() == f"{signal.Signals(signum).name}\n"
    assert [r["status"] for r in reservations(cli, "--all")] == ["released"]


def test_grandchild_is_stopped_too(setup, cli, tmp_path, reaper):
    run = start(setup, "--cpu", "1", "--", *child(tmp_path, "grandchild"))
    reaper(int(wait_for(tmp_path / "ready")))
    grandchild = int(wait_for(tmp_path / "grandchild"))
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 128 + signal.SIGTERM, stderr
    assert not alive(grandchild)


def test_sigint_from_a_terminal_arrives_once(setup, tmp_path, reaper):
    master, slave = os.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        run = start(
            setup,
            "--cpu",
            "1",
            "--",
            *child(tmp_path, "count"),
            stdin=slave,
            start_new_session=True,
            preexec_fn=controlling_terminal,
        )
        reaper(run.pid)
        reaper(int(wait_for(tmp_path / "ready")))
        os.write(master, b"\x03")
        _, stderr = run.communicate(timeout=TIMEOUT)
    finally:
        os.close(slave)
        os.close(master)
    assert run.returncode == 0, stderr
    assert (tmp_path / "foreground").read_text() == "True"
    assert (tmp_path / "count").read_text() == "1"


@pytest.mark.slow
def test_lease_is_renewed_while_the_command_runs(setup, cli, tmp_path):
    run = start(
        setup, "--cpu", "1", "--ttl", "3s", "--", "sh", "-c", "touch ready; sleep 10", cwd=tmp_path
    )
    wait_for_file(tmp_path / "ready")
    seen = []
    while run.poll() is None:
        (row,) = reservations(cli, "--all")
        seen.append(row["status"])
        if row["status"] != "active":
            break
        time.sleep(0.2)
    # Active throughout; released (by resgate, as the command ended) at the end.
    assert set(seen[:-1]) == {"active"} and seen[-1] in ("active", "released"), seen
    _, stderr = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 0 and stderr == "", stderr
    assert len(seen) >= 10, seen
    assert [r["status"] for r in reservations(cli, "--all")] == ["released"]
    done = cli("audit", "log", "--action", "reservation.renew", "--json")
    assert done.code == 0, done.stderr
    assert len(json.loads(done.stdout)) >= 2, "renewals are audit events reservation.renew"


@pytest.mark.slow
def test_killed_resgate_leaves_a_reservation_that_expires_within_one_ttl(
    setup, cli, tmp_path, reaper
):
    run = start(setup, "--cpu", "1", "--ttl", "2s", "--", *child(tmp_path, "trap"))
    reaper(int(wait_for(tmp_path / "ready")))
    run.kill()
    killed_at = datetime.now(UTC)
    run.wait(timeout=TIMEOUT)  # not communicate(): the orphaned job still holds the pipes
    for stream in (run.stdout, run.stderr):
        assert stream is not None
        stream.close()
    (row,) = reservations(cli, "--all")
    expires_at = datetime.fromisoformat(row["expires_at"])
    assert expires_at <= killed_at + timedelta(seconds=2.2)  # within one TTL (and a bit)
    deadline = time.monotonic() + 15
    while row["status"] == "active":
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
        (row,) = reservations(cli, "--all")
    assert row["status"] == "expired" and row["ended_at"] == row["expires_at"]


@pytest.mark.slow
def test_preemption_stops_the_job(setup, cli, tmp_path, reaper):
    run = start(
        setup, "--cpu", "1", "--ttl", "3s", "--grace", "5s", "--", *child(tmp_path, "grandchild")
    )
    reaper(int(wait_for(tmp_path / "ready")))
    grandchild = int(wait_for(tmp_path / "grandchild"))
    (row,) = reservations(cli)
    assert cli("preempt", "--tenant", "boss", "--target", "t").code == 0
    started = time.monotonic()
    _, stderr = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 75
    assert stderr == f"Error: reservation {row['id']} was preempted by 'boss'; stopping the job\n"
    assert time.monotonic() - started < 4.5  # renewal poll (1 s) + SIGTERM, before --grace
    assert not alive(grandchild)
    assert status_of(cli, row["id"]) == "preempted"


@pytest.mark.slow
def test_a_job_ignoring_sigterm_is_killed_after_the_grace(setup, cli, tmp_path, reaper):
    run = start(
        setup, "--cpu", "1", "--ttl", "3s", "--grace", "1s", "--", *child(tmp_path, "stubborn")
    )
    pid = int(wait_for(tmp_path / "ready"))
    reaper(pid)
    assert cli("preempt", "--tenant", "boss", "--target", "t").code == 0
    started = time.monotonic()
    _, stderr = run.communicate(timeout=TIMEOUT)
    assert run.returncode == 75, stderr
    assert time.monotonic() - started >= 1  # SIGKILL only after --grace
    assert "'boss'" in stderr
    assert (tmp_path / "got").read_text() == "SIGTERM\n"  # got it, ignored it, was killed
    assert not (tmp_path / "count").exists()
    assert not alive(pid)
