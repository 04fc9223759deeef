"""README "Using it": the export report (JSON and CSV), --since, --output written
atomically, and spreadsheet formulas neutralised."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import ok, out, reserve_id

from resgate.render import data

pytestmark = pytest.mark.sqlite_only

CSV_HEADER = (
    "id,tenant,pool,cpu,memory,gpu,ttl,status,created_at,expires_at,ended_at,preempted_by,"
    "gpu_ids,"  # README "GPU devices"
    "starts_at,ends_at,preempt_at,created_by"  # README "Booking ahead"
)


@pytest.fixture
def utc_minus_3(monkeypatch: pytest.MonkeyPatch):
    """Local time is UTC-3 (no daylight saving), so local and UTC differ."""
    monkeypatch.setenv("TZ", "Etc/GMT+3")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def history(cli, frozen) -> dict[str, str]:
    """r1 created 12:00Z, released 12:10Z; r2 created 13:00Z with a 30 min TTL,
    past due at 13:30Z and never swept; r3 created 15:00Z, active; r4 created
    15:00Z, preempted 15:00Z. Now: 16:00Z."""
    out(cli, "pool", "create", "--name", "p", "--cpu", "8", "--memory", "1024", "--gpu", "2")
    out(cli, "pool", "create", "--name", "gone", "--cpu", "8")
    out(cli, "tenant", "add", "--name", "alice", "--priority", "8")
    out(cli, "tenant", "add", "--name", "bob", "--priority", "3")
    ids = {"r1": reserve_id(cli, "bob", "p", cpu=2)}
    frozen.advance(600)
    out(cli, "unreserve", "--id", ids["r1"])
    frozen.advance(3000)  # 13:00
    ids["r2"] = reserve_id(cli, "bob", "p", memory=512, ttl="30m")
    frozen.advance(7200)  # 15:00: r2 is past due, and nothing has swept it
    ids["r3"] = reserve_id(cli, "alice", "p", cpu=4, gpu=1)
    ids["r4"] = reserve_id(cli, "bob", "gone", cpu=1)
    out(cli, "preempt", "--tenant", "alice", "--target", "bob", "--pool", "gone")
    out(cli, "pool", "delete", "--name", "gone")
    frozen.advance(3600)  # 16:00
    return ids


def report(cli, *args: str) -> dict:
    return json.loads(out(cli, "export", *args))


def test_json_report(cli, history):
    doc = report(cli)
    assert set(doc) >= {"generated_at", "pools", "tenants", "reservations", "history"}
    assert doc["generated_at"] == "2026-11-24T16:00:00.000000Z"
    assert [p["name"] for p in doc["pools"]] == ["p"]  # the deleted pool is gone
    assert doc["pools"][0]["reserved"] == {"cpu": 4, "memory": 0, "gpu": 1}
    assert {"name", "total", "reserved", "available", "utilization", "health", "created_at"} <= set(
        doc["pools"][0]
    )
    assert [t["name"] for t in doc["tenants"]] == ["alice", "bob"]
    assert [r["id"] for r in doc["reservations"]] == [history["r3"]]  # effective-active
    assert [r["id"] for r in doc["history"]] == [history[k] for k in ("r1", "r2", "r3", "r4")]
    by_id = {r["id"]: r for r in doc["history"]}
    r1, r2, r3, r4 = (by_id[history[k]] for k in ("r1", "r2", "r3", "r4"))
    assert (r1["status"], r1["ended_at"]) == ("released", "2026-11-24T12:10:00.000000Z")
    # Past due but never swept: expired, ended when it expired.
    assert r2["status"] == "expired"
    assert r2["ended_at"] == r2["expires_at"] == "2026-11-24T13:30:00.000000Z"
    assert (r2["ttl"], r2["memory"]) == (1800, 512)
    assert (r3["status"], r3["ended_at"], r3["expires_at"]) == ("active", None, None)
    assert (r4["status"], r4["preempted_by"], r4["pool"]) == ("preempted", "alice", "gone")
    for row in doc["history"]:
        assert {
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
        } <= set(row)
    assert report(cli, "--format", "json") == doc


def test_empty_report(cli, frozen):
    doc = report(cli)
    assert (doc["pools"], doc["tenants"], doc["reservations"], doc["history"]) == ([], [], [], [])
    assert out(cli, "export", "--format", "csv") == CSV_HEADER + "\n"


def test_csv_report(cli, history):
    text = out(cli, "export", "--format", "csv")
    lines = text.splitlines()
    assert lines[0] == CSV_HEADER
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in rows] == [history[k] for k in ("r1", "r2", "r3", "r4")]
    r1, r2, r3, r4 = rows
    assert r1 == {
        "id": history["r1"],
        "tenant": "bob",
        "pool": "p",
        "cpu": "2",
        "memory": "0",
        "gpu": "0",
        "ttl": "",
        "status": "released",
        "created_at": "2026-11-24T12:00:00.000000Z",
        "expires_at": "",
        "ended_at": "2026-11-24T12:10:00.000000Z",
        "preempted_by": "",
        "gpu_ids": "",
        "starts_at": "2026-11-24T12:00:00.000000Z",
        "ends_at": "",
        "preempt_at": "",
        "created_by": r1["created_by"],
    }
    assert (r2["status"], r2["ttl"], r2["ended_at"]) == (
        "expired",
        "1800",
        "2026-11-24T13:30:00.000000Z",
    )
    assert r3["status"] == "active" and r3["ended_at"] == ""
    assert (r4["status"], r4["preempted_by"]) == ("preempted", "alice")


SINCE_CASES = [
    ("2026-11-24T12:10:00Z", ["r1", "r2", "r3", "r4"]),  # r1 ended exactly then
    ("2026-11-24T12:10:00.000001Z", ["r2", "r3", "r4"]),
    ("2026-11-24T13:30:00Z", ["r2", "r3", "r4"]),  # r2's unswept expiry counts as its end
    ("2026-11-24T13:30:00.5z", ["r3", "r4"]),
    ("2026-11-24T13:30:01+00:00", ["r3", "r4"]),
    ("2026-11-24T10:30:00-03:00", ["r2", "r3", "r4"]),  # = 13:30Z
    ("2026-11-24T14:30:00+01:00", ["r2", "r3", "r4"]),  # = 13:30Z
    ("2026-11-24T10:30:00", ["r2", "r3", "r4"]),  # local (UTC-3) = 13:30Z
    ("2026-11-24 10:30:01", ["r3", "r4"]),
    ("2026-11-24", ["r1", "r2", "r3", "r4"]),  # local midnight = 03:00Z
    ("2026-11-25", []),  # local midnight = 2026-11-25T03:00Z
    ("2026-11-24T16:00:00Z", []),
    ("1h", ["r3", "r4"]),  # since 15:00Z
    ("2h30m", ["r2", "r3", "r4"]),  # since 13:30Z
    ("3h", ["r2", "r3", "r4"]),  # since 13:00Z: r2 created then
    ("3h50m", ["r1", "r2", "r3", "r4"]),  # since 12:10Z
    ("1d", ["r1", "r2", "r3", "r4"]),
    ("0s", []),
]


def test_since(cli, history, utc_minus_3):
    for since, expected in SINCE_CASES:
        doc = report(cli, "--since", since)
        assert [r["id"] for r in doc["history"]] == [history[k] for k in expected], since
        # --since limits the history only.
        assert [p["name"] for p in doc["pools"]] == ["p"]
        assert [r["id"] for r in doc["reservations"]] == [history["r3"]]
        text = out(cli, "export", "--format", "csv", "--since", since)
        assert [line.split(",")[0] for line in text.splitlines()[1:]] == [
            history[k] for k in expected
        ], since


def test_output_is_written_atomically(cli, history, tmp_path: Path):
    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    target = out_dir / "report.json"
    target.write_text("old contents")
    stdout = out(cli, "export", "--output", str(target))
    size = target.stat().st_size
    assert stdout == f"Report exported to {target} ({size} bytes)\n"
    assert json.loads(target.read_text())["history"][0]["id"] == history["r1"]
    assert sorted(os.listdir(out_dir)) == ["report.json"]  # no temporary file left
    csv_target = out_dir / "report.csv"
    stdout = out(cli, "export", "--format", "csv", "--output", str(csv_target))
    assert stdout == f"Report exported to {csv_target} ({csv_target.stat().st_size} bytes)\n"
    assert csv_target.read_text().splitlines()[0] == CSV_HEADER
    assert len(csv_target.read_bytes()) == csv_target.stat().st_size
    assert sorted(os.listdir(out_dir)) == ["report.csv", "report.json"]


def test_output_relative_path_is_printed_as_given(
    cli, history, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    stdout = out(cli, "export", "--output", "r.json")
    assert stdout == f"Report exported to r.json ({(tmp_path / 'r.json').stat().st_size} bytes)\n"


def test_output_into_a_missing_directory(cli, history, tmp_path: Path):
    target = tmp_path / "missing" / "report.json"
    result = cli("export", "--output", str(target))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"Error: cannot write {target}: No such file or directory\n"
    assert not target.parent.exists()


def test_output_onto_a_directory_leaves_nothing(cli, history, tmp_path: Path):
    target = tmp_path / "adir"
    target.mkdir()
    before = sorted(os.listdir(tmp_path))
    result = cli("export", "--output", str(target))
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith(f"Error: cannot write {target}: ")
    assert result.stderr.count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(target) == []


def test_output_when_the_database_is_unusable_leaves_nothing(cli, tmp_path: Path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cli("--db", str(bad), "export", "--output", str(out_dir / "r.json"))
    assert result.code == 1 and result.stderr.startswith("Error: not a resgate database")
    assert os.listdir(out_dir) == []


def test_unsupported_format(cli, history, tmp_path: Path):
    target = tmp_path / "r.xml"
    for fmt in ("xml", "cvs", ""):
        result = cli("export", "--format", fmt, "--output", str(target))
        assert (result.code, result.stdout) == (2, "")
        assert result.stderr == f"Error: unsupported export format: {fmt!r} (choose json or csv)\n"
    assert not target.exists()


def test_the_format_in_any_case_or_from_the_output_name(cli, history, tmp_path: Path):
    ok(cli, "export", "--format", "CSV", "--output", str(tmp_path / "a"))
    assert (tmp_path / "a").read_text().startswith("id,tenant,pool,")
    ok(cli, "export", "--output", str(tmp_path / "b.CSV"))
    assert (tmp_path / "b.CSV").read_text().startswith("id,tenant,pool,")
    ok(cli, "export", "--output", str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text())["pools"]
    ok(cli, "export", "--output", str(tmp_path / "d.txt"))  # no telling suffix: json
    assert json.loads((tmp_path / "d.txt").read_text())["pools"]
    ok(cli, "export", "--format", "json", "--output", str(tmp_path / "e.csv"))  # --format wins
    assert json.loads((tmp_path / "e.csv").read_text())["pools"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (5, "5"),
    ],
)
def test_formula_cells_are_neutralised(value, expected):
    assert data._cell(value) == expected


def test_formula_in_a_stored_value_is_neutralised_in_csv(cli, history, db_path: Path):
    # No resgate name can start with = + - @, but the file is open to sqlite3 users.
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "UPDATE tenants SET name = '=HYPERLINK(\"http://x\")' WHERE name = 'alice'"
        )
        connection.execute("UPDATE pools SET name = '@SUM(1)' WHERE name = 'p'")
    connection.close()
    rows = list(csv.reader(io.StringIO(out(cli, "export", "--format", "csv"))))
    assert rows[3][0] == history["r3"]
    assert rows[3][1:3] == ['\'=HYPERLINK("http://x")', "'@SUM(1)"]
    # JSON carries the values as they are.
    assert report(cli)["history"][2]["tenant"] == '=HYPERLINK("http://x")'
