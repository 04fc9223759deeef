"""Per-tenant quotas (README "Quotas") on both databases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import reserve

from resgate.engine import pools, release, reservations, tenants
from resgate.engine.records import Amounts, Limits
from resgate.engine.reservations import ReserveRequest
from resgate.errors import InsufficientResources, Refused
from resgate.store.database import open_database, resolve_target

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def capped(engine):
    for name in ("a", "b", "c"):
        engine.write(pools.create_pool, name, Amounts(16, 4096, 8))
    engine.write(tenants.add_tenant, "t", 5, Limits(cpu=4, memory=None, gpu=8))
    return engine


def test_cap_counts_holdings_across_pools(capped):
    reserve(capped, "t", "a", gpu=6)
    with pytest.raises(Refused) as excinfo:
        reserve(capped, "t", "b", gpu=4)
    assert str(excinfo.value) == "quota exceeded for tenant 't': gpu 6 held + 4 requested > 8"
    reserve(capped, "t", "b", gpu=2)  # exactly at the cap is fine


def test_only_requested_resources_are_checked_in_order(capped):
    capped.write(tenants.update_tenant, "t", caps={"cpu": 0, "memory": 0})
    reserve(capped, "t", "a", gpu=1)  # asks for no cpu or memory: caps of 0 don't matter
    with pytest.raises(Refused, match="cpu 0 held \\+ 1 requested > 0"):
        reserve(capped, "t", "b", cpu=1, memory=1, gpu=99)


def test_conflict_before_quota_before_capacity(capped):
    first = reserve(capped, "t", "a", cpu=4).reservation
    with pytest.raises(Refused, match=f"already has active reservation '{first.id}'"):
        reserve(capped, "t", "a", cpu=5)
    with pytest.raises(Refused, match="quota exceeded"):
        reserve(capped, "t", "b", cpu=100)  # over quota and over capacity: quota wins
    capped.write(tenants.update_tenant, "t", caps={"cpu": None})
    with pytest.raises(InsufficientResources):
        reserve(capped, "t", "b", cpu=100)


def test_lowering_a_cap_below_holdings_only_stops_new_reservations(capped):
    held = reserve(capped, "t", "a", gpu=6).reservation
    info = capped.write(tenants.update_tenant, "t", caps={"gpu": 2})
    assert info.max == Limits(4, None, 2) and info.held == Amounts(0, 0, 6)
    with pytest.raises(Refused, match="gpu 6 held \\+ 1 requested > 2"):
        reserve(capped, "t", "b", gpu=1)
    capped.write(release.unreserve, held.id)
    reserve(capped, "t", "b", gpu=2)


def test_expired_reservations_do_not_count(capped):
    capped.write(reservations.reserve, ReserveRequest("t", "a", Amounts(0, 0, 8), ttl=10))
    capped.clock.advance(10)
    reserve(capped, "t", "b", gpu=8)


def test_cli_caps_list_and_json(cli):
    assert cli("pool", "create", "--name", "p", "--gpu", "8").code == 0
    assert cli("tenant", "add", "--name", "t", "--max-gpu", "8").code == 0
    assert cli("reserve", "--tenant", "t", "--pool", "p", "--gpu", "6").code == 0
    listed = cli("tenant", "list")
    assert listed.code == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith("t "))
    assert "6/8" in row.split()
    data = json.loads(cli("tenant", "list", "--json").stdout)
    assert data[0]["max"] == {"cpu": None, "memory": None, "gpu": 8}
    assert data[0]["held"] == {"cpu": 0, "memory": 0, "gpu": 6}
    refused = cli("reserve", "--tenant", "t", "--pool", "p", "--gpu", "1", "--cpu", "0")
    assert refused.code == 4  # conflict: already holds one in p
    assert cli("tenant", "update", "--name", "t", "--max-gpu", "none").code == 0
    data = json.loads(cli("tenant", "list", "--json").stdout)
    assert data[0]["max"]["gpu"] is None
    status = json.loads(cli("status", "--json").stdout)
    assert status["tenants"][0]["held"]["gpu"] == 6
    for bad in ("-1", "1.5", "nan", "NONE"):
        result = cli("tenant", "update", "--name", "t", "--max-cpu", bad)
        assert (result.code, result.stdout) == (2, "")
        assert result.stderr.startswith("Error: invalid value for --max-cpu")


@pytest.mark.slow
def test_concurrent_reserves_never_break_the_cap(tmp_path: Path) -> None:
    """Processes of one tenant reserving in different pools at the same moment:
    the tenant row (PostgreSQL) or the write lock (SQLite) keeps the cap."""
    from harness import collect, release, spawn

    db = os.environ["RESGATE_DB"]
    n = 6
    database = open_database(resolve_target(db), write=True)
    try:
        for i in range(n):
            database.run(
                lambda tx, i=i: pools.create_pool(tx, f"p{i}", Amounts(0, 0, 8)), write=True
            )
        database.run(lambda tx: tenants.add_tenant(tx, "t", 5, Limits(gpu=10)), write=True)
    finally:
        database.dispose()
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    names = [f"w{i}" for i in range(n)]
    procs = [
        spawn(
            "cli_worker.py",
            str(barrier),
            name,
            "--",
            "--db",
            db,
            "reserve",
            "--tenant",
            "t",
            "--pool",
            f"p{i}",
            "--gpu",
            "4",
        )
        for i, name in enumerate(names)
    ]
    release(barrier, names, procs)
    results = collect(procs, timeout=120)
    codes = sorted(result.code for result in results)
    assert codes == [0, 0, 4, 4, 4, 4], [r.stderr for r in results]
    assert all("quota exceeded" in r.stderr for r in results if r.code == 4)
    database = open_database(resolve_target(db), write=False)
    try:
        held = database.run(lambda tx: tenants.list_tenants(tx)[0].held, write=False)
    finally:
        database.dispose()
    assert held == Amounts(0, 0, 8)
