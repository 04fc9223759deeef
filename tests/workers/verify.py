"""What the multi-process tests check afterwards, straight from the SQLite file
(plain sqlite3, no resgate code): integrity, the invariants of docs/schema.md, and that
the database holds exactly what the workers' ledgers acknowledged.

The ledgers are replayed in the order of each transaction's `now`. On SQLite the
write lock is taken before `now` is read, so that order is the commit order.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RESOURCES = ("cpu", "memory", "gpu")
KIND_ORDER = {"reserve": 0, "resize": 1, "extend": 2, "unreserve": 3, "preempt": 4, "sweep": 5}


def ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def connect(path: str | Path) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path), isolation_level=None)
    connection.row_factory = sqlite3.Row
    return connection


def integrity_problems(path: str | Path) -> list[str]:
    with connect(path) as connection:
        problems = []
        result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems.append(f"integrity_check: {result}")
        fk = connection.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {len(fk)} rows")
    connection.close()
    return problems


def invariant_problems(path: str | Path) -> list[str]:
    """Invariant 1 (sums of active reservations ≤ totals, per pool and resource)
    and invariant 2 (≤ the pool's per_tenant active reservations per tenant and
    pool; the workers never lower a limit)."""
    connection = connect(path)
    problems = []
    rows = connection.execute(
        """SELECT p.name, p.deleted_at, p.cpu, p.memory, p.gpu,
                  COALESCE(SUM(r.cpu), 0) AS ucpu, COALESCE(SUM(r.memory), 0) AS umemory,
                  COALESCE(SUM(r.gpu), 0) AS ugpu, COUNT(r.id) AS n
           FROM pools p LEFT JOIN reservations r ON r.pool_id = p.id AND r.status = 'active'
           GROUP BY p.id"""
    ).fetchall()
    for row in rows:
        for resource in RESOURCES:
            if row["u" + resource] > row[resource]:
                problems.append(
                    f"pool {row['name']}: {resource} active {row['u' + resource]} "
                    f"> total {row[resource]}"
                )
        if row["deleted_at"] is not None and row["n"]:
            problems.append(f"deleted pool {row['name']} has {row['n']} active")
    for row in connection.execute(
        """SELECT r.tenant_id, r.pool_id, COUNT(*) AS n, p.per_tenant FROM reservations r
           JOIN pools p ON p.id = r.pool_id WHERE r.status = 'active'
           GROUP BY r.tenant_id, r.pool_id HAVING COUNT(*) > COALESCE(p.per_tenant, COUNT(*))"""
    ):
        problems.append(
            f"tenant #{row['tenant_id']} has {row['n']} active in pool #{row['pool_id']}, "
            f"which allows {row['per_tenant']}"
        )
    connection.close()
    return problems


def reservation_rows(path: str | Path) -> dict[str, dict[str, Any]]:
    connection = connect(path)
    rows = connection.execute(
        """SELECT r.id, t.name AS tenant, p.name AS pool, r.cpu, r.memory, r.gpu, r.ttl,
                  r.status, r.created_at, r.expires_at, r.ended_at, r.preempted_by
           FROM reservations r JOIN tenants t ON t.id = r.tenant_id
           JOIN pools p ON p.id = r.pool_id"""
    ).fetchall()
    connection.close()
    return {row["id"]: dict(row) for row in rows}


def pool_totals(path: str | Path) -> dict[str, list[int]]:
    connection = connect(path)
    rows = connection.execute(
        "SELECT name, cpu, memory, gpu FROM pools WHERE deleted_at IS NULL"
    ).fetchall()
    connection.close()
    return {row["name"]: [row["cpu"], row["memory"], row["gpu"]] for row in rows}


@dataclass
class InFlight:
    """Operations of killed workers that reached COMMIT but were never
    acknowledged: they may or may not have committed."""

    reserves: int = 0
    ids: set[str] = field(default_factory=set)  # unreserve / extend targets
    preempted_tenants: set[str] = field(default_factory=set)
    resized_pools: set[str] = field(default_factory=set)

    def add(self, op: str, target: str) -> None:
        if op == "reserve":
            self.reserves += 1
        elif op in ("unreserve", "extend"):
            self.ids.add(target)
        elif op == "preempt":
            self.preempted_tenants.add(target.split(">", 1)[1].split("/", 1)[0])
        elif op == "resize":
            self.resized_pools.add(target)


@dataclass
class Timeline:
    entry: dict[str, Any]
    status: str = "active"
    expires_at: datetime | None = None
    ttl: int | None = None
    ended_at: datetime | None = None
    preempted_by: str | None = None


def ledger_problems(  # noqa: C901 - one replay of the ledger, one check per invariant, in order
    path: str | Path,
    entries: list[dict[str, Any]],
    initial_totals: dict[str, list[int]],
    in_flight: InFlight | None = None,
) -> list[str]:
    """The database against the acknowledged operations. Without `in_flight`
    (the hammer) the match must be exact; with it (the crash test) an
    unacknowledged operation of a killed worker may or may not be there."""
    problems: list[str] = []
    rows = reservation_rows(path)
    entries = sorted(entries, key=lambda e: (ts(e["now"]), KIND_ORDER[e["op"]]))
    last_now = max((ts(e["now"]) for e in entries), default=None)

    by_worker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_worker[entry["worker"]].append(entry)
    for worker, own in by_worker.items():
        seqs = [e["seq"] for e in own]
        if seqs != sorted(seqs):
            problems.append(f"{worker}: its acknowledged operations are out of order in time")

    timelines: dict[str, Timeline] = {}
    totals = {name: list(values) for name, values in initial_totals.items()}
    # Reservations of a killed worker's in-flight reserve that did commit: other
    # workers find them in the database and act on them like on any other.
    adopted: set[str] = set()

    def excused(rid: str) -> bool:
        if in_flight is None:
            return False
        row = rows.get(rid)
        return (
            rid in in_flight.ids
            or rid in adopted
            or (row is not None and row["tenant"] in in_flight.preempted_tenants)
        )

    def known(rid: str) -> Timeline | None:
        line = timelines.get(rid)
        row = rows.get(rid)
        if line is None and in_flight is not None and in_flight.reserves and row is not None:
            adopted.add(rid)
            entry = {
                "tenant": row["tenant"],
                "pool": row["pool"],
                "amounts": [row["cpu"], row["memory"], row["gpu"]],
                "now": row["created_at"],
            }
            line = timelines[rid] = Timeline(entry, expires_at=ts(row["expires_at"]))
        return line

    def active_at(rid: str, now: datetime, op: str) -> Timeline | None:
        line = known(rid)
        if line is None:
            problems.append(f"{op} of {rid} at {now} acknowledged before its reserve")
            return None
        effective = line.status == "active" and (line.expires_at is None or line.expires_at > now)
        if not effective and not excused(rid):
            problems.append(
                f"{op} of {rid} at {now} acknowledged, but by the ledger it was "
                f"{line.status} (expires_at {line.expires_at})"
            )
        return line

    for entry in entries:
        now = ts(entry["now"])
        assert now is not None
        op = entry["op"]
        if op == "reserve":
            timelines[entry["id"]] = Timeline(
                entry, expires_at=ts(entry["expires_at"]), ttl=entry["ttl"] or None
            )
        elif op == "extend":
            line = active_at(entry["id"], now, op)
            if line is not None:
                line.expires_at, line.ttl = ts(entry["expires_at"]), entry["ttl"] or None
        elif op == "unreserve":
            line = active_at(entry["id"], now, op)
            if line is not None:
                line.status, line.ended_at = "released", now
        elif op == "preempt":
            for rid in entry["ids"]:
                line = active_at(rid, now, op)
                if line is not None:
                    line.status, line.ended_at = "preempted", now
                    line.preempted_by = entry["attacker"]
        elif op == "sweep":
            for rid in entry["ids"]:
                line = known(rid)
                if line is None:
                    problems.append(f"sweep at {now} expired {rid}, never acknowledged")
                    continue
                due = line.expires_at is not None and line.expires_at <= now
                if (line.status != "active" or not due) and not excused(rid):
                    problems.append(f"sweep at {now} expired {rid}, which was {line.status}")
                line.status, line.ended_at = "expired", line.expires_at
        elif op == "resize":
            totals[entry["pool"]] = entry["total"]

    unacknowledged = (set(rows) - set(timelines)) | adopted
    if in_flight is None and unacknowledged:
        problems.append(f"{len(unacknowledged)} reservation(s) in the database never acknowledged")
    if in_flight is not None and len(unacknowledged) > in_flight.reserves:
        problems.append(
            f"{len(unacknowledged)} unacknowledged reservations, but only "
            f"{in_flight.reserves} reserve(s) were in flight when killed"
        )

    for rid, line in timelines.items():
        row = rows.get(rid)
        if row is None:
            problems.append(f"acknowledged reservation {rid} is not in the database")
            continue
        entry = line.entry
        stored = {
            "tenant": row["tenant"],
            "pool": row["pool"],
            "amounts": [row["cpu"], row["memory"], row["gpu"]],
            "created_at": ts(row["created_at"]),
        }
        expected = {
            "tenant": entry["tenant"],
            "pool": entry["pool"],
            "amounts": entry["amounts"],
            "created_at": ts(entry["now"]),
        }
        if stored != expected:
            problems.append(f"{rid}: stored {stored}, acknowledged {expected}")
        if excused(rid):
            # A killed worker's last extend/unreserve/preempt may have committed.
            if line.status != "active" and row["status"] != line.status:
                problems.append(f"{rid}: acknowledged {line.status}, stored {row['status']}")
            continue
        expires, ended = ts(row["expires_at"]), ts(row["ended_at"])
        if line.status == "active":
            if (expires, row["ttl"]) != (line.expires_at, line.ttl):
                problems.append(
                    f"{rid}: expires_at {expires} ttl {row['ttl']}, "
                    f"acknowledged {line.expires_at} ttl {line.ttl}"
                )
            if row["status"] == "expired":
                # Expired by the sweep every write starts with: someone wrote after it was due.
                if ended != expires or expires is None:
                    problems.append(f"{rid}: expired with ended_at {ended}, expires_at {expires}")
                elif in_flight is None and (last_now is None or expires > last_now):
                    problems.append(f"{rid}: expired at {expires}, after the last write")
            elif row["status"] == "active":
                if expires is not None and last_now is not None and expires <= last_now:
                    problems.append(f"{rid}: still active though due at {expires} before a write")
            else:
                problems.append(f"{rid}: {row['status']} in the database, no such acknowledgement")
        else:
            if (row["status"], ended, row["preempted_by"]) != (
                line.status,
                line.ended_at,
                line.preempted_by,
            ):
                problems.append(
                    f"{rid}: stored {row['status']} ended {ended} by {row['preempted_by']}, "
                    f"acknowledged {line.status} ended {line.ended_at} by {line.preempted_by}"
                )

    stored_totals = pool_totals(path)
    for name, values in totals.items():
        if in_flight is not None and name in in_flight.resized_pools:
            continue
        if stored_totals.get(name) != list(values):
            problems.append(f"pool {name}: totals {stored_totals.get(name)}, acknowledged {values}")
    return problems


def all_problems(
    path: str | Path,
    entries: list[dict[str, Any]],
    initial_totals: dict[str, list[int]],
    in_flight: InFlight | None = None,
) -> list[str]:
    return (
        integrity_problems(path)
        + invariant_problems(path)
        + ledger_problems(path, entries, initial_totals, in_flight)
    )
