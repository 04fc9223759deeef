"""A write lock held longer than RESGATE_BUSY_TIMEOUT.

Another connection holds SQLite's write lock (an open `BEGIN IMMEDIATE`). Every
writing command waits for it up to the busy timeout, then fails with exit 5, a
message saying it may be retried, nothing on stdout, and no change at all; reads
go on meanwhile (WAL). A lock released within the timeout is simply waited for,
and the waiting writer then acts at the moment it got the lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import resgate

from resgate.engine import check, reservations
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.store.database import open_database, resolve_target

BUSY = (
    "Error: database is busy: the write lock was not free within {timeout}s; "
    "the command changed nothing and may be retried\n"
)


@pytest.fixture
def db(cli, db_path: Path) -> Path:
    for command in (
        ["pool", "create", "--name", "p", "--cpu", "8"],
        ["tenant", "add", "--name", "low", "--priority", "2"],
        ["tenant", "add", "--name", "high", "--priority", "9"],
        ["reserve", "--tenant", "low", "--pool", "p", "--cpu", "2", "--ttl", "1"],
    ):
        assert cli(*command).code == 0
    return db_path


def dump(path: Path) -> list[str]:
    connection = sqlite3.connect(str(path))
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


@pytest.fixture
def lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Hold the write lock the way a long-running writer would."""
    holder = sqlite3.connect(str(db), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def test_every_write_waits_then_exits_5_and_changes_nothing(
    cli, db: Path, lock: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = cli("list", "--json").stdout.split('"id": "')[1][:16]
    before = dump(db)
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "0.3")
    writes = [
        ["reserve", "--tenant", "high", "--pool", "p", "--cpu", "1"],
        ["unreserve", "--id", rid],
        ["extend", "--id", rid, "--ttl", "60"],
        ["preempt", "--tenant", "high", "--target", "low"],
        ["pool", "create", "--name", "q", "--cpu", "1"],
        ["pool", "resize", "--name", "p", "--cpu", "4"],
        ["tenant", "add", "--name", "new"],
        ["sweep"],
    ]
    for command in writes:
        started = time.monotonic()
        result = cli(*command)
        waited = time.monotonic() - started
        assert (result.code, result.stdout, result.stderr) == (5, "", BUSY.format(timeout="0.3"))
        assert waited >= 0.25, f"{command} gave up after {waited:.2f}s, before the timeout"
    # Readers are not blocked by the writer (WAL).
    assert cli("list", "--json").code == 0
    assert cli("status").code == 0
    lock.execute("ROLLBACK")
    assert dump(db) == before
    assert cli("db", "check").code == 0


@pytest.mark.slow
def test_real_process_exits_5(db: Path, lock: sqlite3.Connection, monkeypatch) -> None:
    before = dump(db)
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "0.5")
    result = resgate(db, "reserve", "--tenant", "high", "--pool", "p", "--cpu", "1", "--json")
    assert (result.code, result.stdout, result.stderr) == (5, "", BUSY.format(timeout="0.5"))
    lock.execute("ROLLBACK")
    assert dump(db) == before
    check = resgate(db, "db", "check")
    assert check.code == 0, check.stderr


def test_a_lock_released_in_time_is_waited_for(
    db: Path, lock: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Contention waits within the busy timeout; the writer then works at the
    time it got the lock, not the time it started waiting (it read the clock
    before taking the lock once: test_hammer found that)."""
    monkeypatch.setenv("RESGATE_BUSY_TIMEOUT", "10")
    released: list[datetime] = []

    def release() -> None:
        released.append(datetime.now(UTC).replace(tzinfo=None))
        lock.execute("ROLLBACK")

    timer = threading.Timer(0.5, release)
    database = open_database(resolve_target(str(db)), write=True)
    try:
        started = time.monotonic()
        timer.start()
        info = database.run(
            lambda tx: reservations.reserve(tx, ReserveRequest("high", "p", Amounts(cpu=1))),
            write=True,
        )
        waited = time.monotonic() - started
        timer.join()
        assert waited >= 0.45
        assert info.created_at >= released[0]
        report = database.run(check.check, write=False)
        assert report.problems == []
    finally:
        timer.cancel()
        database.dispose()
