"""The admission pass with 100 waiting tickets (the head's shadow an hour away),
against a bare `sqlite3` read of the same tickets, and a write with nobody waiting
against the same write before the line existed (benchmarks/README.md, Figures)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from fixtures import Databases, copy_db
from harness import Config, Row, log, med

WAITING = 100


def _build(path: Path) -> None:
    """A pool held whole for an hour, and 100 tickets of ten tenants behind it."""
    from resgate.engine import pools, queue, reservations, tenants
    from resgate.engine.policies import Policy
    from resgate.engine.records import Amounts
    from resgate.engine.reservations import ReserveRequest
    from resgate.store.database import open_database, resolve_target

    db = open_database(resolve_target(str(path)), write=True)
    try:
        totals = Amounts(64, 0, 8)
        db.run(lambda tx: pools.create_pool(tx, "box", totals, policy=Policy(None)), write=True)
        for i in range(10):
            db.run(lambda tx, i=i: tenants.add_tenant(tx, f"t{i}", 1 + i % 9), write=True)
        whole = ReserveRequest("t0", "box", totals, ttl=3600)
        db.run(lambda tx: reservations.reserve(tx, whole), write=True)
        for n in range(WAITING):
            asked = ReserveRequest(f"t{n % 10}", "box", Amounts(1 + n % 8, 0, n % 3), duration=1800)
            db.run(lambda tx, asked=asked: queue.join(tx, asked), write=True)
    finally:
        db.dispose()


def measure(cfg: Config, dbs: Databases) -> list[Row]:
    log(f"queue: the admission pass with {WAITING} waiting tickets")
    from resgate.engine.queue import admit_waiting
    from resgate.store.database import open_database, resolve_target

    path = cfg.workdir / "queue.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.environ["RESGATE_SYNCHRONOUS"] = "NORMAL"
    _build(path)
    db = open_database(resolve_target(str(path)), write=True)
    bare = sqlite3.connect(path, isolation_level=None)
    passes, reads, empties, befores = [], [], [], []
    try:
        for _ in range(max(cfg.repeat, 5)):
            start = time.perf_counter()
            db.run(admit_waiting, write=True)
            passes.append(time.perf_counter() - start)
            start = time.perf_counter()
            bare.execute(
                "SELECT r.*, t.priority FROM requests r JOIN tenants t ON t.id = r.tenant_id"
                " WHERE r.status = 'waiting' ORDER BY t.priority DESC, r.enqueued_at, r.id"
            ).fetchall()
            reads.append(time.perf_counter() - start)
    finally:
        bare.close()
        db.dispose()
    # A write with nobody waiting: the base database's, with and without the pass's
    # one lookup (the pass is what `sweep` asks for at the commit).
    empty = cfg.workdir / "queue-empty.db"
    copy_db(dbs.base, empty)
    db = open_database(resolve_target(str(empty)), write=True)
    try:
        from resgate.engine.sweep import sweep

        def without_the_line(tx: Any) -> None:
            sweep(tx)
            tx.before_commit.clear()  # the pass it asked for: not run

        for _ in range(max(cfg.repeat, 5) * 20):
            start = time.perf_counter()
            db.run(sweep, write=True)
            empties.append(time.perf_counter() - start)
            start = time.perf_counter()
            db.run(without_the_line, write=True)
            befores.append(time.perf_counter() - start)
    finally:
        db.dispose()
    m_pass, m_read = med(passes), med(reads)
    m_empty, m_before = med(empties), med(befores)
    extra = m_empty - m_before
    return [
        Row(
            f"admission pass, {WAITING} waiting",
            f"{m_pass * 1000:.1f} ms",
            f"bare sqlite3 read of the tickets: {m_read * 1000:.2f} ms",
            f"{m_pass * 1000:.1f} ms",
            "<= 20 ms",
            m_pass <= 0.020,
            {"pass_s": m_pass, "read_s": m_read},
        ),
        Row(
            "a write with nobody waiting",
            f"{m_empty * 1000:.2f} ms",
            f"the same write without the line: {m_before * 1000:.2f} ms",
            f"{extra * 1e6:+.0f} us",
            "(report)",
            None,
            {"with_s": m_empty, "without_s": m_before},
        ),
    ]
