"""The tickets of the line (README "Waiting in line", migration 0010), kept by the
database itself: each rule is proved by writing with `sqlite3` or `psycopg` behind
resgate's back, on both databases."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pytest
from helpers import alembic, js, ok, raw_sql

pytestmark = pytest.mark.usefixtures("backend")

NOW = "2026-12-03 12:00:00.000000"
LATER = "2026-12-03 13:00:00.000000"


def ticket(n: int, *, status: str = "waiting", key: str | None = None, **columns: Any) -> str:
    """An INSERT of ticket `n` in pool 1 for tenant 1."""
    values: dict[str, Any] = {
        "id": f"{n:016x}", "tenant_id": 1, "pool_id": 1, "cpu": 1, "memory": 0, "gpu": 0,
        "preempt": False, "request_id": key, "created_by": "alice", "enqueued_at": NOW,
        "status": status, "ended_at": None if status == "waiting" else LATER,
    }  # fmt: skip
    values.update(columns)
    shown = ", ".join(_literal(v) for v in values.values())
    return f"INSERT INTO requests ({', '.join(values)}) VALUES ({shown})"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else f"'{value}'"


@pytest.fixture
def box(cli: Any) -> str:
    ok(cli, "pool", "create", "--name", "box", "--cpu", "4", "--per-tenant", "unlimited")
    ok(cli, "tenant", "add", "lab")
    made = js(cli, "reserve", "-t", "lab", "-p", "box", "--cpu", "1", "--request-id", "taken")
    return str(made["id"])


def refused(execute: Callable[..., Any], sql: str, match: str) -> None:
    with pytest.raises(Exception, match=match):
        execute(sql)


def test_a_ticket_is_what_the_columns_say(box: str) -> None:
    with raw_sql() as execute:
        execute(ticket(1))
        execute(ticket(2, status="cancelled", reason="interrupted"))
        refused(execute, ticket(3, status="lost"), "status_known")
        refused(execute, ticket(4, ended_at=LATER), "ended_iff_not_waiting")
        refused(execute, ticket(5, status="timed_out", ended_at=None), "ended_iff_not_waiting")
        refused(execute, ticket(6, status="admitted"), "admitted_iff_reservation")
        refused(execute, ticket(7, cpu=0), "asks_for_something")
        refused(execute, ticket(8, cpu=-1, gpu=2), "cpu_range")
        refused(execute, ticket(9, duration=0), "duration_range")
        refused(execute, ticket(10, deadline=NOW), "deadline_after")
        refused(execute, ticket(11, id="short"), "id_length")
        refused(execute, ticket(12, tenant_id=99), "(?i)foreign key")


def test_a_key_is_one_request_across_tickets_and_reservations(cli: Any, box: str) -> None:
    with raw_sql() as execute:
        refused(execute, ticket(1, key="taken"), "request id already used")
        execute(ticket(2, key="k"))
        refused(execute, ticket(3, key="k"), "(?i)unique|duplicate")
        # A key whose ticket ended with nothing reserved may be used again.
        execute(ticket(4, key="again", status="cancelled"))
        execute(ticket(5, key="again"))
    # A reservation may not take the key of a waiting ticket, through resgate or not.
    clash = cli("reserve", "-t", "lab", "-p", "box", "--cpu", "1", "--request-id", "k")
    assert clash.code != 0 and "Traceback" not in clash.stderr
    assert js(cli, "list", "--all")[-1]["request_id"] != "k"


def test_an_admission_marks_the_ticket_then_inserts_its_reservation(cli: Any, box: str) -> None:
    """The order the engine admits in: the ticket is admitted, naming a reservation
    that the same transaction then inserts with the ticket's key (the reference is
    checked at commit); naming one that never comes is refused at commit."""
    ok(cli, "unreserve", box)
    url = os.environ["RESGATE_DB"]
    reservation = (
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, created_at,"
        " starts_at, expires_at, ends_at, lease, request_id) VALUES ('{rid}', 1, 1, 1, 0, 0,"
        f" 'active', '{NOW}', '{NOW}', NULL, NULL, false, 'k')"
    )
    admit = (
        "UPDATE requests SET status = 'admitted', reservation_id = '{rid}',"
        f" ended_at = '{LATER}' WHERE id = '{1:016x}'"
    )
    with raw_sql() as execute:
        execute(ticket(1, key="k"))
    if "://" in url:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
            with pytest.raises(psycopg.Error, match=r"(?i)foreign key"), db.transaction():
                db.execute(admit.format(rid="f" * 16))
            with db.transaction():
                db.execute(admit.format(rid="a" * 16))
                db.execute(reservation.format(rid="a" * 16))
    else:
        with closing(sqlite3.connect(url, isolation_level=None)) as db:
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("BEGIN")
            db.execute(admit.format(rid="f" * 16))
            with pytest.raises(sqlite3.IntegrityError, match=r"(?i)foreign key"):
                db.execute("COMMIT")
            db.execute("ROLLBACK")
            db.execute("BEGIN")
            db.execute(admit.format(rid="a" * 16))
            db.execute(reservation.format(rid="a" * 16))
            db.execute("COMMIT")
    assert [r["id"] for r in js(cli, "list")] == ["a" * 16]


def test_an_ended_ticket_never_changes_and_none_is_deleted(box: str) -> None:
    with raw_sql() as execute:
        execute(ticket(1, status="cancelled"))
        execute(ticket(2))
        refused(execute, f"UPDATE requests SET reason = 'x' WHERE id = '{1:016x}'", "never changes")
        refused(execute, f"UPDATE requests SET cpu = 2 WHERE id = '{2:016x}'", "never changes")
        execute(f"UPDATE requests SET heartbeat_at = '{LATER}' WHERE id = '{2:016x}'")
        refused(execute, f"DELETE FROM requests WHERE id = '{2:016x}'", "never deleted")


def test_the_migration_goes_back_only_with_nobody_waiting(cli: Any, box: str) -> None:
    db = os.environ["RESGATE_DB"]
    alembic(db, "downgrade", "0009")
    alembic(db, "upgrade", "head")
    with raw_sql() as execute:
        execute(ticket(1))
    with pytest.raises(Exception, match="waiting ticket"):
        alembic(db, "downgrade", "0009")
    assert ok(cli, "db", "check").stdout.startswith("ok:")
