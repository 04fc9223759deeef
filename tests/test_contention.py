"""Real `resgate` processes colliding on one database.

Each process (tests/workers/cli_worker.py) imports everything, waits at a start
barrier — a file that appears once all of them are ready — and then runs one
`resgate reserve` through the real entry point, so they really race for the
write lock. The exit codes must add up exactly, and the database must agree with
what the processes printed. The capacity race also runs on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import collect, release, resgate, spawn

from resgate.engine import pools, tenants
from resgate.engine.records import Amounts
from resgate.store.database import Database, open_database, resolve_target

N = 8


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield str(request.getfixturevalue("pg_database"))
    else:
        yield str(tmp_path / "contention.db")


def setup(db: str, pool: str, cpu: int, tenant_names: list[str]) -> None:
    database: Database = open_database(resolve_target(db), write=True)
    try:
        database.run(lambda tx: pools.create_pool(tx, pool, Amounts(cpu, 0, 0)), write=True)
        for name in tenant_names:
            database.run(lambda tx, n=name: tenants.add_tenant(tx, n, 5), write=True)
    finally:
        database.dispose()


def race(tmp_path: Path, db: str, commands: list[list[str]]) -> list:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    names = [f"c{i}" for i in range(len(commands))]
    procs = [
        spawn("cli_worker.py", str(barrier), name, "--", "--db", db, *command)
        for name, command in zip(names, commands, strict=True)
    ]
    release(barrier, names, procs)
    return collect(procs, timeout=120)


def active(db: str) -> list[dict]:
    listed = resgate(db, "list", "--json")
    assert listed.code == 0, listed.stderr
    return list(json.loads(listed.stdout))


def db_check(db: str) -> None:
    check = resgate(db, "db", "check")
    assert check.code == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_capacity_race_exactly_k_win(tmp_path: Path, db: str) -> None:
    k = 3
    names = [f"u{i}" for i in range(N)]
    setup(db, "p", k, names)
    results = race(
        tmp_path,
        db,
        [["reserve", "--tenant", n, "--pool", "p", "--cpu", "1", "--json"] for n in names],
    )
    codes = sorted(r.code for r in results)
    assert codes == [0] * k + [3] * (N - k), [(r.code, r.stderr) for r in results]
    winners = {}
    for name, result in zip(names, results, strict=True):
        if result.code == 0:
            printed = json.loads(result.stdout)
            assert (printed["tenant"], printed["cpu"], printed["status"]) == (name, 1, "active")
            winners[printed["id"]] = name
        else:
            assert result.stdout == ""
            assert result.stderr.startswith("Error: insufficient resources in 'p': need cpu=1 ")
            assert "available cpu=0 " in result.stderr
    # The database agrees with what the processes printed.
    assert {r["id"]: r["tenant"] for r in active(db)} == winners
    shown = resgate(db, "pool", "show", "--name", "p", "--json")
    assert json.loads(shown.stdout)["reserved"]["cpu"] == k
    db_check(db)


@pytest.mark.slow
def test_one_tenant_race_exactly_one_wins(tmp_path: Path) -> None:
    db = str(tmp_path / "contention.db")
    setup(db, "p", 64, ["solo"])
    results = race(
        tmp_path,
        db,
        [["reserve", "--tenant", "solo", "--pool", "p", "--cpu", "2", "--json"]] * N,
    )
    codes = sorted(r.code for r in results)
    assert codes == [0] + [4] * (N - 1), [(r.code, r.stderr) for r in results]
    (winner,) = [json.loads(r.stdout) for r in results if r.code == 0]
    for result in results:
        if result.code == 4:
            assert result.stdout == ""
            assert result.stderr == (
                f"Error: tenant 'solo' already has active reservation '{winner['id']}' "
                "in pool 'p'\n"
            )
    rows = active(db)
    assert [(r["id"], r["tenant"], r["cpu"]) for r in rows] == [(winner["id"], "solo", 2)]
    db_check(db)
