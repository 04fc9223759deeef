"""Every command of README "Using it" through the CLI's error boundary (in-process): success
lines, JSON shapes, orders, the EXPIRES column, filters, status and health."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from helpers import js, out, reserve_id

from resgate import __version__
from resgate.store.schema import SCHEMA_HEAD

pytestmark = pytest.mark.usefixtures("backend")

START = datetime(2026, 11, 24, 12, 0, 0)

RESERVATION_KEYS = {
    "id",
    "tenant",
    "pool",
    "cpu",
    "memory",
    "gpu",
    "ttl",
    "status",
    "created_at",
    "expires_at",
    "ended_at",
    "preempted_by",
}
POOL_KEYS = {"name", "total", "reserved", "available", "utilization", "health", "created_at"}
TENANT_KEYS = {"name", "priority", "active_reservations", "created_at"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def table_rows(text: str) -> list[list[str]]:
    """Data rows of a tabulate 'simple' table (header and rule dropped)."""
    lines = text.rstrip("\n").splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}, lines
    return [line.split() for line in lines[2:]]


@pytest.fixture
def world(cli, frozen):
    out(cli, "pool", "create", "--name", "p", "--cpu", "10", "--memory", "1000", "--gpu", "4")
    out(cli, "tenant", "add", "--name", "high", "--priority", "9")
    out(cli, "tenant", "add", "--name", "low", "--priority", "2")
    out(cli, "tenant", "add", "--name", "mid")
    return frozen


# ---------------------------------------------------------------- version


def test_version_touches_no_database(cli, isolated_env: Path):
    assert out(cli, "version") == f"resgate {__version__}\n"
    assert out(cli, "--version") == f"resgate {__version__}\n"
    assert not (isolated_env / "resgate.db").exists()


# ---------------------------------------------------------------- pools


def test_pool_create_line_and_json(cli, frozen):
    printed = out(
        cli, "pool", "create", "--name", "gpu-box", "--cpu", "32", "--memory", "65536", "--gpu", "8"
    )
    assert printed == "Pool 'gpu-box' created — CPU: 32  Memory: 65536MB  GPU: 8\n"
    assert out(cli, "pool", "create", "--name", "m", "--memory", "5") == (
        "Pool 'm' created — CPU: 0  Memory: 5MB  GPU: 0\n"
    )
    pool = js(cli, "pool", "create", "--name", "j", "--gpu", "2")
    assert set(pool) >= POOL_KEYS
    assert pool["name"] == "j"
    assert pool["total"] == {"cpu": 0, "memory": 0, "gpu": 2}
    assert pool["reserved"] == {"cpu": 0, "memory": 0, "gpu": 0}
    assert pool["available"] == {"cpu": 0, "memory": 0, "gpu": 2}
    assert pool["utilization"] == {"cpu": 0.0, "memory": 0.0, "gpu": 0.0}
    assert pool["health"] == "healthy"
    assert pool["created_at"] == "2026-11-24T12:00:00.000000Z"


def test_pool_list_by_name_with_usage_cells(cli, frozen):
    assert out(cli, "pool", "list") == "No pools.\n"
    assert out(cli, "pool", "list", "--json") == "[]\n"
    for name in ("zeta", "Alpha", "beta"):
        out(cli, "pool", "create", "--name", name, "--cpu", "32", "--memory", "100")
    out(cli, "tenant", "add", "--name", "t")
    reserve_id(cli, "t", "beta", cpu=12, memory=61)
    text = out(cli, "pool", "list")
    header = text.splitlines()[0].split("  ")
    assert [h.strip() for h in header if h.strip()] == [
        "NAME",
        "CPU (USED/TOTAL)",
        "MEMORY (USED/TOTAL)",
        "GPU (USED/TOTAL)",
        "STATUS",
        "CREATED",
    ]
    lines = text.splitlines()[2:]
    assert [line.split()[0] for line in lines] == ["Alpha", "beta", "zeta"]  # byte order
    assert "12 / 32 (38%)" in lines[1]
    assert "61M / 100M (61%)" in lines[1]
    assert "0 / 0 (0%)" in lines[1]
    assert "warning" in lines[1] and "healthy" in lines[0]
    assert "\033[" not in text  # not a terminal: no colour
    data = js(cli, "pool", "list")
    assert [p["name"] for p in data] == ["Alpha", "beta", "zeta"]
    assert data[1]["reserved"] == {"cpu": 12, "memory": 61, "gpu": 0}
    assert data[1]["utilization"] == {"cpu": 37.5, "memory": 61.0, "gpu": 0.0}


def test_pool_show(cli, world):
    reserve_id(cli, "low", cpu=3, memory=250)
    text = out(cli, "pool", "show", "--name", "p")
    assert text.startswith("Pool: p\nHealth: healthy\n")
    _head, table, devices = text.split("\n\n")
    rows = {row[0]: row for row in table_rows(table)}
    assert rows["CPU"] == ["CPU", "10", "3", "(30.00%)", "7"]
    assert rows["MEMORY"] == ["MEMORY", "1000M", "250M", "(25.00%)", "750M"]
    assert rows["GPU"] == ["GPU", "4", "0", "(0.00%)", "4"]
    assert devices == "GPU devices: 0-3 free\n"
    pool = js(cli, "pool", "show", "--name", "p")
    assert pool["devices"] == [{"id": i, "reservation": None} for i in range(4)]
    assert pool["available"] == {"cpu": 7, "memory": 750, "gpu": 4}
    assert pool["utilization"] == {"cpu": 30.0, "memory": 25.0, "gpu": 0.0}


@pytest.mark.parametrize(
    ("used", "health"),
    [
        ("599", "healthy"),
        ("600", "warning"),
        ("899", "warning"),
        ("900", "exhausted"),
        ("1000", "exhausted"),
    ],
)
def test_health_thresholds(cli, frozen, used: str, health: str):
    out(cli, "pool", "create", "--name", "p", "--cpu", "1", "--memory", "1000")
    out(cli, "tenant", "add", "--name", "t")
    reserve_id(cli, "t", memory=used)
    assert js(cli, "pool", "show", "--name", "p")["health"] == health
    status = js(cli, "status")
    assert status["pools"][0]["health"] == health
    assert f"p  [{health}]" in out(cli, "status")


def test_pool_resize(cli, world):
    reserve_id(cli, "low", cpu=6, memory=100)
    printed = out(cli, "pool", "resize", "--name", "p", "--cpu", "6")
    assert printed == "Pool 'p' resized — CPU: 6  Memory: 1000MB  GPU: 4\n"  # others stay
    pool = js(cli, "pool", "resize", "--name", "p", "--gpu", "0", "--memory", "100")
    assert pool["total"] == {"cpu": 6, "memory": 100, "gpu": 0}
    assert pool["reserved"] == {"cpu": 6, "memory": 100, "gpu": 0}
    result = cli("pool", "resize", "--name", "p", "--cpu", "5")
    assert (result.code, result.stdout) == (4, "")
    assert result.stderr == "Error: cannot resize pool 'p': cpu 5 is below the 6 reserved now\n"
    # All three would be 0 only because of what the pool already has: refused (4).
    out(cli, "pool", "create", "--name", "c", "--cpu", "2")
    result = cli("pool", "resize", "--name", "c", "--cpu", "0")
    assert result.code == 4 and result.stderr.startswith("Error: cannot resize pool 'c'")
    # Given together: visible without the database (2).
    result = cli("pool", "resize", "--name", "c", "--cpu", "0", "--memory", "0", "--gpu", "0")
    assert result.code == 2 and result.stdout == ""


def test_pool_delete_and_force(cli, world):
    rid = reserve_id(cli, "low", cpu=1)
    result = cli("pool", "delete", "--name", "p")
    assert (result.code, result.stdout) == (4, "")
    assert result.stderr == (
        "Error: pool 'p' has 1 active reservation(s); release them first or use --force\n"
    )
    frozen_now = "2026-11-24T12:00:00.000000Z"
    world.advance(5)
    assert out(cli, "pool", "delete", "--name", "p", "--force") == (
        f"Pool 'p' deleted; released 1 reservation(s):\n  {rid}  tenant=low  cpu=1 mem=0 gpu=0\n"
    )
    [row] = js(cli, "list", "--all")
    assert row["id"] == rid and row["status"] == "released"
    assert row["ended_at"] == "2026-11-24T12:00:05.000000Z" != frozen_now
    assert out(cli, "pool", "list", "--json") == "[]\n"
    assert cli("pool", "show", "--name", "p").code == 1
    # The name is free again; history keeps pointing at the old row.
    out(cli, "pool", "create", "--name", "p", "--cpu", "1")
    pool = js(cli, "pool", "delete", "--name", "p")
    assert set(pool) >= POOL_KEYS and pool["name"] == "p"


# ---------------------------------------------------------------- tenants


def test_tenant_add_list_order_and_json(cli, frozen):
    assert out(cli, "tenant", "list") == "No tenants.\n"
    assert out(cli, "tenant", "list", "--json") == "[]\n"
    assert out(cli, "tenant", "add", "--name", "b") == "Tenant 'b' registered with priority 5\n"
    assert out(cli, "tenant", "add", "--name", "a", "--priority", "5") == (
        "Tenant 'a' registered with priority 5\n"
    )
    out(cli, "tenant", "add", "--name", "Z", "--priority", "1")
    out(cli, "tenant", "add", "--name", "top", "--priority", "10")
    tenant = js(cli, "tenant", "add", "--name", "B", "--priority", "5")
    assert set(tenant) >= TENANT_KEYS
    assert tenant["name"] == "B" and tenant["priority"] == 5
    assert tenant["active_reservations"] == 0
    assert tenant["created_at"] == "2026-11-24T12:00:00.000000Z"
    expected = ["top", "B", "a", "b", "Z"]  # priority desc, then byte-wise name
    assert [t["name"] for t in js(cli, "tenant", "list")] == expected
    text = out(cli, "tenant", "list")
    header = text.splitlines()[0].split()
    assert header[:3] == ["NAME", "PRIORITY", "ACTIVE"] and header[-1] == "REGISTERED"
    assert [row[0] for row in table_rows(text)] == expected


def test_tenant_active_counts(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "5")
    reserve_id(cli, "low", "p", cpu=1)
    reserve_id(cli, "low", "q", cpu=1)
    counts = {t["name"]: t["active_reservations"] for t in js(cli, "tenant", "list")}
    assert counts == {"high": 0, "mid": 0, "low": 2}
    rows = {row[0]: row for row in table_rows(out(cli, "tenant", "list"))}
    assert rows["low"][1:3] == ["2", "2"]


def test_tenant_update_and_remove(cli, world):
    printed = out(cli, "tenant", "update", "--name", "mid", "--priority", "7")
    assert printed.startswith("Tenant 'mid' updated: priority 7")
    tenant = js(cli, "tenant", "update", "--name", "mid", "--priority", "8")
    assert tenant["priority"] == 8 and set(tenant) >= TENANT_KEYS
    rid = reserve_id(cli, "mid", cpu=1)
    result = cli("tenant", "remove", "--name", "mid")
    assert (result.code, result.stdout) == (4, "")
    assert result.stderr == (
        "Error: tenant 'mid' has 1 active reservation(s); release them first or use --force\n"
    )
    world.advance(3)
    assert out(cli, "tenant", "remove", "--name", "mid", "--force") == (
        f"Tenant 'mid' removed; released 1 reservation(s):\n  {rid}  pool=p  cpu=1 mem=0 gpu=0\n"
    )
    [row] = js(cli, "list", "--all")
    assert (row["id"], row["status"], row["ended_at"]) == (
        rid,
        "released",
        "2026-11-24T12:00:03.000000Z",
    )
    assert "mid" not in [t["name"] for t in js(cli, "tenant", "list")]
    assert out(cli, "tenant", "add", "--name", "mid") == "Tenant 'mid' registered with priority 5\n"
    tenant = js(cli, "tenant", "remove", "--name", "mid")
    assert tenant["name"] == "mid"
    assert cli("tenant", "update", "--name", "mid", "--priority", "3").code == 1


# ---------------------------------------------------------------- reservations


def test_reserve_output_and_json(cli, world):
    printed = out(
        cli,
        "reserve",
        "--tenant",
        "low",
        "--pool",
        "p",
        "--cpu",
        "2",
        "--memory",
        "64",
        "--ttl",
        "5m",
    )
    lines = printed.splitlines()
    assert re.fullmatch(r"Reservation created: [0-9a-f]{16}", lines[0])
    assert "  Tenant:   low" in lines and "  Pool:     p" in lines
    assert "  CPU:      2" in lines and "  Memory:   64 MB" in lines and "  GPU:      0" in lines
    assert "  Status:   active" in lines
    assert lines[-1].endswith("(in 5m0s)")
    r = js(cli, "reserve", "--tenant", "mid", "--pool", "p", "--gpu", "1", "--ttl", "1h30m")
    assert set(r) >= RESERVATION_KEYS
    assert re.fullmatch(r"[0-9a-f]{16}", r["id"])
    assert (r["tenant"], r["pool"], r["cpu"], r["memory"], r["gpu"]) == ("mid", "p", 0, 0, 1)
    assert (r["ttl"], r["status"], r["ended_at"], r["preempted_by"]) == (5400, "active", None, None)
    assert r["created_at"] == "2026-11-24T12:00:00.000000Z"
    assert r["expires_at"] == "2026-11-24T13:30:00.000000Z"
    r = js(cli, "reserve", "--tenant", "high", "--pool", "p", "--cpu", "1", "--ttl", "0")
    assert r["ttl"] is None and r["expires_at"] is None


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        ("300", 300),
        ("90s", 90),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("2147483647", 2147483647),
    ],
)
def test_ttl_forms(cli, world, ttl: str, seconds: int):
    r = js(cli, "reserve", "--tenant", "low", "--pool", "p", "--cpu", "1", "--ttl", ttl)
    assert r["ttl"] == seconds


def test_unreserve(cli, world):
    rid = reserve_id(cli, "low", cpu=1)
    assert out(cli, "unreserve", "--id", rid) == f"Reservation '{rid}' released\n"
    result = cli("unreserve", "--id", rid)
    assert (result.code, result.stdout) == (4, "")
    assert result.stderr == f"Error: reservation '{rid}' is not active (status: released)\n"
    rid = reserve_id(cli, "low", cpu=1)
    world.advance(1)
    r = js(cli, "unreserve", "--id", rid)
    assert set(r) >= RESERVATION_KEYS
    assert (r["status"], r["ended_at"]) == ("released", "2026-11-24T12:00:01.000000Z")


def test_extend(cli, world):
    rid = reserve_id(cli, "low", cpu=1, ttl="60")
    world.advance(30)
    r = js(cli, "extend", "--id", rid, "--ttl", "10m")
    assert (r["ttl"], r["expires_at"]) == (600, "2026-11-24T12:10:30.000000Z")
    printed = out(cli, "extend", "--id", rid, "--ttl", "2h")
    # The end moved from 12:10:30 to 14:00:30 (UTC), said in local time.
    assert printed.startswith(f"Reservation '{rid}' now expires ")
    assert printed.endswith(" (in 2h0m; 1h50m later than before)\n")
    assert out(cli, "extend", "--id", rid, "--ttl", "0").startswith(
        f"Reservation '{rid}' now never expires (before: "
    )
    [row] = js(cli, "list")
    assert (row["ttl"], row["expires_at"]) == (None, None)
    # Past due (not yet swept): no longer active, for extend as for everything.
    rid2 = reserve_id(cli, "mid", cpu=1, ttl="10")
    world.advance(10)
    result = cli("extend", "--id", rid2, "--ttl", "5m")
    assert (result.code, result.stdout) == (4, "")
    assert result.stderr == f"Error: reservation '{rid2}' is not active (status: expired)\n"


def test_preempt(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "4")
    first = reserve_id(cli, "low", "p", cpu=2, memory=10, gpu=1)
    world.advance(1)
    second = reserve_id(cli, "low", "q", cpu=3)
    world.advance(1)
    printed = out(cli, "preempt", "--tenant", "high", "--target", "low")
    assert printed == (
        "Preempted 2 reservation(s) from 'low'\n"
        f"  {first}  cpu=2 mem=10 gpu=1  pool=p\n"
        f"  {second}  cpu=3 mem=0 gpu=0  pool=q\n"
    )
    rows = {r["id"]: r for r in js(cli, "list", "--all")}
    for rid in (first, second):
        assert rows[rid]["status"] == "preempted"
        assert rows[rid]["preempted_by"] == "high"
        assert rows[rid]["ended_at"] == "2026-11-24T12:00:02.000000Z"
    # --pool limits it; JSON shape.
    third = reserve_id(cli, "low", "p", cpu=1)
    reserve_id(cli, "low", "q", cpu=1)
    data = js(cli, "preempt", "--tenant", "mid", "--target", "low", "--pool", "p")
    assert set(data) >= {"target", "preempted"}
    assert data["target"] == "low"
    assert [r["id"] for r in data["preempted"]] == [third]
    assert set(data["preempted"][0]) >= RESERVATION_KEYS
    assert data["preempted"][0]["preempted_by"] == "mid"
    assert len(js(cli, "list", "--tenant", "low")) == 1


# ---------------------------------------------------------------- list


def test_list_empty(cli, world):
    assert out(cli, "list") == "No reservations.\n"
    assert out(cli, "list", "--json") == "[]\n"
    assert out(cli, "list", "--all", "--json") == "[]\n"


def test_list_order_is_creation_ties_in_insertion_order(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "10")
    ids = [reserve_id(cli, t, pool, cpu=1) for t in ("mid", "high", "low") for pool in ("q", "p")]
    # All at the same frozen instant: insertion order decides.
    assert [r["id"] for r in js(cli, "list")] == ids
    text = out(cli, "list")
    assert text.splitlines()[0].split() == [
        "ID",
        "TENANT",
        "USER",
        "POOL",
        "CPU",
        "MEMORY",
        "GPU",
        "DEVICES",
        "STATUS",
        "EXPIRES",
    ]
    assert [row[0] for row in table_rows(text)] == ids


def test_list_orders_by_created_at_not_insertion(cli, world):
    world.advance(10)
    later = reserve_id(cli, "low", cpu=1)
    world.advance(-5)  # a clock that stepped back: created_at decides, not the rowid
    earlier = reserve_id(cli, "mid", cpu=1)
    assert [r["id"] for r in js(cli, "list")] == [earlier, later]
    assert [r["id"] for r in js(cli, "list", "--all")] == [earlier, later]


def test_expires_column(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "10")
    never = reserve_id(cli, "high", "p", cpu=1)
    short = reserve_id(cli, "mid", "p", cpu=1, ttl="46")
    mins = reserve_id(cli, "low", "p", cpu=1, ttl="5m")
    long = reserve_id(cli, "high", "q", cpu=1, ttl="25h1m1s")
    ended = reserve_id(cli, "mid", "q", cpu=1)
    out(cli, "unreserve", "--id", ended)
    world.advance(1)
    rows = {row[0]: row for row in table_rows(out(cli, "list", "--all"))}
    assert rows[never][-1] == "never"
    assert rows[short][-1] == "45s"
    assert rows[mins][-1] == "4m59s"
    assert rows[long][-1] == "25h1m"
    assert rows[ended][-2:] == ["released", "-"]
    world.advance(45)  # `short` is due now: expired before any sweep
    rows = {row[0]: row for row in table_rows(out(cli, "list", "--all"))}
    assert rows[short][-2:] == ["expired", "-"]
    assert short not in out(cli, "list")


def test_list_filters(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "10")
    a = reserve_id(cli, "low", "p", cpu=1)
    b = reserve_id(cli, "low", "q", cpu=1)
    c = reserve_id(cli, "mid", "p", cpu=1, ttl="10")
    d = reserve_id(cli, "high", "q", cpu=1)
    out(cli, "unreserve", "--id", b)
    world.advance(10)  # c is due
    ids = lambda *args: [r["id"] for r in js(cli, "list", *args)]  # noqa: E731
    assert ids() == [a, d]
    assert ids("--all") == [a, b, c, d]
    assert ids("--tenant", "low") == [a]
    assert ids("--all", "--tenant", "low") == [a, b]
    assert ids("--pool", "q") == [d]
    assert ids("--all", "--pool", "q", "--tenant", "low") == [b]
    assert ids("--status", "released") == [b]  # implies --all
    assert ids("--status", "expired") == [c]
    assert ids("--status", "active") == [a, d]
    assert ids("--status", "preempted") == []
    [row] = js(cli, "list", "--status", "expired")
    assert row["ended_at"] == row["expires_at"] == "2026-11-24T12:00:10.000000Z"
    # Deleted pools and tenants are still matched by name, and history keeps their names.
    out(cli, "pool", "delete", "--name", "q", "--force")
    out(cli, "tenant", "remove", "--name", "low", "--force")
    assert ids("--all", "--pool", "q") == [b, d]
    assert ids("--all", "--tenant", "low") == [a, b]
    out(cli, "tenant", "add", "--name", "low")  # a new tenant under the old name
    out(cli, "pool", "create", "--name", "q", "--cpu", "2")
    e = reserve_id(cli, "low", "q", cpu=1)
    assert ids("--all", "--tenant", "low") == [a, b, e]
    assert ids("--tenant", "low") == [e]
    assert ids("--all", "--pool", "q") == [b, d, e]
    for args in (("--tenant", "ghost"), ("--pool", "ghost"), ("--all", "--tenant", "ghost")):
        result = cli("list", *args)
        assert (result.code, result.stdout) == (1, "")
        kind = args[-2][2:]
        assert result.stderr == f"Error: {kind} 'ghost' not found (see: resgate {kind} list)\n"


# ---------------------------------------------------------------- status


def test_status_counts_window_and_json(cli, world):
    out(cli, "pool", "create", "--name", "q", "--cpu", "10")
    old = reserve_id(cli, "low", "p", cpu=1)
    out(cli, "unreserve", "--id", old)
    world.advance(3600)
    released = reserve_id(cli, "low", "p", cpu=1)
    out(cli, "unreserve", "--id", released)
    reserve_id(cli, "low", "q", cpu=1, ttl="60")  # due, never swept
    reserve_id(cli, "mid", "p", cpu=5, memory=500, gpu=1)
    victim = reserve_id(cli, "mid", "q", cpu=1)
    out(cli, "preempt", "--tenant", "high", "--target", "mid", "--pool", "q")
    world.advance(23 * 3600 + 1)  # `old` ended 24h+1s ago: outside the window
    status = js(cli, "status")
    assert set(status) >= {"pools", "tenants", "reservations", "window_hours"}
    assert status["window_hours"] == 24
    assert status["reservations"] == {
        "active": 1,
        "upcoming": 0,
        "released": 1,
        "expired": 1,
        "preempted": 1,
    }
    assert [p["name"] for p in status["pools"]] == ["p", "q"]
    assert set(status["pools"][0]) >= POOL_KEYS
    assert [t["name"] for t in status["tenants"]] == ["high", "mid", "low"]
    assert set(status["tenants"][0]) >= TENANT_KEYS
    assert [t["active_reservations"] for t in status["tenants"]] == [0, 1, 0]
    text = out(cli, "status")
    assert text.splitlines()[0] == (
        "Reservations: 1 active — last 24h: 1 released, 1 expired, 1 preempted"
    )
    assert victim not in text


def test_status_bars(cli, world):
    reserve_id(cli, "low", cpu=5, memory=1000, gpu=1)
    text = out(cli, "status")
    bars = re.findall(
        r"^    (CPU|MEMORY|GPU)\s+([█░]+)\s+([\d.]+)%\s+(\d+M?) / (\d+M?)$", text, re.M
    )
    assert bars == [
        ("CPU", "█" * 10 + "░" * 10, "50.00", "5", "10"),
        ("MEMORY", "█" * 20, "100.00", "1000M", "1000M"),
        ("GPU", "█" * 5 + "░" * 15, "25.00", "1", "4"),
    ]
    assert "  p  [exhausted]" in text
    lines = text.splitlines()
    tenants = lines[lines.index("Tenants:") + 1 :]
    assert tenants[0].split()[:4] == ["#", "NAME", "PRIORITY", "ACTIVE"]
    assert [line.split()[:4] for line in tenants[2:]] == [
        ["1", "high", "9", "0"],
        ["2", "mid", "5", "0"],
        ["3", "low", "2", "1"],
    ]


def test_status_empty_and_zero_totals(cli, frozen):
    text = out(cli, "status")
    assert "Pools:\n  (none)" in text and "Tenants:\n  (none)" in text
    out(cli, "pool", "create", "--name", "g", "--gpu", "1")
    text = out(cli, "status")
    assert "CPU        " + "░" * 20 + "   0.00%  0 / 0" in text


# ---------------------------------------------------------------- sweep, db


def test_sweep(cli, world):
    assert out(cli, "sweep") == "Expired 0 reservation(s)\n"
    a = reserve_id(cli, "low", cpu=1, ttl="5")
    b = reserve_id(cli, "mid", cpu=1, ttl="5")
    reserve_id(cli, "high", cpu=1, ttl="50")
    world.advance(5)
    data = js(cli, "sweep")
    assert data == {"expired": 2, "ids": sorted([a, b])}
    assert js(cli, "sweep") == {"expired": 0, "ids": []}
    rows = {r["id"]: r for r in js(cli, "list", "--all")}
    assert rows[a]["status"] == "expired"
    assert rows[a]["ended_at"] == rows[a]["expires_at"] == "2026-11-24T12:00:05.000000Z"


@pytest.mark.sqlite_only  # a new database file, and sqlite3 behind its back
def test_db_current_and_check(cli, isolated_env: Path, frozen):
    path = isolated_env / "resgate.db"
    assert js(cli, "db", "current") == {"revision": None, "head": SCHEMA_HEAD}
    assert not path.exists()  # reading the revision creates nothing
    out(cli, "pool", "create", "--name", "p", "--cpu", "2")
    assert out(cli, "db", "current") == f"revision {SCHEMA_HEAD}\n"
    assert js(cli, "db", "current") == {"revision": SCHEMA_HEAD, "head": SCHEMA_HEAD}
    assert out(cli, "db", "check") == "ok: 1 pool(s) checked, integrity ok\n"
    data = js(cli, "db", "check")
    assert data["ok"] is True and data["problems"] == []
    # Over-commit behind resgate's back: exit 1 with the differences.
    out(cli, "tenant", "add", "--name", "t")
    rid = reserve_id(cli, "t", cpu=2)
    with sqlite3.connect(path) as connection:
        triggers = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'pools'"
        ).fetchall()
        for (trigger,) in triggers:  # the database's own guard, out of the way
            connection.execute(f'DROP TRIGGER "{trigger}"')
        connection.execute("UPDATE pools SET cpu = 1")
    connection.close()
    result = cli("db", "check")
    assert result.code == 1
    assert "pool 'p': cpu reserved 2 exceeds total 1" in result.stdout
    assert "pool 'p': pool_free says" in result.stdout  # the stored counter disagrees too
    assert result.stderr == "Error: db check found 2 problem(s)\n"
    assert rid


@pytest.mark.sqlite_only  # a new database file, and sqlite3 behind its back
def test_db_upgrade_on_new_and_current(cli, isolated_env: Path):
    printed = out(cli, "db", "upgrade")
    assert printed == f"Database upgraded from nothing to revision {SCHEMA_HEAD}\n"
    assert out(cli, "db", "upgrade") == f"Database is at revision {SCHEMA_HEAD}; nothing to do\n"
    assert js(cli, "db", "upgrade") == {"from": SCHEMA_HEAD, "to": SCHEMA_HEAD}


def test_json_timestamps_are_iso_utc(cli, world):
    rid = reserve_id(cli, "low", cpu=1, ttl="1m")
    out(cli, "unreserve", "--id", rid)
    [row] = js(cli, "list", "--all")
    for key in ("created_at", "expires_at", "ended_at"):
        assert ISO_Z.match(row[key]), row
    world.advance(timedelta(hours=1).total_seconds())
    assert js(cli, "status")["pools"][0]["created_at"] == "2026-11-24T12:00:00.000000Z"
