"""Waiting for the write lock (README "One database for the whole machine"): a command
that waits for another writer stops on SIGINT or SIGTERM within 0.2 s (exit 130 or
143, nothing changed), since SQLite is asked for the lock in short tries with the
signal handlers run between them; on a terminal it says once, after a second,
that it is waiting; elsewhere it says nothing but the outcome.

Real processes, on a real file and a real PostgreSQL server; another connection
holds what every resgate writer takes first (helpers.write_lock_held)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from harness import env, resgate_command
from helpers import run_cli, write_lock_held

from resgate.store.database import open_database, resolve_target

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

WAITING = "waiting for the database lock (another resgate command is writing)…"
RESERVE = ("reserve", "--tenant", "t", "--pool", "p", "--cpu", "1")
# How long after a signal the process must be gone, exit code collected.
PROMPT = 0.2


@pytest.fixture
def ready() -> None:
    assert run_cli("pool", "create", "--name", "p", "--cpu", "8").code == 0
    assert run_cli("tenant", "add", "--name", "t").code == 0


def everything() -> tuple[str, str]:
    """What a write would change: every reservation and the audit log (read while
    the lock is held: readers are not blocked)."""
    reservations = run_cli("list", "--all", "--json")
    events = run_cli("audit", "log", "--json")
    assert reservations.code == 0 and events.code == 0, (reservations, events)
    return reservations.stdout, events.stdout


def start(*args: str, stderr: int | None = subprocess.PIPE, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*resgate_command(), *args],
        env=env(**{"RESGATE_BUSY_TIMEOUT": "30", **extra}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def waiting_for_the_lock(process: subprocess.Popen[str]) -> bool:
    """Whether `process` has got as far as waiting for the lock: on PostgreSQL its
    session waits on a lock; on SQLite it has the database open (it then waits
    within moments: the file is only looked at before)."""
    url = os.environ["RESGATE_DB"]
    if "://" in url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as peek:
            row = peek.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        return row is not None and row[0] > 0
    fds = Path(f"/proc/{process.pid}/fd")
    try:
        links = [os.readlink(fd) for fd in fds.iterdir()]
    except FileNotFoundError:  # the process has gone
        return False
    return url in links


def until_waiting(process: subprocess.Popen[str]) -> float:
    """Return (time.monotonic()) once `process` waits for the lock."""
    deadline = time.monotonic() + 60
    while not waiting_for_the_lock(process):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never started waiting"
        time.sleep(0.01)
    return time.monotonic()


def signalled(process: subprocess.Popen[str], signum: int) -> tuple[float, int]:
    """Send `signum`; how long until the process was gone, and its exit code."""
    watchdog = threading.Timer(20, process.kill)
    watchdog.start()
    try:
        sent = time.monotonic()
        process.send_signal(signum)
        code = process.wait()  # no timeout: waitpid itself, not a polling loop
        return time.monotonic() - sent, code
    finally:
        watchdog.cancel()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [
        (signal.SIGINT, 130, "Error: interrupted; nothing was changed\n"),
        (signal.SIGTERM, 143, "Error: terminated; nothing was changed\n"),
    ],
)
def test_a_signal_while_waiting_for_the_lock_stops_the_command_at_once(
    ready: None, signum: int, code: int, message: str
) -> None:
    before = everything()
    with write_lock_held():
        # Early in the wait, within a try, and past the second of the notice.
        for delay in (0.05, 0.37, 1.3):
            process = start(*RESERVE)
            until_waiting(process)
            time.sleep(delay)
            took, exit_code = signalled(process, signum)
            stdout, stderr = process.communicate()
            assert (exit_code, stdout, stderr) == (code, "", message), delay
            assert took < PROMPT, f"{took:.3f}s after the signal (waited {delay}s)"
        assert everything() == before
    assert everything() == before
    # The lock is free: the same command goes through.
    assert run_cli(*RESERVE).code == 0


def read_for(master: int, seconds: float) -> list[tuple[float, bytes]]:
    """What the terminal shows within `seconds`, each piece with its time."""
    pieces: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([master], [], [], left)
        if not readable:
            continue
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: nobody has the terminal open any more
            break
        if not data:
            break
        pieces.append((time.monotonic(), data))
    return pieces


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_on_a_terminal_a_command_says_once_that_it_waits(ready: None) -> None:
    master, slave = pty.openpty()
    try:
        with write_lock_held():
            process = start(*RESERVE, stderr=slave)
            os.close(slave)
            slave = -1
            since = until_waiting(process)
            pieces = read_for(master, 2.6)
        stdout, _ = process.communicate(timeout=60)
        pieces += read_for(master, 0.5)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert process.returncode == 0, pieces
    assert stdout.startswith("Reservation created:")
    shown = b"".join(data for _, data in pieces).decode()
    # Once, on its own line (the terminal turns \n into \r\n).
    assert shown == WAITING + "\r\n", shown
    after = pieces[0][0] - since
    assert 0.9 <= after <= 1.8, f"told after {after:.2f}s of waiting"


def test_off_a_terminal_only_the_outcome_is_said(ready: None) -> None:
    before = everything()
    with write_lock_held():
        process = start(*RESERVE, RESGATE_BUSY_TIMEOUT="1.6")
        stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout) == (5, "")
    assert stderr.startswith("Error: database is busy: ") and stderr.count("\n") == 1, stderr
    assert "within 1.6s" in stderr
    assert everything() == before


def test_the_store_calls_on_wait_once_after_a_second(ready: None) -> None:
    """The hook the CLI gives on a terminal; the store knows nothing of terminals."""
    calls: list[float] = []
    database = open_database(
        resolve_target(None), write=True, on_wait=lambda: calls.append(time.monotonic())
    )
    result: list[str] = []
    worker = threading.Thread(
        target=lambda: result.append(database.run(lambda tx: "done", write=True))
    )
    try:
        with write_lock_held():
            started = time.monotonic()
            worker.start()
            time.sleep(2.5)
            assert result == [], "the write did not wait for the lock"
        worker.join(30)
        assert result == ["done"]
        assert len(calls) == 1, calls
        assert 0.95 <= calls[0] - started <= 1.8, calls[0] - started
        # A write that does not wait says nothing.
        database.run(lambda tx: None, write=True)
        assert len(calls) == 1
    finally:
        worker.join(30)
        database.dispose()
