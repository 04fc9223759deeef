"""README "Preemption": `reserve --request-id KEY`.

The same request under a key gets the same reservation, as it is now, and
creates nothing; a different one is refused (exit 4); the key lookup comes right
after the tenant and pool checks. Under concurrency, eight real processes held at
a start barrier and sending the same request at once create exactly one
reservation and all print its id — on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from forked import race, resgate_command
from harness import resgate
from helpers import Engine, Result, ok
from sqlalchemy import func, select

from resgate.clock import FixedClock
from resgate.engine import pools, release, replay, reservations, tenants
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.errors import Refused
from resgate.store.database import Tx, open_database, resolve_target
from resgate.store.models import Event, Reservation

pytestmark = pytest.mark.usefixtures("backend")

KEY = "build-2026-11-24/job#17"
BASE = [
    "reserve",
    "--tenant",
    "t",
    "--pool",
    "p",
    "--cpu",
    "2",
    "--memory",
    "256",
    "--ttl",
    "10m",
    "--request-id",
    KEY,
]


def counts(cli: Callable[..., Result]) -> tuple[int, int]:
    """(reservations of every status, audit events)."""
    reservations_ = json.loads(ok(cli, "list", "--all", "--json").stdout)
    events = json.loads(ok(cli, "audit", "log", "--json").stdout)
    return len(reservations_), len(events)


@pytest.fixture
def setup(cli: Callable[..., Result], backend: str) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8", "--memory", "1024", "--gpu", "2")
    ok(cli, "pool", "create", "--name", "q", "--cpu", "8", "--memory", "1024")
    ok(cli, "tenant", "add", "--name", "t", "--priority", "5")
    ok(cli, "tenant", "add", "--name", "u", "--priority", "5")
    ok(cli, "tenant", "add", "--name", "low", "--priority", "1")


@pytest.mark.usefixtures("setup")
def test_same_request_twice_gets_the_same_reservation(cli: Callable[..., Result]) -> None:
    first = json.loads(ok(cli, *BASE, "--json").stdout)
    assert first["request_id"] == KEY and first["status"] == "active"
    after_first = counts(cli)
    assert after_first[0] == 1
    for _ in range(2):
        again = json.loads(ok(cli, *BASE, "--json").stdout)
        assert again == first
    # Same request spelled differently (TTL 600 s = 10m, options reordered).
    respelled = [
        "reserve",
        "--request-id",
        KEY,
        "--ttl",
        "600",
        "--memory",
        "256",
        "--pool",
        "p",
        "--cpu",
        "2",
        "--tenant",
        "t",
        "--json",
    ]
    assert json.loads(ok(cli, *respelled).stdout) == first
    text = ok(cli, *BASE)
    assert text.stdout.startswith(f"Reservation created: {first['id']}\n")
    assert counts(cli) == after_first, "a replay created a reservation or an event"


@pytest.mark.usefixtures("setup")
def test_a_different_request_under_the_key_is_refused(cli: Callable[..., Result]) -> None:
    first = json.loads(ok(cli, *BASE, "--json").stdout)
    before = counts(cli)
    variants = {
        "tenant": ["--tenant", "u"],
        "pool": ["--pool", "q"],
        "cpu": ["--cpu", "3"],
        "memory": ["--memory", "512"],
        "gpu": ["--gpu", "1"],
        "ttl": ["--ttl", "11m"],
        "no ttl": ["--ttl", "0"],
        "preempt": ["--preempt"],
    }
    for name, change in variants.items():
        args = [*BASE, *change]
        for as_json in (False, True):
            result = cli(*args, *(["--json"] if as_json else []))
            assert result.code == 4, (name, result)
            assert result.stdout == ""
            assert result.stderr == (
                f"Error: request id '{KEY}' was already used for a different request "
                f"(reservation '{first['id']}')\n"
            ), name
    assert counts(cli) == before
    # The original request still replays.
    assert json.loads(ok(cli, *BASE, "--json").stdout) == first


@pytest.mark.usefixtures("setup")
def test_preempt_is_part_of_the_request(cli: Callable[..., Result]) -> None:
    ok(cli, "tenant", "update", "--name", "t", "--priority", "8")
    victim = json.loads(
        ok(cli, "reserve", "--tenant", "low", "--pool", "p", "--cpu", "7", "--json").stdout
    )
    args = [*BASE, "--preempt", "--json"]
    first = json.loads(ok(cli, *args).stdout)
    assert [v["id"] for v in first["preempted"]] == [victim["id"]]
    before = counts(cli)
    # Replayed with its victims, as they are now.
    assert json.loads(ok(cli, *args).stdout) == first
    text = ok(cli, *BASE, "--preempt").stdout
    assert f"  {victim['id']}  tenant=low (priority 1)" in text
    # Without --preempt it is another request.
    refused = cli(*BASE)
    assert refused.code == 4 and "different request" in refused.stderr
    assert counts(cli) == before
    # And the other way round: a key first used without --preempt.
    plain = [*BASE[:-1], "other-key"]
    made = json.loads(ok(cli, *[a if a != "p" else "q" for a in plain], "--json").stdout)
    again = cli(*[a if a != "p" else "q" for a in plain], "--preempt")
    assert again.code == 4 and made["id"] in again.stderr


@pytest.mark.usefixtures("setup")
def test_replay_prints_the_reservation_as_it_is_now(cli: Callable[..., Result]) -> None:
    first = json.loads(ok(cli, *BASE, "--json").stdout)
    ok(cli, "extend", "--id", first["id"], "--ttl", "1h")
    # The retry repeats the original request (--ttl 10m) and sees the extended one.
    extended = json.loads(ok(cli, *BASE, "--json").stdout)
    assert extended["id"] == first["id"] and extended["ttl"] == 3600
    assert extended["expires_at"] != first["expires_at"]
    # The reservation's TTL now is not what was asked: another request.
    assert cli(*BASE[:-4], "--ttl", "1h", "--request-id", KEY).code == 4
    ok(cli, "unreserve", "--id", first["id"])
    before = counts(cli)
    replay = ok(cli, *BASE, "--json")
    shown = json.loads(replay.stdout)
    assert (shown["id"], shown["status"]) == (first["id"], "released")
    assert shown["ended_at"] is not None
    text = ok(cli, *BASE).stdout
    assert text.startswith(f"Reservation created: {first['id']}\n")
    assert "  Status:   released\n" in text
    # Nothing new: the tenant holds nothing now, and a replay does not change that.
    assert counts(cli) == before
    assert json.loads(ok(cli, "list", "--json").stdout) == []


@pytest.mark.usefixtures("setup")
def test_a_replay_later_shows_the_time_left_as_list_does(
    cli: Callable[..., Result], frozen: FixedClock
) -> None:
    first = ok(cli, *BASE).stdout
    assert "(in 10m0s)" in first
    frozen.advance(300)
    replay = ok(cli, *BASE).stdout
    assert "(in 5m0s)" in replay and "(in 10m0s)" not in replay
    assert "5m0s" in ok(cli, "list").stdout
    # Only the "in …" part moves: the reservation and its expiry are the same.
    assert replay.replace("(in 5m0s)", "(in 10m0s)") == first


@pytest.mark.usefixtures("setup")
def test_the_key_is_checked_right_after_tenant_and_pool(cli: Callable[..., Result]) -> None:
    first = json.loads(ok(cli, *BASE, "--json").stdout)
    # The pool is now full and t already holds a reservation in it: a fresh request
    # would exit 3 or 4, the replay does not.
    ok(cli, "reserve", "--tenant", "u", "--pool", "p", "--cpu", "6")
    fresh = cli(*BASE[:-1], "another-key")
    assert fresh.code == 4 and "already has active reservation" in fresh.stderr
    assert json.loads(ok(cli, *BASE, "--json").stdout)["id"] == first["id"]
    # Unknown tenant or pool come first.
    for change, message in (
        (["--tenant", "nobody"], "tenant 'nobody' not found (see: resgate tenant list)"),
        (["--pool", "nowhere"], "pool 'nowhere' not found (see: resgate pool list)"),
    ):
        result = cli(*BASE, *change)
        assert (result.code, result.stderr) == (1, f"Error: {message}\n")
    # A dry run replays as well, and with a new key creates nothing.
    before = counts(cli)
    dry = json.loads(ok(cli, *BASE, "--json", "--dry-run").stdout)
    assert dry.pop("dry_run") is True and dry["id"] == first["id"]
    ok(
        cli,
        "reserve",
        "--tenant",
        "u",
        "--pool",
        "q",
        "--cpu",
        "1",
        "--request-id",
        "new",
        "--dry-run",
    )
    assert counts(cli) == before
    result = ok(
        cli,
        "reserve",
        "--tenant",
        "u",
        "--pool",
        "q",
        "--cpu",
        "1",
        "--request-id",
        "new",
        "--json",
    )
    assert json.loads(result.stdout)["request_id"] == "new"


@pytest.mark.usefixtures("setup")
def test_request_id_shape(cli: Callable[..., Result]) -> None:
    for bad in ("", "x" * 129, "tab\there", "é", "line\nbreak"):
        result = cli(*BASE[:-1], bad)
        assert (result.code, result.stdout) == (2, ""), repr(bad)
        assert result.stderr == "Error: invalid --request-id: 1-128 printable ASCII characters\n"
    longest = "~" * 128
    made = json.loads(ok(cli, *BASE[:-1], longest, "--json").stdout)
    assert made["request_id"] == longest
    assert json.loads(ok(cli, *BASE[:-1], " ", "--json", "--pool", "q").stdout)["request_id"] == " "
    assert counts(cli)[0] == 2


def test_a_concurrent_twin_is_resolved_by_the_unique_index(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique index is the last line of defence: when both replay checks missed
    the twin (as a concurrent one could), the insert's unique violation returns it."""
    engine.write(pools.create_pool, "p", Amounts(8, 0, 0))
    engine.write(tenants.add_tenant, "t", 5)
    request = ReserveRequest("t", "p", Amounts(1, 0, 0), None, "K")
    twin = engine.write(reservations.reserve, request)
    engine.write(release.unreserve, twin.id)  # so only the key collides
    real = replay.replay
    calls: list[int] = []

    def blind(tx: Tx, *args: Any) -> Any:
        calls.append(1)
        return None if len(calls) <= 2 else real(tx, *args)

    monkeypatch.setattr(replay, "replay", blind)

    def rows(tx: Tx) -> tuple[int, int]:
        return (
            int(tx.session.scalar(select(func.count()).select_from(Reservation)) or 0),
            int(tx.session.scalar(select(func.count()).select_from(Event)) or 0),
        )

    before = engine.read(rows)
    again = engine.write(reservations.reserve, request)
    assert len(calls) == 3
    assert (again.id, again.status) == (twin.id, "released")
    assert engine.read(rows) == before

    calls.clear()
    with pytest.raises(Refused, match="different request"):
        engine.write(reservations.reserve, ReserveRequest("t", "p", Amounts(2, 0, 0), None, "K"))
    assert engine.read(rows) == before


