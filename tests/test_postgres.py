"""PostgreSQL-specific behaviour (README "Where the data lives", "Exit codes"): connection
failures, schema upgrades under an advisory lock, the server's clock, and output that
matches SQLite's."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import REPO, env, resgate_command
from helpers import free_port, pg_admin, run_cli

from resgate.engine import pools, reservations, tenants
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.store.database import open_database, resolve_target
from resgate.store.schema import SCHEMA_HEAD

pytestmark = pytest.mark.postgres


def resgate(db: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*resgate_command(), "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
    )


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A socket that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_unreachable_server_is_one_clear_line(kind: str, request: pytest.FixtureRequest) -> None:
    port = free_port() if kind == "closed" else request.getfixturevalue("silent_server")
    url = f"postgresql+psycopg://alice:s3cret-pw@127.0.0.1:{port}/resgate"
    commands = [["list"], ["pool", "create", "--name", "p", "--cpu", "1"], ["db", "current"]]
    # Each silent attempt waits out the connect timeout: two commands show it.
    for args in commands if kind == "closed" else commands[:2]:
        started = time.monotonic()
        result = resgate(url, *args, timeout=30)
        elapsed = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        assert elapsed < 10
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: cannot connect to PostgreSQL at 127.0.0.1:{port}: ")
        assert "s3cret" not in result.stderr
        assert "Traceback" not in result.stderr


def alembic(db: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"db={db}", *args],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )


def test_older_schema_is_upgraded_only_by_db_upgrade(pg_server: str) -> None:
    with pg_admin(pg_server) as admin:
        admin.execute("DROP DATABASE IF EXISTS resgate_old WITH (FORCE)")
        admin.execute("CREATE DATABASE resgate_old")
    db = f"{pg_server}/resgate_old"
    alembic(db, "upgrade", "0001")
    # Rows written at the old revision survive the upgrade.
    import psycopg

    with psycopg.connect(db.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("INSERT INTO tenants (name, priority, created_at) VALUES ('old', 7, now())")
    for args in (["list"], ["tenant", "add", "--name", "new"]):
        result = resgate(db, *args)
        assert result.returncode == 1
        assert "at schema revision 0001" in result.stderr
        assert "resgate db upgrade" in result.stderr
    # Several hosts upgrading at once: the advisory lock lets one do it.
    procs = [
        subprocess.Popen(
            [*resgate_command(), "--db", db, "db", "upgrade"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = []
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        outcomes.append((proc.returncode, err))
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    current = resgate(db, "db", "current", "--json")
    assert current.stdout.strip().startswith("{")
    assert f'"revision": "{SCHEMA_HEAD}"' in current.stdout
    listed = resgate(db, "tenant", "list", "--json")
    assert '"name": "old"' in listed.stdout
    alembic(db, "downgrade", "base")
    alembic(db, "upgrade", "head")
    assert resgate(db, "db", "check").returncode == 0


def test_now_is_the_server_clock(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from resgate import clock

    class Skewed:
        def now(self) -> datetime:
            return datetime(1999, 1, 1)

    monkeypatch.setattr(clock, "SystemClock", Skewed)
    import resgate.store.database as database_module

    monkeypatch.setattr(database_module, "SystemClock", Skewed)
    database = open_database(resolve_target(pg_database), write=True)
    try:
        database.run(lambda tx: pools.create_pool(tx, "p", Amounts(1, 0, 0)), write=True)
        database.run(lambda tx: tenants.add_tenant(tx, "t", 5), write=True)
        info = database.run(
            lambda tx: reservations.reserve(tx, ReserveRequest("t", "p", Amounts(1, 0, 0), 60)),
            write=True,
        )
    finally:
        database.dispose()
    assert info.created_at.year >= 2026
    assert (info.expires_at - info.created_at).total_seconds() == 60


SCRIPT = [
    ["pool", "create", "--name", "gpu-box", "--cpu", "32", "--memory", "65536", "--gpu", "8"],
    ["pool", "create", "--name", "B-pool", "--cpu", "4"],
    ["pool", "create", "--name", "a-pool", "--memory", "10"],
    ["tenant", "add", "--name", "zed", "--priority", "5"],
    ["tenant", "add", "--name", "Zed", "--priority", "5"],
    ["tenant", "add", "--name", "boss", "--priority", "9", "--max-gpu", "4"],
    ["reserve", "--tenant", "zed", "--pool", "gpu-box", "--cpu", "12", "--gpu", "2"],
    ["reserve", "--tenant", "Zed", "--pool", "gpu-box", "--cpu", "30"],
    ["reserve", "--tenant", "Zed", "--pool", "B-pool", "--cpu", "4", "--ttl", "1h"],
    ["reserve", "--tenant", "boss", "--pool", "gpu-box", "--gpu", "5"],
    ["preempt", "--tenant", "boss", "--target", "zed"],
    ["pool", "resize", "--name", "B-pool", "--cpu", "2"],
    ["pool", "list"],
    ["tenant", "list"],
    ["list", "--all"],
    ["status"],
    ["pool", "list", "--json"],
    ["tenant", "list", "--json"],
    ["db", "check"],
]
MASKS = [
    (re.compile(r"\b[0-9a-f]{16}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+Z)?"), "<time>"),
    (re.compile(r"\b\d+m\d+s\b|\b\d+h\d+m\b|\b\d+s\b"), "<left>"),
]


def transcript(db: str) -> list[tuple[int, str, str]]:
    lines = []
    for args in SCRIPT:
        result = run_cli("--db", db, *args)
        text = result.stdout + result.stderr
        for pattern, mask in MASKS:
            text = pattern.sub(mask, text)
        # Table columns widen with the masked values; compare the cells.
        text = re.sub(r"[ -]+", " ", text)
        lines.append((result.code, " ".join(args), text))
    return lines


def test_output_matches_sqlite(pg_database: str, tmp_path: Path) -> None:
    on_sqlite = transcript(str(tmp_path / "same.db"))
    on_postgres = transcript(pg_database)
    assert on_postgres == on_sqlite
    assert [code for code, _, _ in on_sqlite] == [
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        3,
        0,
        4,
        0,
        4,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
