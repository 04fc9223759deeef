"""Long work shows progress (README "Long work shows progress"): `import-state`, `export
--output` and `db upgrade` draw a bar on stderr when it is a terminal and the work takes
more than a second; never on a pipe, never on stdout, and not when `--json` output goes
to that same terminal.

Real processes under a pseudo-terminal. Most lower the second to nothing (the work
itself is then short), so they are quick and certain; one exports enough rows to take
longer than a second for real."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, resgate_command
from helpers import ok

from resgate.cli import progress

pytestmark = pytest.mark.sqlite_only

# The installed entry point, with the second before a bar lowered to nothing.
IMPATIENT = (
    "import sys, resgate.cli.progress as p; p.SHOW_AFTER = 0.0; "
    "from resgate.console import main; main()"
)


def impatient() -> list[str]:
    return [sys.executable, "-P", "-c", IMPATIENT]


@dataclass
class Run:
    code: int
    terminal: bytes  # what the pseudo-terminal showed
    stdout: bytes  # stdout when it is a pipe
    stderr: bytes  # stderr when it is a pipe


def run(argv: list[str], env: dict[str, str], *, stdout: str, stderr: str) -> Run:
    """Run `argv` with stdout and stderr each on the terminal ("tty") or a pipe."""
    master, slave = pty.openpty()
    streams = {"tty": slave, "pipe": subprocess.PIPE}
    child = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=streams[stdout], stderr=streams[stderr]
    )
    os.close(slave)
    out, err = (-1 if f is None else f.fileno() for f in (child.stdout, child.stderr))
    read = _drain([fd for fd in (master, out, err) if fd >= 0])
    os.close(master)
    for f in (child.stdout, child.stderr):
        if f is not None:
            f.close()
    child.wait(timeout=120)
    return Run(child.returncode, read[master], read.get(out, b""), read.get(err, b""))


def _drain(fds: list[int]) -> dict[int, bytes]:
    """Everything written to each of `fds` until every writer has closed it (the
    terminal's end then reads EIO), read side by side so that no writer blocks."""
    read = {fd: b"" for fd in fds}
    open_fds = list(fds)
    while open_fds:
        ready, _, _ = select.select(open_fds, [], [], 120)
        assert ready, "no output for 120 s"
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO
                data = b""
            if data:
                read[fd] += data
            else:
                open_fds.remove(fd)
    return read


def bar_of(label: str, shown: bytes) -> bool:
    """Whether `shown` holds a progress line of `label` (drawn after a carriage return)."""
    return f"\r{label}  ".encode() in shown and b"%" in shown


# ---------------------------------------------------------------- the bar itself


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bar_waits_a_second_then_draws_in_place_and_clears(monkeypatch):
    monkeypatch.setenv("COLUMNS", "70")
    clock, stream = Clock(), io.StringIO()
    bar = progress.Bar("export", "rows", stream=stream, clock=clock)
    bar(10, 100)
    clock.now += 0.9
    bar(20, 100)
    assert stream.getvalue() == ""  # under a second: nothing
    clock.now += 0.2
    bar(50, 100)
    line = stream.getvalue()
    assert line.startswith("\rexport  ") and "50%" in line and "50/100 rows" in line
    assert len(line) <= 70  # fits, short of the last column
    clock.now += 0.01
    bar(51, 100)
    assert stream.getvalue() == line  # redrawn at most every REDRAW_EVERY
    bar(100, 100)
    assert "100%" in stream.getvalue()  # but the end always
    bar.close()
    last = stream.getvalue().split("\r")
    assert last[-1] == "" and last[-2] == " " * len(last[-3])  # the line cleared


def test_the_bar_fits_a_narrow_terminal_and_an_unknown_total(monkeypatch):
    clock, stream = Clock(), io.StringIO()
    bar = progress.Bar("import-state", "rows", stream=stream, clock=clock)
    clock.now += 5
    monkeypatch.setenv("COLUMNS", "30")
    assert len(bar.line(5, 10, 5)) <= 29
    monkeypatch.setenv("COLUMNS", "80")
    assert bar.line(1234, None, 5) == "import-state  1,234 rows  5s"
    bar.close()
    assert stream.getvalue() == ""  # nothing drawn, nothing cleared


def test_no_bar_is_wanted_off_a_terminal():
    # Under pytest stderr is captured: not a terminal.
    with progress.shown("export") as on_progress:
        assert on_progress is None


# ---------------------------------------------------------------- export --output


@pytest.fixture
def history(cli, isolated_env: Path) -> Path:
    """A database with a pool, a tenant and some history."""
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    ok(cli, "tenant", "add", "--name", "t")
    add_history(isolated_env / "resgate.db", 5000)
    return isolated_env / "resgate.db"


def add_history(path: Path, rows: int, first: int = 1) -> None:
    """`rows` ended reservations of the first tenant and pool, ids from `first` on, in
    one statement."""
    with sqlite3.connect(path) as db:
        db.execute(
            f"""
            WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows})
            INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, ttl, status,
                                      created_at, ended_at)
            SELECT printf('%016x', n + {first - 1}),
                   (SELECT min(id) FROM tenants), (SELECT min(id) FROM pools),
                   1, 0, 0, NULL, 'released',
                   strftime('%Y-%m-%d %H:%M:%f', '2025-01-01', '+' || n || ' minutes') || '000',
                   strftime('%Y-%m-%d %H:%M:%f', '2025-01-01', '+' || (n + 1) || ' minutes')
                     || '000'
              FROM seq"""
        )
    db.close()


def test_export_output_shows_a_bar_on_the_terminal_and_nothing_on_stdout(
    subprocess_env, history: Path, tmp_path: Path
):
    report = tmp_path / "report.json"
    done = run(
        [*impatient(), "export", "--output", str(report)],
        subprocess_env,
        stdout="pipe",
        stderr="tty",
    )
    assert done.code == 0, done
    assert bar_of("export", done.terminal) and b"5,000/5,000 rows" in done.terminal
    assert done.terminal.endswith(b"\r")  # the line cleared again
    assert done.stdout == f"Report exported to {report} ({report.stat().st_size} bytes)\n".encode()
    # The same report as without a terminal.
    piped = subprocess.run(
        [*resgate_command(), "export"], env=subprocess_env, capture_output=True, check=True
    )
    assert _without_time(report.read_bytes()) == _without_time(piped.stdout)


def _without_time(report: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(report)
    del document["generated_at"]
    return document


def test_export_on_a_pipe_shows_no_bar(subprocess_env, history: Path, tmp_path: Path):
    done = subprocess.run(
        [*impatient(), "export", "--output", str(tmp_path / "r.csv")],
        env=subprocess_env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.startswith(b"Report exported to ")


def test_export_to_stdout_shows_no_bar(subprocess_env, history: Path):
    done = run([*impatient(), "export"], subprocess_env, stdout="pipe", stderr="tty")
    assert done.code == 0 and done.terminal == b""
    assert json.loads(done.stdout)["history"]


def test_work_of_less_than_a_second_shows_no_bar(subprocess_env, cli, tmp_path: Path):
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    done = run(
        [*resgate_command(), "export", "--output", str(tmp_path / "r.json")],
        subprocess_env,
        stdout="pipe",
        stderr="tty",
    )
    assert done.code == 0 and done.terminal == b""


def test_an_export_that_takes_more_than_a_second_shows_a_bar(
    subprocess_env, history: Path, tmp_path: Path
):
    """No lowering of the second: enough rows to take longer for real."""
    add_history(history, 400_000, first=10_000)
    done = run(
        [*resgate_command(), "export", "--format", "csv", "--output", str(tmp_path / "r.csv")],
        subprocess_env,
        stdout="pipe",
        stderr="tty",
    )
    assert done.code == 0, done
    assert bar_of("export", done.terminal) and b"/405,000 rows" in done.terminal
    assert done.stdout.startswith(b"Report exported to ")


# ---------------------------------------------------------------- import-state


def state_file(tmp_path: Path, entries: int) -> Path:
    """The Go tool's state file with `entries` released reservations."""
    start = datetime(2025, 1, 1)
    history = [
        {
            "id": f"{i:016x}",
            "tenant_name": "t",
            "pool_name": "p",
            "resources": {"cpu": 1, "memory": 10, "gpu": 0},
            "status": "active",
            "ttl": 0,
            "created_at": f"{start + timedelta(minutes=i):%Y-%m-%dT%H:%M:%SZ}",
            "released_at": f"{start + timedelta(minutes=i, seconds=30):%Y-%m-%dT%H:%M:%SZ}",
        }
        for i in range(entries)
    ]
    document = {
        "pools": {"p": {"name": "p", "total": {"cpu": 64, "memory": 1000, "gpu": 0}}},
        "tenants": {"t": {"name": "t", "priority": 5}},
        "reservations": {},
        "history": history,
    }
    path = tmp_path / "state.json"
    path.write_text(json.dumps(document, indent=2))
    return path


def test_import_state_shows_a_bar_and_writes_what_it_would_without(
    subprocess_env, tmp_path: Path, isolated_env: Path
):
    state = state_file(tmp_path, 6000)
    done = run(
        [*impatient(), "import-state", str(state)], subprocess_env, stdout="pipe", stderr="tty"
    )
    assert done.code == 0, done
    # 6,000 reservations and 12,002 events (create and release each, pool, tenant).
    assert bar_of("import-state", done.terminal) and b"/18,002 rows" in done.terminal
    assert b"18,002/18,002 rows" in done.terminal  # written batch by batch, to the end
    assert done.stdout.startswith(b"Imported ")
    assert b"\r" not in done.stdout
    verified = subprocess.run(
        [*resgate_command(), "audit", "verify", "--json"],
        env=subprocess_env,
        capture_output=True,
        check=True,
    )
    assert json.loads(verified.stdout)["events"] == 12_002
    with sqlite3.connect(isolated_env / "resgate.db") as db:
        assert db.execute("SELECT count(*), min(id), max(id) FROM reservations").fetchone() == (
            6000,
            f"{0:016x}",
            f"{5999:016x}",
        )
    db.close()


def test_import_state_json_on_the_same_terminal_shows_no_bar(subprocess_env, tmp_path: Path):
    state = state_file(tmp_path, 100)
    done = run(
        [*impatient(), "import-state", str(state), "--json"],
        subprocess_env,
        stdout="tty",
        stderr="tty",
    )
    assert done.code == 0, done
    assert b"\r" not in done.terminal.replace(b"\r\n", b"\n")
    assert json.loads(done.terminal)["created"]["reservations"] == 100


def test_import_state_json_elsewhere_still_shows_the_bar(subprocess_env, tmp_path: Path):
    state = state_file(tmp_path, 100)
    done = run(
        [*impatient(), "import-state", str(state), "--json"],
        subprocess_env,
        stdout="pipe",
        stderr="tty",
    )
    assert done.code == 0, done
    assert bar_of("import-state", done.terminal)
    assert json.loads(done.stdout)["created"]["reservations"] == 100


def test_import_state_on_a_pipe_shows_no_bar(subprocess_env, tmp_path: Path):
    done = subprocess.run(
        [*impatient(), "import-state", str(state_file(tmp_path, 100))],
        env=subprocess_env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == b""


def test_a_failing_import_shows_its_error_alone(subprocess_env, tmp_path: Path):
    state = tmp_path / "state.json"
    state.write_text('{"pools": {"p": {"name": "p", "total": {"cpu": 1}}}')  # cut short
    done = run(
        [*impatient(), "import-state", str(state)], subprocess_env, stdout="pipe", stderr="tty"
    )
    assert done.code == 1
    assert done.terminal.startswith(b"Error: ") and b"%" not in done.terminal


# ---------------------------------------------------------------- db upgrade


def test_db_upgrade_shows_the_backup_as_it_is_copied(subprocess_env, cli, isolated_env: Path):
    db = isolated_env / "resgate.db"
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    from resgate.store.schema import SCHEMA_HEAD

    previous = f"{int(SCHEMA_HEAD) - 1:04d}"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db}", "downgrade", previous],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=120,
    )
    done = run([*impatient(), "db", "upgrade"], subprocess_env, stdout="pipe", stderr="tty")
    assert done.code == 0, done
    assert bar_of("db upgrade: backup", done.terminal) and b"pages" in done.terminal
    assert done.stdout == f"Database upgraded from {previous} to revision {SCHEMA_HEAD}\n".encode()
    assert Path(f"{db}.bak-{previous}").is_file()
    # Nothing to do: nothing to show.
    again = run([*impatient(), "db", "upgrade"], subprocess_env, stdout="pipe", stderr="tty")
    assert again.code == 0 and again.terminal == b""
