"""The installed `resgate` as real processes: pipes, signals, terminals, colour,
encodings, and no traceback for a user's mistake."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import resgate_command

pytestmark = pytest.mark.sqlite_only

ANSI = "\x1b["
TIMEOUT = 60


def run(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*resgate_command(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        **kwargs,
    )


def ok(env: dict[str, str], *args: str) -> str:
    done = run(env, *args)
    assert done.returncode == 0 and done.stderr == "", (args, done)
    return done.stdout


TIME_LINE = re.compile(r"^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", re.M)


@pytest.fixture
def busy_pool(cli, subprocess_env) -> dict[str, str]:
    """A pool at 75 % CPU (health `warning`, painted yellow on a terminal); made
    in-process (quicker), in the database the subprocesses use."""
    for args in (
        ("pool", "create", "--name", "p", "--cpu", "4"),
        ("tenant", "add", "--name", "t"),
        ("reserve", "--tenant", "t", "--pool", "p", "--cpu", "3"),
    ):
        assert cli(*args).code == 0
    return subprocess_env


# ---------------------------------------------------------------- pipes


def _many_rows(path: Path, count: int) -> None:
    """`count` active reservations, written straight into the file (fast)."""
    with sqlite3.connect(path) as connection:
        (pool_id,) = connection.execute("SELECT id FROM pools WHERE name = 'big'").fetchone()
        for n in range(count):
            tenant_id = connection.execute(
                "INSERT INTO tenants (name, priority, created_at) "
                "VALUES (?, 5, '2026-01-01 00:00:00.000000')",
                (f"t{n:05d}",),
            ).lastrowid
            connection.execute(
                "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, "
                "created_at) VALUES (?, ?, ?, 1, 0, 0, 'active', '2026-01-01 00:00:01.000000')",
                (f"{n:016x}", tenant_id, pool_id),
            )
    connection.close()


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["list", "--json"],
        ["export"],
        ["export", "--format", "csv"],
        ["tenant", "list"],
        ["watch", "--interval", "0.01", "--count", "1000"],
    ],
)
def test_broken_pipe_is_quiet(cli, subprocess_env, db_path: Path, args: list[str]):
    assert cli("pool", "create", "--name", "big", "--cpu", "100000").code == 0
    _many_rows(db_path, 1500)
    producer = subprocess.Popen(
        [*resgate_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env,
    )
    head = subprocess.Popen(["head", "-1"], stdin=producer.stdout, stdout=subprocess.PIPE)
    assert producer.stdout is not None and producer.stderr is not None
    producer.stdout.close()  # only `head` reads it now
    first, _ = head.communicate(timeout=TIMEOUT)
    stderr = producer.stderr.read()
    producer.stderr.close()
    assert producer.wait(timeout=TIMEOUT) == 0
    assert stderr == b""
    assert first.strip()


# ---------------------------------------------------------------- watch


def test_watch_count_prints_each_draw_after_a_time_line(busy_pool):
    done = run(busy_pool, "watch", "--count", "2", "--interval", "0.1")
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("--- ")
    assert len(TIME_LINE.findall(done.stdout)) == 2
    first, second = TIME_LINE.split(done.stdout)[1:]
    assert first.startswith("\nReservations: 1 active") and first.endswith("\n")
    assert first == second
    assert "\x1b[2J" not in done.stdout and ANSI not in done.stdout
    assert "Watch stopped." not in done.stdout


def _read_until(stream, marker: str, deadline: float) -> str:
    """Read from a pipe until `marker` has been seen (or fail at the deadline)."""
    seen = ""
    fd = stream.fileno()
    while marker not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {marker!r}; got {seen!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536).decode()
            assert chunk, f"stream closed before {marker!r}; got {seen!r}"
            seen += chunk
    return seen


def test_watch_rereads_the_database(busy_pool):
    watcher = subprocess.Popen(
        [*resgate_command(), "watch", "--count", "2", "--interval", "1.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=busy_pool,
    )
    try:
        first = _read_until(watcher.stdout, "Tenants:", time.monotonic() + TIMEOUT)
        assert "newpool" not in first
        ok(busy_pool, "pool", "create", "--name", "newpool", "--gpu", "2")
        rest, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        watcher.kill()
        watcher.wait()
    assert watcher.returncode == 0, err
    second = TIME_LINE.split(first + rest.decode())[-1]
    assert "newpool" in second


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_stops_on_signals(busy_pool, signum):
    watcher = subprocess.Popen(
        [*resgate_command(), "watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=busy_pool,
        # As a shell starts a background job: SIGINT ignored. watch must install
        # its handlers itself.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        seen = _read_until(watcher.stdout, "Tenants:", time.monotonic() + TIMEOUT)
        watcher.send_signal(signum)
        rest, err = watcher.communicate(timeout=TIMEOUT)
    finally:
        watcher.kill()
        watcher.wait()
    out = seen + rest.decode()
    assert watcher.returncode == 0, (out, err)
    assert out.endswith("Watch stopped.\n")
    assert err == b""


def test_status_on_a_terminal_is_coloured_and_watch_clears(busy_pool):
    out = _on_terminal(busy_pool, "pool", "list")
    assert ANSI in out
    out = _on_terminal(dict(busy_pool, NO_COLOR="1"), "pool", "list")
    assert ANSI not in out
    out = _on_terminal(busy_pool, "watch", "--count", "1")
    assert "\x1b[2J" in out and not TIME_LINE.search(out.replace("\r\n", "\n"))


def _on_terminal(env: dict[str, str], *args: str) -> str:
    """Run with stdout on a pseudo-terminal; return what it printed there."""
    main, child = pty.openpty()
    try:
        process = subprocess.Popen(
            [*resgate_command(), *args], stdout=child, stderr=subprocess.PIPE, env=env
        )
        os.close(child)
        chunks = []
        while True:
            try:
                ready, _, _ = select.select([main], [], [], TIMEOUT)
                if not ready:
                    break
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        os.close(main)
    assert process.returncode == 0, err
    return b"".join(chunks).decode()


# ---------------------------------------------------------------- colour


def test_colour_policy_on_pipes(busy_pool):
    plain = ok(busy_pool, "pool", "list")
    assert ANSI not in plain and "warning" in plain
    assert ANSI not in ok(busy_pool, "status")
    always = ok(busy_pool, "--color", "always", "pool", "list")
    assert ANSI in always
    assert ANSI not in always.splitlines()[0]  # headers carry no colour
    assert ANSI in ok(busy_pool, "--color", "always", "status")
    forced = dict(busy_pool, FORCE_COLOR="1")
    assert ANSI in ok(forced, "pool", "list")
    assert ANSI not in ok(forced, "--color", "never", "pool", "list")
    no_colour = dict(busy_pool, NO_COLOR="1")
    assert ANSI not in ok(no_colour, "pool", "list")
    assert ANSI in ok(no_colour, "--color", "always", "pool", "list")
    # JSON is never painted.
    assert ANSI not in ok(forced, "--color", "always", "pool", "list", "--json")


# ---------------------------------------------------------------- encodings


def test_ascii_stdout_falls_back(busy_pool):
    env = dict(busy_pool, PYTHONIOENCODING="ascii")
    status = ok(env, "status")
    status.encode("ascii")
    assert "#" * 15 + "." * 5 in status  # 75 % of 20 cells
    assert "Reservations: 1 active - last 24h" in status
    created = ok(env, "pool", "create", "--name", "q", "--cpu", "1")
    assert created == "Pool 'q' created - CPU: 1  Memory: 0MB  GPU: 0\n"
    utf8 = ok(dict(busy_pool, PYTHONIOENCODING="utf-8"), "status")
    assert "█" * 15 + "░" * 5 in utf8 and " — last 24h" in utf8


# ---------------------------------------------------------------- mistakes


MISTAKES = [
    (["pool", "create", "--name", "p", "--cpu", "-1"], 2),
    (["pool", "create", "--name", "bad name", "--cpu", "1"], 2),
    (["frobnicate"], 2),
    (["list", "--frob"], 2),
    (["reserve", "--tenant", "t"], 2),
    (["reserve", "--tenant", "ghost", "--pool", "p", "--cpu", "1"], 1),
    (["unreserve", "--id", "0123456789abcdef"], 1),
    (["pool", "create", "--name", "p", "--cpu", "1"], 4),
    (["reserve", "--tenant", "t", "--pool", "p", "--cpu", "2"], 4),
    (["--db", "/", "list"], 1),
    (["--db", "/etc/hostname", "list"], 1),
    (["watch", "--interval", "0"], 2),
    (["export", "--output", "/nonexistent-dir/r.json"], 1),
]


def test_no_traceback_for_mistakes(busy_pool):
    for args, code in MISTAKES:
        done = run(busy_pool, *args)
        assert done.returncode == code, done
        assert done.stdout == ""
        assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr


def test_python_dash_m(subprocess_env, tmp_path: Path):
    from resgate import __version__

    done = subprocess.run(
        [sys.executable, "-m", "resgate", "version"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=TIMEOUT,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"resgate {__version__}\n", "")
    done = subprocess.run(
        [sys.executable, "-m", "resgate", "pool", "list", "--json"],
        capture_output=True,
        text=True,
        env=subprocess_env,
        timeout=TIMEOUT,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == []
