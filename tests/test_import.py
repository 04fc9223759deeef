"""README "Coming from the Go version": `resgate import-state` reads the Go tool's state file.

The state files here are written by hand in that tool's format (2-space indented
JSON); the long history is generated, in the same format."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from resgate.clock import FixedClock

pytestmark = pytest.mark.sqlite_only

NOW = datetime(2026, 3, 1, 12, 0, 0)

STATE = """\
{
  "pools": {
    "pool1": {
      "name": "pool1",
      "total": {
        "cpu": 32,
        "memory": 65536,
        "gpu": 8
      },
      "reserved": {
        "cpu": 4,
        "memory": 8192,
        "gpu": 2
      },
      "created_at": "2026-01-05T10:00:00.123456789+01:00"
    }
  },
  "tenants": {
    "tenant1": {
      "name": "tenant1",
      "priority": 5,
      "created_at": "2026-01-05T10:00:01+01:00"
    },
    "tenant2": {
      "name": "tenant2",
      "priority": 8,
      "created_at": "2026-01-05T10:00:02Z"
    }
  },
  "reservations": {
    "3f9a0c1d2e4b5a69": {
      "id": "3f9a0c1d2e4b5a69",
      "tenant_name": "tenant1",
      "pool_name": "pool1",
      "resources": {
        "cpu": 4,
        "memory": 8192,
        "gpu": 2
      },
      "status": "active",
      "ttl": 0,
      "created_at": "2026-01-05T10:00:05Z"
    }
  },
  "history": [
    {
      "id": "0123456789abcdef",
      "tenant_name": "tenant2",
      "pool_name": "pool1",
      "resources": {
        "cpu": 2,
        "memory": 1024,
        "gpu": 0
      },
      "status": "active",
      "ttl": 0,
      "created_at": "2026-01-05T10:00:03Z",
      "released_at": "2026-01-05T11:00:00Z"
    },
    {
      "id": "3f9a0c1d2e4b5a69",
      "tenant_name": "tenant1",
      "pool_name": "pool1",
      "resources": {
        "cpu": 4,
        "memory": 8192,
        "gpu": 2
      },
      "status": "active",
      "ttl": 0,
      "created_at": "2026-01-05T10:00:05Z"
    }
  ]
}
"""


@pytest.fixture(autouse=True)
def frozen() -> FixedClock:
    return FixedClock(NOW)


def write(tmp_path: Path, text: str, name: str = "state.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def state_json(document: dict[str, Any]) -> str:
    """The Go tool's layout: UTF-8 JSON, 2-space indented."""
    return json.dumps(document, indent=2) + "\n"


