"""SIGINT and SIGTERM tell the truth (README, "Exit codes"): exit 130/143 means
the transaction rolled back; a signal that lands once the commit is sent lets the
command finish and report (exit 0); `resgate run` gives back what it reserved.
Real processes on a real file and a real PostgreSQL server."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import env, resgate_command
from helpers import run_cli, write_lock_held

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

INTERRUPTED = "Error: interrupted; nothing was changed\n"
TERMINATED = "Error: terminated; nothing was changed\n"


class Peek:
    """Reads the database behind resgate's back, as fast as it can poll."""

    def __init__(self) -> None:
        url = os.environ["RESGATE_DB"]
        self.postgres = "://" in url
        if self.postgres:
            import psycopg

            self.connection: Any = psycopg.connect(
                url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
        else:
            self.connection = sqlite3.connect(url, isolation_level=None)

    def statuses(self, tenant: str) -> list[str]:
        mark = "%s" if self.postgres else "?"
        rows = self.connection.execute(
            "SELECT r.status FROM reservations r JOIN tenants t ON t.id = r.tenant_id "
            f"WHERE t.name = {mark}",
            (tenant,),
        ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def peek() -> Iterator[Peek]:
    assert run_cli("pool", "create", "--name", "box", "--cpu", "1000", "--gpu", "4").code == 0
    reader = Peek()
    yield reader
    reader.close()


def add_tenants(count: int) -> list[str]:
    names = [f"t{i}" for i in range(count)]
    for name in names:
        assert run_cli("tenant", "add", "--name", name).code == 0
    return names


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*resgate_command(), *args],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def signal_when(process: subprocess.Popen[str], condition: Callable[[], bool], signum: int) -> bool:
    """Send `signum` the instant `condition` holds; False if the process ended first."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if condition():
            process.send_signal(signum)
            return True
        if process.poll() is not None:
            return False
    raise AssertionError("the condition never held")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_once_the_row_is_visible_lets_the_command_finish(
    peek: Peek, signum: int, backend: str
) -> None:
    tries = 12 if backend == "sqlite" else 6
    for tenant in add_tenants(tries):
        process = start("reserve", "--tenant", tenant, "--pool", "box", "--cpu", "1")
        signal_when(process, lambda t=tenant: peek.statuses(t) == ["active"], signum)
        code, stdout, stderr = finish(process)
        # Committed, so it must say so: not 130, not a traceback.
        assert (code, stderr) == (0, ""), (tenant, code, stderr)
        assert "Reservation created:" in stdout


def test_a_signal_at_any_moment_means_exactly_what_the_exit_code_says(
    peek: Peek, backend: str
) -> None:
    rng = random.Random(14)
    tries = 16 if backend == "sqlite" else 8
    for tenant in add_tenants(tries):
        process = start("reserve", "--tenant", tenant, "--pool", "box", "--cpu", "1")
        # From once the interpreter has started (a signal inside its own
        # start-up is beyond any program) to past the commit.
        time.sleep(rng.uniform(0.1, 0.7))
        process.send_signal(signal.SIGINT)
        code, stdout, stderr = finish(process)
        statuses = peek.statuses(tenant)
        if code == 130:
            assert (stdout, stderr, statuses) == ("", INTERRUPTED, []), tenant
        else:
            assert (code, stderr, statuses) == (0, "", ["active"]), (tenant, code, stderr)
            assert "Reservation created:" in stdout


@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGINT, 130, INTERRUPTED), (signal.SIGTERM, 143, TERMINATED)],
)
def test_a_signal_before_the_commit_rolls_back_and_says_so(
    peek: Peek, signum: int, code: int, message: str
) -> None:
    (tenant,) = add_tenants(1)
    with write_lock_held():
        process = start("reserve", "--tenant", tenant, "--pool", "box", "--cpu", "1")
        time.sleep(1.5)  # started, and waiting for the lock
        assert process.poll() is None
        process.send_signal(signum)
        time.sleep(0.3)
    assert finish(process) == (code, "", message)
    assert peek.statuses(tenant) == []


def test_run_interrupted_once_its_reservation_commits_gives_it_back(
    peek: Peek, tmp_path: Path, backend: str
) -> None:
    tries = 6 if backend == "sqlite" else 3
    for tenant in add_tenants(tries):
        marker = tmp_path / f"{tenant}.started"
        process = start(
            "run", "--tenant", tenant, "--pool", "box", "--gpu", "1", "--",
            "sh", "-c", f"touch {marker}; sleep 30",
        )  # fmt: skip
        signal_when(process, lambda t=tenant: peek.statuses(t) != [], signal.SIGINT)
        code, _, stderr = finish(process)
        assert code == 130, (tenant, stderr)
        assert "Traceback" not in stderr
        # Whether or not the job had started, nothing is held afterwards.
        assert peek.statuses(tenant) == ["released"]
        # Told "before sh started" only when COMMAND never ran. (No marker alone
        # proves nothing: the forwarded SIGINT may end sh before its `touch`.)
        if stderr.startswith("Error: interrupted before sh started; releasing"):
            assert not marker.exists(), stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_always_stops_on_a_signal(signum: int) -> None:
    rng = random.Random(signum)
    for _ in range(8):
        process = start("watch", "--interval", "0.01")
        time.sleep(rng.uniform(0.6, 1.4))  # somewhere in a draw, a close or a sleep
        process.send_signal(signum)
        code, stdout, stderr = finish(process)
        assert (code, stderr) == (0, ""), stderr
        assert stdout.rstrip().endswith("Watch stopped.")