# ---------------------------------------------------------------- real processes


N = 8


@pytest.fixture
def db(backend: str, tmp_path: Path) -> Iterator[str]:
    yield os.environ["RESGATE_DB"] if backend == "postgresql" else str(tmp_path / "idem.db")


def _prepare(db: str) -> None:
    database = open_database(resolve_target(db), write=True)
    try:
        database.run(lambda tx: pools.create_pool(tx, "p", Amounts(8, 0, 0)), write=True)
        for name in ("t", "u"):
            database.run(lambda tx, n=name: tenants.add_tenant(tx, n, 5), write=True)
    finally:
        database.dispose()


def _race(tmp_path: Path, db: str, commands: list[list[str]]) -> list[Any]:
    """Real processes (forked from this one, so they start fast), held at a start
    barrier, each running one `resgate` command through its entry point."""
    return race(tmp_path / "barrier", [resgate_command("--db", db, *c) for c in commands])


def _all(db: str) -> list[dict[str, Any]]:
    listed = resgate(db, "list", "--all", "--json")
    assert listed.code == 0, listed.stderr
    return list(json.loads(listed.stdout))


def _creates(db: str) -> list[dict[str, Any]]:
    logged = resgate(db, "audit", "log", "--action", "reservation.create", "--json")
    assert logged.code == 0, logged.stderr
    return list(json.loads(logged.stdout))


