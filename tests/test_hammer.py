"""Many processes hammer one SQLite file through the engine API.

Six worker processes (tests/workers/engine_worker.py) leave a start barrier
together and each run 200 random operations — reserve with and without a TTL,
unreserve, extend, preempt, sweep, pool resize — on two small pools shared by
six tenants, so most operations contend for the one write lock and many race
for the same reservations. Each worker appends every acknowledged operation to
its own ledger after the commit returned. Afterwards the database must be
intact, keep the invariants, and hold exactly what the ledgers acknowledged
(tests/workers/verify.py), and `resgate db check` must pass.

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

from resgate.engine import pools, tenants
from resgate.engine.records import Amounts
from resgate.store.database import open_database, resolve_target

WORKERS = 6
OPS = 200
POOLS = {"p0": Amounts(8, 4096, 2), "p1": Amounts(4, 2048, 1)}
TENANTS = {"t0": 1, "t1": 3, "t2": 5, "t3": 5, "t4": 7, "t5": 9}


def make_database(path: Path) -> dict[str, list[int]]:
    database = open_database(resolve_target(str(path)), write=True)
    try:
        for name, totals in POOLS.items():
            database.run(lambda tx, n=name, a=totals: pools.create_pool(tx, n, a), write=True)
        for name, priority in TENANTS.items():
            database.run(lambda tx, n=name, p=priority: tenants.add_tenant(tx, n, p), write=True)
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

    problems = verify.all_problems(db, entries, {k: list(v) for k, v in POOLS.items()})
    assert problems == [], f"{context}\n" + "\n".join(problems[:30])

    check = resgate(db, "db", "check")
    assert check.code == 0, check.stdout + check.stderr
    print(
        f"\nhammer: {WORKERS} processes x {OPS} ops in {elapsed:.1f}s, "
        f"{acknowledged} acknowledged, {dict(sorted(counts.items()))}"
    )