def rows(sql: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(os.environ["RESGATE_DB"]) as db:
        return db.execute(sql, args).fetchall()


def dump() -> list[str]:
    """Every table, row by row (schema included)."""
    db = sqlite3.connect(os.environ["RESGATE_DB"])
    try:
        return list(db.iterdump())
    finally:
        db.close()


def summary(cli, path: Path, *extra: str) -> dict[str, Any]:
    result = cli("import-state", str(path), "--json", *extra)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def reservation(
    rid: str,
    tenant: str,
    pool: str,
    created: datetime,
    cpu: int = 1,
    memory: int = 0,
    gpu: int = 0,
    ttl: int = 0,
    **times: datetime,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": rid,
        "tenant_name": tenant,
        "pool_name": pool,
        "resources": {"cpu": cpu, "memory": memory, "gpu": gpu},
        "status": "active",  # as that tool wrote every history entry
        "ttl": ttl,
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    for key, value in times.items():
        entry[key] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return entry


def expect_error(cli, path: Path, code: int, *fragments: str) -> str:
    result = cli("import-state", str(path), "--json")
    assert result.code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ")
    assert len(result.stderr.splitlines()) == 1
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


# ---------------------------------------------------------------- the basics


def test_empty_file(cli, tmp_path: Path):
    assert summary(cli, write(tmp_path, "{}\n")) == {
        "created": {"pools": 0, "tenants": 0, "reservations": 0},
        "reused": {"pools": 0, "tenants": 0},
        "skipped": 0,
        "released": 0,
        "created_deleted": {"pools": 0, "tenants": 0},
        "statuses": {"active": 0, "expired": 0, "released": 0},
        "ended_at_import_time": 0,
        "dry_run": False,
    }
    assert cli("db", "check").code == 0


def test_null_collections(cli, tmp_path: Path):
    path = write(
        tmp_path,
        '{\n  "pools": null,\n  "tenants": null,\n  "reservations": null,\n  "history": null\n}\n',
    )
    result = summary(cli, path)
    assert result["created"] == {"pools": 0, "tenants": 0, "reservations": 0}
    assert result["skipped"] == 0


def test_import_of_a_small_state_file(cli, tmp_path: Path):
    path = write(tmp_path, STATE)
    result = summary(cli, path)
    assert result["created"] == {"pools": 1, "tenants": 2, "reservations": 2}
    assert result["statuses"] == {"active": 1, "expired": 0, "released": 1}
    assert result["ended_at_import_time"] == 0
    assert rows("SELECT name, cpu, memory, gpu, created_at, deleted_at FROM pools") == [
        ("pool1", 32, 65536, 8, "2026-01-05 09:00:00.123456", None)
    ]
    assert rows("SELECT name, priority, created_at FROM tenants ORDER BY name") == [
        ("tenant1", 5, "2026-01-05 09:00:01.000000"),
        ("tenant2", 8, "2026-01-05 10:00:02.000000"),
    ]
    assert rows(
        "SELECT id, status, ttl, created_at, expires_at, ended_at FROM reservations ORDER BY rowid"
    ) == [
        (
            "0123456789abcdef",
            "released",
            None,
            "2026-01-05 10:00:03.000000",
            None,
            "2026-01-05 11:00:00.000000",
        ),
        ("3f9a0c1d2e4b5a69", "active", None, "2026-01-05 10:00:05.000000", None, None),
    ]
    shown = json.loads(cli("list", "--json").stdout)
    assert [(r["id"], r["tenant"], r["pool"], r["status"]) for r in shown] == [
        ("3f9a0c1d2e4b5a69", "tenant1", "pool1", "active")
    ]


def test_human_summary(cli, tmp_path: Path):
    result = cli("import-state", str(write(tmp_path, STATE)))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Imported {tmp_path / 'state.json'}"
    assert "Pools: 1 created, 0 reused" in lines
    assert "Tenants: 2 created, 0 reused" in lines
    assert any(
        line.startswith("Reservations: 2 created (1 active, 0 expired, 1 released)")
        for line in lines
    )


def test_default_path(cli, isolated_env: Path):
    folder = isolated_env / "home" / ".resgate"
    folder.mkdir()
    (folder / "state.json").write_text(STATE, encoding="utf-8")
    result = cli("import-state", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["created"]["reservations"] == 2


def test_missing_file_is_exit_1_and_creates_no_database(cli, tmp_path: Path):
    result = cli("import-state", str(tmp_path / "nope.json"))
    assert result.code == 1
    assert "cannot read" in result.stderr and "nope.json" in result.stderr
    assert not Path(os.environ["RESGATE_DB"]).exists()


# ---------------------------------------------------------------- history


def long_history() -> dict[str, Any]:
    """300 reservations over 60 days: each tenant takes a slice, the Go tool
    ends it (released, preempted, expired: the file cannot tell them apart),
    and every entry still says "active". Three are still held."""
    start = datetime(2026, 1, 1)
    tenants = ["alice", "bob", "carol"]
    history = []
    for i in range(300):
        created = start + timedelta(hours=4 * i)
        extra: dict[str, datetime] = {}
        ttl = 0
        kind = i % 3
        if kind == 0:  # released by its owner: the tool wrote released_at
            extra["released_at"] = created + timedelta(minutes=30)
        elif kind == 1:  # preempted: that tool wrote no time at all
            pass
        else:  # ran out: a ttl, an expires_at, removed from the active map
            ttl = 600
            extra["expires_at"] = created + timedelta(seconds=600)
        history.append(
            reservation(
                f"{i:016x}",
                tenants[i % 3],
                "gpu-box" if i % 2 else "cpu-box",
                created,
                cpu=1 + i % 4,
                memory=512,
                gpu=(i % 3) if i % 2 else 0,
                ttl=ttl,
                **extra,
            )
        )
    # A deleted pool and a deleted tenant, only in history.
    history.append(
        reservation("aaaaaaaaaaaaaaa1", "dave", "old-box", start, cpu=6, memory=100, gpu=1)
    )
    history.append(
        reservation("aaaaaaaaaaaaaaa2", "dave", "old-box", start, cpu=2, memory=900, gpu=0)
    )
    live_start = NOW - timedelta(hours=1)
    active = {
        "bbbbbbbbbbbbbbb1": reservation(
            "bbbbbbbbbbbbbbb1", "alice", "gpu-box", live_start, cpu=2, gpu=3
        ),
        "bbbbbbbbbbbbbbb2": reservation(
            "bbbbbbbbbbbbbbb2",
            "bob",
            "gpu-box",
            live_start + timedelta(seconds=1),
            cpu=1,
            gpu=2,
            ttl=7200,
            expires_at=live_start + timedelta(seconds=7201),
        ),
        # Still in the active map, but its time has passed: expired.
        "bbbbbbbbbbbbbbb3": reservation(
            "bbbbbbbbbbbbbbb3",
            "carol",
            "gpu-box",
            live_start,
            cpu=1,
            gpu=1,
            ttl=60,
            expires_at=live_start + timedelta(seconds=60),
        ),
    }
    history.extend(active.values())
    return {
        "pools": {
            "cpu-box": {
                "name": "cpu-box",
                "total": {"cpu": 64, "memory": 131072, "gpu": 0},
                "created_at": "2025-12-31T23:00:00Z",
            },
            "gpu-box": {
                "name": "gpu-box",
                "total": {"cpu": 32, "memory": 65536, "gpu": 8},
                "created_at": "2025-12-31T23:00:00Z",
            },
        },
        "tenants": {
            name: {"name": name, "priority": 3 + n, "created_at": "2025-12-31T23:00:00Z"}
            for n, name in enumerate(tenants)
        },
        "reservations": active,
        "history": history,
    }


def test_long_history(cli, tmp_path: Path):
    path = write(tmp_path, state_json(long_history()))
    result = summary(cli, path)
    assert result["created"] == {"pools": 3, "tenants": 4, "reservations": 305}
    assert result["created_deleted"] == {"pools": 1, "tenants": 1}
    assert result["statuses"] == {"active": 2, "expired": 1, "released": 302}
    # 100 had released_at; the 100 preempted, 100 expired and dave's 2 did not.
    assert result["ended_at_import_time"] == 202
    assert result["skipped"] == 0 and result["released"] == 0

    by_status = dict(rows("SELECT status, count(*) FROM reservations GROUP BY status"))
    assert by_status == {"active": 2, "expired": 1, "released": 302}
    # Original ids, amounts and times; ended_at from released_at, else the import time.
    assert rows(
        "SELECT cpu, memory, gpu, created_at, ended_at FROM reservations WHERE id = ?",
        f"{3:016x}",
    ) == [(4, 512, 0, "2026-01-01 12:00:00.000000", "2026-01-01 12:30:00.000000")]
    assert rows(
        "SELECT status, ttl, expires_at, ended_at FROM reservations WHERE id = ?", f"{5:016x}"
    ) == [("released", 600, "2026-01-01 20:10:00.000000", "2026-03-01 12:00:00.000000")]
    assert rows(
        "SELECT status, ttl, expires_at, ended_at FROM reservations WHERE id = ?",
        "bbbbbbbbbbbbbbb2",
    ) == [("active", 7200, "2026-03-01 13:00:01.000000", None)]
    assert rows(
        "SELECT status, expires_at, ended_at FROM reservations WHERE id = ?", "bbbbbbbbbbbbbbb3"
    ) == [("expired", "2026-03-01 11:01:00.000000", "2026-03-01 11:01:00.000000")]
    # History-only pool and tenant: deleted rows; the pool's totals are the
    # largest amounts its reservations held, the tenant's priority 5.
    assert rows("SELECT cpu, memory, gpu, deleted_at FROM pools WHERE name = 'old-box'") == [
        (6, 900, 1, "2026-03-01 12:00:00.000000")
    ]
    assert rows("SELECT priority, deleted_at FROM tenants WHERE name = 'dave'") == [
        (5, "2026-03-01 12:00:00.000000")
    ]
    assert [p["name"] for p in json.loads(cli("pool", "list", "--json").stdout)] == [
        "cpu-box",
        "gpu-box",
    ]
    listed = json.loads(cli("list", "--all", "--pool", "old-box", "--json").stdout)
    assert {r["tenant"] for r in listed} == {"dave"}
    status = json.loads(cli("status", "--json").stdout)
    assert status["reservations"]["active"] == 2
    assert cli("db", "check").code == 0
    verified = cli("audit", "verify", "--json")
    assert verified.code == 0 and json.loads(verified.stdout)["ok"] is True


def test_active_reservations_hold_the_lowest_gpu_ids_in_creation_order(cli, tmp_path: Path):
    path = write(tmp_path, state_json(long_history()))
    summary(cli, path)
    shown = json.loads(cli("pool", "show", "--name", "gpu-box", "--json").stdout)
    assert "devices" in shown, shown  # README "GPU devices"
    held = {d["id"]: d["reservation"] for d in shown["devices"] if d["reservation"]}
    # alice (created first) holds 0-2, bob 3-4; carol's expired one holds none.
    assert held == {
        0: "bbbbbbbbbbbbbbb1",
        1: "bbbbbbbbbbbbbbb1",
        2: "bbbbbbbbbbbbbbb1",
        3: "bbbbbbbbbbbbbbb2",
        4: "bbbbbbbbbbbbbbb2",
    }


def test_ttl_zero_or_negative_means_no_expiry(cli, tmp_path: Path):
    created = NOW - timedelta(days=2)
    past = NOW - timedelta(days=1)
    entries = {
        "c000000000000001": reservation(
            "c000000000000001", "t1", "p", created, ttl=0, expires_at=past
        ),
        "c000000000000002": reservation(
            "c000000000000002", "t2", "p", created, ttl=-30, expires_at=past
        ),
        # ttl > 0 without expires_at: created_at + ttl (here in the past: expired).
        "c000000000000003": reservation("c000000000000003", "t3", "p", created, ttl=90),
        # ttl > 0 without expires_at, still running.
        "c000000000000004": reservation(
            "c000000000000004", "t4", "p", NOW - timedelta(seconds=10), ttl=90
        ),
    }
    document = {
        "pools": {"p": {"name": "p", "total": {"cpu": 8}}},
        "tenants": {f"t{i}": {"name": f"t{i}", "priority": 5} for i in range(1, 5)},
        "reservations": entries,
        "history": list(entries.values()),
    }
    result = summary(cli, write(tmp_path, state_json(document)))
    assert result["statuses"] == {"active": 3, "expired": 1, "released": 0}
    assert rows("SELECT id, status, ttl, expires_at, ended_at FROM reservations ORDER BY id") == [
        ("c000000000000001", "active", None, None, None),
        ("c000000000000002", "active", None, None, None),
        (
            "c000000000000003",
            "expired",
            90,
            "2026-02-27 12:01:30.000000",
            "2026-02-27 12:01:30.000000",
        ),
        ("c000000000000004", "active", 90, "2026-03-01 12:01:20.000000", None),
    ]


def test_timestamps_with_nanoseconds_and_offsets_are_stored_exactly(cli, tmp_path: Path):
    times = {
        "d000000000000001": "2026-01-05T10:00:00.123456789+01:00",
        "d000000000000002": "2026-01-05T10:00:00.999999999Z",
        "d000000000000003": "2026-01-04T23:30:00.5-05:30",
        "d000000000000004": "2026-01-05t09:00:00.000001z",
    }
    history = []
    for rid, when in times.items():
        entry = reservation(rid, "t", "p", NOW)
        entry["created_at"] = when
        entry["released_at"] = "2026-01-06T00:00:00.000000001+00:00"
        history.append(entry)
    document = {
        "pools": {"p": {"name": "p", "total": {"cpu": 1}, "created_at": "2026-01-01T00:00:00Z"}},
        "tenants": {"t": {"name": "t", "priority": 1}},
        "history": history,
    }
    summary(cli, write(tmp_path, state_json(document)))
    assert rows("SELECT id, created_at, ended_at FROM reservations ORDER BY id") == [
        ("d000000000000001", "2026-01-05 09:00:00.123456", "2026-01-06 00:00:00.000000"),
        ("d000000000000002", "2026-01-05 10:00:00.999999", "2026-01-06 00:00:00.000000"),
        ("d000000000000003", "2026-01-05 05:00:00.500000", "2026-01-06 00:00:00.000000"),
        ("d000000000000004", "2026-01-05 09:00:00.000001", "2026-01-06 00:00:00.000000"),
    ]
    # A tenant without created_at: the import time.
    assert rows("SELECT created_at FROM tenants") == [("2026-03-01 12:00:00.000000",)]


# ---------------------------------------------------------------- twice, dry run, audit


def test_second_import_changes_nothing_and_counts_everything_skipped(cli, tmp_path: Path):
    path = write(tmp_path, state_json(long_history()))
    summary(cli, path)
    before = dump()
    again = summary(cli, path)
    assert again["created"] == {"pools": 0, "tenants": 0, "reservations": 0}
    assert again["reused"] == {"pools": 3, "tenants": 4}
    assert again["skipped"] == 305
    assert again["released"] == 0
    assert dump() == before  # nothing duplicated, not even an audit event


def test_second_import_releases_what_the_go_tool_ended_meanwhile(cli, tmp_path: Path):
    summary(cli, write(tmp_path, STATE))
    later = json.loads(STATE)
    del later["reservations"]["3f9a0c1d2e4b5a69"]
    later["history"][1]["released_at"] = "2026-02-01T08:00:00+02:00"
    later["history"].append(
        reservation("e000000000000001", "tenant2", "pool1", NOW - timedelta(minutes=5))
    )
    later["reservations"]["e000000000000001"] = later["history"][-1]
    result = summary(cli, write(tmp_path, state_json(later), "later.json"))
    assert result["created"]["reservations"] == 1
    assert result["skipped"] == 2
    assert result["released"] == 1
    assert rows("SELECT status, ended_at FROM reservations WHERE id = '3f9a0c1d2e4b5a69'") == [
        ("released", "2026-02-01 06:00:00.000000")
    ]
    events = json.loads(cli("audit", "log", "--action", "reservation.release", "--json").stdout)
    assert [e["subject"] for e in events][-1] == "3f9a0c1d2e4b5a69"
    assert events[-1]["data"]["imported"] is True
    assert cli("db", "check").code == 0


def test_dry_run_changes_nothing(cli, tmp_path: Path):
    assert cli("pool", "create", "--name", "existing", "--cpu", "1").code == 0
    before = dump()
    path = write(tmp_path, state_json(long_history()))
    result = cli("import-state", str(path), "--dry-run", "--json")
    assert result.code == 0, result.stderr
    preview = json.loads(result.stdout)
    assert preview["dry_run"] is True
    assert preview["created"]["reservations"] == 305
    assert dump() == before
    text = cli("import-state", str(path), "--dry-run")
    assert text.stdout.splitlines()[0] == "Dry run: nothing was changed"
    assert dump() == before
    real = summary(cli, path)
    assert {k: v for k, v in real.items() if k != "dry_run"} == {
        k: v for k, v in preview.items() if k != "dry_run"
    }


def test_dry_run_on_a_missing_database_creates_none(cli, tmp_path: Path):
    result = cli("import-state", str(write(tmp_path, STATE)), "--dry-run", "--json")
    assert result.code == 0, result.stderr
    assert not Path(os.environ["RESGATE_DB"]).exists()


def test_audit_events_say_imported(cli, tmp_path: Path):
    summary(cli, write(tmp_path, state_json(long_history())))
    events = json.loads(cli("audit", "log", "--json").stdout)
    actions: dict[str, int] = {}
    for event in events:
        actions[event["action"]] = actions.get(event["action"], 0) + 1
        assert event["data"]["imported"] is True, event
    assert actions == {
        "pool.create": 3,
        "pool.delete": 1,
        "tenant.add": 4,
        "tenant.remove": 1,
        "reservation.create": 305,
        "reservation.release": 302,
        "reservation.expire": 1,
    }
    created = next(e for e in events if e["subject"] == "bbbbbbbbbbbbbbb2")
    assert created["data"]["created_at"] == "2026-03-01T11:00:01.000000Z"
    assert created["data"]["ttl"] == 7200
    assert cli("audit", "verify").stdout.startswith(f"ok: {len(events)} events")
    assert cli("db", "check").code == 0


# ---------------------------------------------------------------- what exists already


def test_existing_pools_and_tenants_with_the_same_definition_are_reused(cli, tmp_path: Path):
    assert (
        cli(
            "pool", "create", "--name", "pool1", "--cpu", "32", "--memory", "65536", "--gpu", "8"
        ).code
        == 0
    )
    assert cli("tenant", "add", "--name", "tenant2", "--priority", "8").code == 0
    result = summary(cli, write(tmp_path, STATE))
    assert result["reused"] == {"pools": 1, "tenants": 1}
    assert result["created"] == {"pools": 0, "tenants": 1, "reservations": 2}
    assert rows("SELECT count(*) FROM pools") == [(1,)]
    assert cli("db", "check").code == 0


@pytest.mark.parametrize(
    "setup, message",
    [
        (
            ["pool", "create", "--name", "pool1", "--cpu", "16"],
            "pool 'pool1' already exists with cpu=16 memory=0 gpu=0; "
            "the state file has cpu=32 memory=65536 gpu=8",
        ),
        (
            ["tenant", "add", "--name", "tenant2", "--priority", "2"],
            "tenant 'tenant2' already exists with priority 2; the state file has priority 8",
        ),
    ],
)
def test_a_clash_with_what_exists_is_exit_4_and_changes_nothing(
    cli, tmp_path: Path, setup: list[str], message: str
):
    assert cli(*setup).code == 0
    before = dump()
    expect_error(cli, write(tmp_path, STATE), 4, message)
    assert dump() == before


def test_a_reservation_id_that_exists_differently_is_exit_4(cli, tmp_path: Path):
    summary(cli, write(tmp_path, STATE))
    changed = STATE.replace('"cpu": 2,', '"cpu": 3,')
    before = dump()
    expect_error(
        cli,
        write(tmp_path, changed, "changed.json"),
        4,
        "reservation '0123456789abcdef' already exists with a different amounts",
    )
    assert dump() == before


def test_importing_active_reservations_into_a_full_pool_is_exit_4(cli, tmp_path: Path):
    assert (
        cli(
            "pool", "create", "--name", "pool1", "--cpu", "32", "--memory", "65536", "--gpu", "8"
        ).code
        == 0
    )
    assert cli("tenant", "add", "--name", "other").code == 0
    assert cli("reserve", "--tenant", "other", "--pool", "pool1", "--cpu", "30").code == 0
    before = dump()
    expect_error(
        cli, write(tmp_path, STATE), 4, "would over-commit pool 'pool1': cpu 34 held, total 32"
    )
    assert dump() == before


# ---------------------------------------------------------------- the file's own errors


def test_truncated_json_is_exit_1_with_line_and_column(cli, tmp_path: Path):
    truncated = STATE[: STATE.index('"tenants"') + 20]
    path = write(tmp_path, truncated)
    try:
        json.loads(truncated)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
    expect_error(cli, path, 1, str(path), where)
    assert not Path(os.environ["RESGATE_DB"]).exists()


@pytest.mark.parametrize(
    "text, path",
    [
        ("[]\n", "expected a JSON object at the top level, got an array"),
        ('{\n  "pools": []\n}\n', "pools: expected an object, got an array"),
        ('{\n  "pools": {\n    "p": {\n      "total": [1]\n    }\n  }\n}\n', "pools.p.total:"),
        ('{\n  "pools": {\n    "p": 3\n  }\n}\n', "pools.p: expected an object"),
        ('{\n  "history": {}\n}\n', "history: expected an array"),
        (
            '{\n  "tenants": {\n    "t": {\n      "priority": "high"\n    }\n  }\n}\n',
            "tenants.t.priority: expected a whole number",
        ),
        (
            '{\n  "pools": {\n    "p": {\n      "total": {\n        "cpu": 1.5\n'
            "      }\n    }\n  }\n}\n",
            "pools.p.total.cpu: expected a whole number",
        ),
        (
            '{\n  "pools": {\n    "p": {\n      "total": {\n        "gpu": NaN\n'
            "      }\n    }\n  }\n}\n",
            "pools.p.total.gpu: expected a whole number",
        ),
        (
            '{\n  "pools": {\n    "p": {\n      "name": "q"\n    }\n  }\n}\n',
            "pools.p.name: pool name 'q' differs from its key 'p'",
        ),
    ],
)
def test_wrong_shape_is_exit_1_with_the_path(cli, tmp_path: Path, text: str, path: str):
    expect_error(cli, write(tmp_path, text), 1, path)


def history_with(change: dict[str, Any], index: int = 3) -> dict[str, Any]:
    history = [
        reservation(f"{i:016x}", "t", "p", datetime(2026, 1, 1) + timedelta(hours=i))
        for i in range(5)
    ]
    history[index].update(change)
    return {
        "pools": {"p": {"name": "p", "total": {"cpu": 4}}},
        "tenants": {"t": {"name": "t", "priority": 5}},
        "history": history,
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resources": {"cpu": "1"}}, "history[3].resources.cpu: expected a whole number"),
        ({"resources": 7}, "history[3].resources: expected an object, got a number"),
        ({"created_at": "yesterday"}, "history[3].created_at: invalid timestamp 'yesterday'"),
        ({"created_at": "2026-01-05T10:00:00"}, "history[3].created_at: invalid timestamp"),
        ({"created_at": None}, "history[3].created_at: missing"),
        ({"id": "XYZ"}, "history[3].id: invalid reservation id 'XYZ'"),
        ({"tenant_name": None}, "history[3].tenant_name: missing"),
        ({"ttl": "5m"}, "history[3].ttl: expected a whole number"),
    ],
)
def test_a_wrong_history_entry_names_its_path(cli, tmp_path: Path, change, message):
    expect_error(cli, write(tmp_path, state_json(history_with(change))), 1, message)


@pytest.mark.parametrize(
    "name, where",
    [
        ("bad name", 'pools["bad name"]'),
        ("-lead", "history[3].tenant_name"),
        ("x" * 65, "history[3].pool_name"),
    ],
)
def test_a_name_outside_the_pattern_is_exit_1_naming_it(cli, tmp_path: Path, name, where):
    if where.startswith("pools"):
        document = {"pools": {name: {"name": name, "total": {"cpu": 1}}}}
    else:
        field = where.rsplit(".", 1)[1]
        document = history_with({field: name})
    message = expect_error(cli, write(tmp_path, state_json(document)), 1, where, repr(name))
    assert "invalid" in message


@pytest.mark.parametrize(
    "document, message",
    [
        (
            history_with({"resources": {"cpu": -2}}),
            "history[3].resources.cpu: negative amount -2",
        ),
        (
            {"pools": {"p": {"total": {"gpu": 2147483648}}}},
            "pools.p.total.gpu: amount 2147483648 is above 2147483647",
        ),
        (
            {"tenants": {"t": {"priority": 11}}},
            "tenants.t.priority: priority must be between 1 and 10, got 11",
        ),
        (
            {
                "pools": {"p": {"total": {"cpu": 4}}},
                "tenants": {"t": {}, "u": {}},
                "reservations": {
                    "a000000000000001": reservation("a000000000000001", "t", "p", NOW, cpu=3),
                    "a000000000000002": reservation("a000000000000002", "u", "p", NOW, cpu=2),
                },
            },
            "reservations.a000000000000002.resources.cpu: pool 'p' over-committed: "
            "its active reservations hold cpu 5, its total is 4",
        ),
        (
            {
                "pools": {"p": {"total": {"cpu": 4}}},
                "tenants": {"t": {}},
                "reservations": {
                    "a000000000000001": reservation("a000000000000001", "t", "p", NOW),
                    "a000000000000002": reservation("a000000000000002", "t", "p", NOW),
                },
            },
            "reservations.a000000000000002: tenant 't' already has active reservation "
            "'a000000000000001' in pool 'p'",
        ),
        (
            {
                "pools": {"p": {"total": {"cpu": 4}}},
                "tenants": {"t": {}},
                "reservations": {
                    "a000000000000001": reservation("a000000000000001", "t", "gone", NOW),
                },
            },
            "reservations.a000000000000001.pool_name: active reservation in pool 'gone', "
            "which is not in pools",
        ),
        (
            {
                "reservations": {
                    "a000000000000001": reservation("a000000000000001", "t", "p", NOW, cpu=1),
                },
                "history": [reservation("a000000000000001", "t", "p", NOW, cpu=2)],
            },
            "reservations.a000000000000001: reservation 'a000000000000001' differs from history[0]",
        ),
    ],
)
def test_a_broken_invariant_is_exit_1_with_the_path(cli, tmp_path: Path, document, message):
    expect_error(cli, write(tmp_path, state_json(document)), 1, message)
    assert not Path(os.environ["RESGATE_DB"]).exists()


def test_checks_run_in_order_shape_before_invariants(cli, tmp_path: Path):
    document = history_with({"resources": {"cpu": -1}}, index=1)
    document["history"][4]["created_at"] = "never"
    expect_error(cli, write(tmp_path, state_json(document)), 1, "history[4].created_at")


def test_an_expired_reservation_does_not_count_against_capacity(cli, tmp_path: Path):
    """Over-commit counts only what is still held at the import."""
    document = {
        "pools": {"p": {"total": {"cpu": 4}}},
        "tenants": {"t": {}, "u": {}},
        "reservations": {
            "a000000000000001": reservation(
                "a000000000000001", "t", "p", NOW - timedelta(hours=2), cpu=4, ttl=60
            ),
            "a000000000000002": reservation("a000000000000002", "u", "p", NOW, cpu=4),
        },
    }
    result = summary(cli, write(tmp_path, state_json(document)))
    assert result["statuses"] == {"active": 1, "expired": 1, "released": 0}