@pytest.mark.slow
def test_eight_processes_same_key_one_reservation(tmp_path: Path, db: str) -> None:
    _prepare(db)
    command = [
        "reserve",
        "--tenant",
        "t",
        "--pool",
        "p",
        "--cpu",
        "1",
        "--request-id",
        "K",
        "--json",
    ]
    results = _race(tmp_path, db, [command] * N)
    assert [r.code for r in results] == [0] * N, [(r.code, r.stderr) for r in results]
    assert all(r.stderr == "" for r in results)
    printed = [json.loads(r.stdout) for r in results]
    ids = {p["id"] for p in printed}
    assert len(ids) == 1, ids
    assert all(p["request_id"] == "K" and p["status"] == "active" for p in printed)
    rows = _all(db)
    assert [(r["id"], r["tenant"], r["cpu"]) for r in rows] == [(ids.pop(), "t", 1)]
    assert [e["subject"] for e in _creates(db)] == [rows[0]["id"]]
    check = resgate(db, "db", "check")
    assert check.code == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_eight_processes_two_requests_one_key(tmp_path: Path, db: str) -> None:
    """Four send request A, four request B (another tenant) under one key: one
    reservation; the winner's side all print it, the other side exit 4."""
    _prepare(db)
    a = ["reserve", "--tenant", "t", "--pool", "p", "--cpu", "1", "--request-id", "K", "--json"]
    b = ["reserve", "--tenant", "u", "--pool", "p", "--cpu", "1", "--request-id", "K", "--json"]
    commands = [a, b] * (N // 2)
    results = _race(tmp_path, db, commands)
    rows = _all(db)
    assert len(rows) == 1, rows
    (winner,) = rows
    for command, result in zip(commands, results, strict=True):
        if command[2] == winner["tenant"]:
            assert result.code == 0, result.stderr
            assert json.loads(result.stdout)["id"] == winner["id"]
        else:
            assert (result.code, result.stdout) == (4, ""), result
            assert result.stderr == (
                f"Error: request id 'K' was already used for a different request "
                f"(reservation '{winner['id']}')\n"
            )
    assert [e["subject"] for e in _creates(db)] == [winner["id"]]
