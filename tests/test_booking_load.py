"""Booking ahead under load (README "Booking ahead", "Many processes at once"): eight
worker processes (tests/workers/booking_worker.py) book random overlapping windows
and cancel some for 60 s, on one SQLite file or through eight PostgreSQL sessions.
Afterwards no instant from now on is over-committed, no GPU is held by two
overlapping plans, no tenant is over its limit at any instant, nothing deadlocked
(every worker finished), and `db check` and `audit verify` are clean."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from harness import collect, release, resgate, spawn
from sqlalchemy import text

from resgate.engine import pools, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts
from resgate.store.database import open_database, resolve_target

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("backend")]

WORKERS = 8
SECONDS = 60
TOTALS = Amounts(16, 0, 8)
PER_TENANT = 2


def test_random_overlapping_bookings_never_over_commit_an_instant(tmp_path: Path) -> None:
    db = os.environ["RESGATE_DB"]
    database = open_database(resolve_target(db), write=True)
    database.run(
        lambda tx: pools.create_pool(tx, "box", TOTALS, policy=Policy(per_tenant=PER_TENANT)),
        write=True,
    )
    for i in range(6):
        database.run(lambda tx, i=i: tenants.add_tenant(tx, f"t{i}", 5), write=True)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    names = [f"w{i}" for i in range(WORKERS)]
    procs = [
        spawn("booking_worker.py", db, name, str(i), str(SECONDS), str(barrier))
        for i, name in enumerate(names)
    ]
    release(barrier, names, procs)
    finished = collect(procs, timeout=SECONDS + 120)
    assert all(f.code == 0 for f in finished), [f.stderr for f in finished if f.code]
    counts = [json.loads(f.stdout) for f in finished]
    assert sum(c.get("booked", 0) for c in counts) > 50, counts
    assert sum(c.get("refused 3", 0) for c in counts) > 0, counts

    def plans(tx):  # type: ignore[no-untyped-def]
        rows = tx.connection.execute(
            text(
                "SELECT r.id, r.tenant_id, r.starts_at, r.ends_at, r.cpu, r.gpu FROM reservations r"
                " WHERE r.status = 'active' AND (r.ends_at IS NULL OR r.ends_at > :now)"
            ),
            {"now": tx.now},
        ).all()
        held = tx.connection.execute(
            text("SELECT reservation_id, device FROM reservation_devices WHERE active")
        ).all()
        return tx.now, rows, held

    now, rows, held = database.run(plans, write=False)
    database.dispose()
    as_time = [
        (rid, tenant, _t(start), None if end is None else _t(end), cpu, gpu)
        for rid, tenant, start, end, cpu, gpu in rows
    ]
    points = {max(_t(now), start) for _, _, start, _, _, _ in as_time}
    for at in points:
        holding = [r for r in as_time if r[2] <= at and (r[3] is None or at < r[3])]
        assert sum(r[4] for r in holding) <= TOTALS.cpu, at
        assert sum(r[5] for r in holding) <= TOTALS.gpu, at
        for tenant in {r[1] for r in holding}:
            assert sum(1 for r in holding if r[1] == tenant) <= PER_TENANT, (at, tenant)
    window = {r[0]: (r[2], r[3]) for r in as_time}
    by_device: dict[int, list[str]] = {}
    for rid, device in held:
        if rid in window:
            by_device.setdefault(device, []).append(rid)
    for device, ids in by_device.items():
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                (s1, e1), (s2, e2) = window[a], window[b]
                assert not (s1 < (e2 or datetime.max) and s2 < (e1 or datetime.max)), (device, a, b)
    checked = resgate(db, "db", "check")
    assert checked.code == 0 and checked.stdout.startswith("ok:"), checked
    verified = resgate(db, "audit", "verify")
    assert verified.code == 0, verified


def _t(value: object) -> datetime:
    """A stored time (text on SQLite)."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
