"""Many processes hammer one SQLite file through the engine API.

Six worker processes (tests/workers/engine_worker.py) leave a start barrier
together and each run 200 random operations — reserve with and without a TTL,
unreserve, extend, preempt, sweep, pool resize — on two small pools shared by
six tenants, so most operations contend for the one write lock and many race
for the same reservations. Pool p0 lets a tenant hold three reservations, p1 one;
two tenants have members (README "Sharing one machine"), one of them without the
OS user running the workers, whose every action for it is refused. Each worker
appends every acknowledged operation to its own ledger after the commit returned.
Afterwards the database must be intact, keep the invariants, and hold exactly
what the ledgers acknowledged (tests/workers/verify.py), and `resgate db check` must pass.

RESGATE_TEST_SEED fixes the seeds; a failure prints the seeds it used.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import pytest
import verify
from harness import collect, release, resgate, spawn
from ledger import read_ledger

from resgate.config import os_user
from resgate.engine import pools, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts
from resgate.store.database import open_database, resolve_target

WORKERS = 6
OPS = 200
POOLS = {"p0": Amounts(8, 4096, 2), "p1": Amounts(4, 2048, 1)}
PER_TENANT = {"p0": 3, "p1": 1}
TENANTS = {"t0": 1, "t1": 3, "t2": 5, "t3": 5, "t4": 7, "t5": 9}
MEMBERS = {"t4": (os_user(), "alice"), "t3": ("bob",)}


def make_database(path: Path) -> dict[str, list[int]]:
    database = open_database(resolve_target(str(path)), write=True)
    try:
        for name, totals in POOLS.items():
            policy = Policy(per_tenant=PER_TENANT[name])
            database.run(
                lambda tx, n=name, a=totals, p=policy: pools.create_pool(tx, n, a, policy=p),
                write=True,
            )
        for name, priority in TENANTS.items():
            users = MEMBERS.get(name, ())
            database.run(
                lambda tx, n=name, p=priority, u=users: tenants.add_tenant(tx, n, p, users=u),
                write=True,
            )
    finally:
        database.dispose()
    return {name: list(totals) for name, totals in POOLS.items()}


def run_hammer(
    tmp_path: Path, workers: int = WORKERS, ops: int = OPS, script: str = "engine_worker.py"
) -> tuple[Path, list[dict], Counter[str], list, float, int]:
    db = tmp_path / "hammer.db"
    make_database(db)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    base = int(os.environ.get("RESGATE_TEST_SEED") or random.randrange(1 << 30))
    names = [f"w{i}" for i in range(workers)]
    procs = [
        spawn(
            script,
            str(db),
            name,
            str(base + i),
            str(ops),
            str(tmp_path / f"ledger-{name}.jsonl"),
            "--barrier",
            str(barrier),
        )
        for i, name in enumerate(names)
    ]
    started = release(barrier, names, procs)
    results = collect(procs)
    elapsed = time.monotonic() - started
    entries = [e for name in names for e in read_ledger(tmp_path / f"ledger-{name}.jsonl")]
    counts: Counter[str] = Counter()
    for result in results:
        if result.code == 0 and result.stdout.strip():
            for key, value in json.loads(result.stdout).items():
                if key != "seconds":
                    counts[key] += value
    return db, entries, counts, results, elapsed, base


def several_at_once(entries: list[dict], pool: str) -> bool:
    """Whether, by the ledger, one tenant held two reservations of `pool` at once."""
    held: dict[str, set[str]] = {}
    tenant_of: dict[str, str] = {}
    for entry in sorted(entries, key=lambda e: e["now"]):
        if entry["op"] == "reserve" and entry["pool"] == pool:
            tenant_of[entry["id"]] = entry["tenant"]
            mine = held.setdefault(entry["tenant"], set())
            mine.add(entry["id"])
            if len(mine) > 1:
                return True
        ended = entry.get("ids", []) if entry["op"] in ("preempt", "sweep") else []
        if entry["op"] == "unreserve":
            ended = [entry["id"]]
        for rid in ended:
            held.get(tenant_of.get(rid, ""), set()).discard(rid)
    return False


@pytest.mark.slow
def test_hammer_keeps_invariants_and_loses_nothing(tmp_path: Path) -> None:
    db, entries, counts, results, elapsed, seed = run_hammer(tmp_path)
    context = f"seed {seed}: {dict(counts)}"
    for result in results:
        assert result.code == 0, f"{context}\n{result.stderr}"
        assert result.stderr == "", f"{context}\n{result.stderr}"
    # Every operation was tried and ended as acknowledged or as an expected refusal.
    tried = sum(counts.values())
    assert tried == WORKERS * OPS, context
    # Contention waits for the lock within the busy timeout (10 s): nothing is busy.
    assert not [key for key in counts if key.endswith(":busy")], context
    acknowledged = sum(v for k, v in counts.items() if k.endswith(":ok"))
    assert len(entries) == acknowledged, context
    # The run really mixed everything.
    for op in ("reserve", "unreserve", "extend", "preempt", "sweep", "resize"):
        assert counts[f"{op}:ok"] > 0, f"no {op} succeeded; {context}"
    assert counts["reserve:refused"] + counts["reserve:insufficient"] > 0, context
    # Tenant t3 names members without the workers' user: nothing of it was ever made,
    # and some tenant held several reservations in p0 at once.
    assert not [e for e in entries if e["op"] == "reserve" and e["tenant"] == "t3"], context
    assert several_at_once(entries, "p0"), context

    problems = verify.all_problems(db, entries, {k: list(v) for k, v in POOLS.items()})
    assert problems == [], f"{context}\n" + "\n".join(problems[:30])

    check = resgate(db, "db", "check")
    assert check.code == 0, check.stdout + check.stderr
    print(
        f"\nhammer: {WORKERS} processes x {OPS} ops in {elapsed:.1f}s, "
        f"{acknowledged} acknowledged, {dict(sorted(counts.items()))}"
    )
