"""README "The audit log": the tamper-evident audit trail.

Every mutating path writes its events in the same transaction as its change
(failures and dry runs leave none); the hash chain is recomputed here, in a few
lines, independently of resgate; each kind of tampering with `sqlite3` is found
by `audit verify` at exactly the first bad seq; `audit log` filters; export
carries the head and `--since-seq` follows a cursor; and the chain stays linear
under concurrent writers on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import pwd
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from forked import engine_worker, race
from harness import resgate
from helpers import Engine, Result, ok, reserve, run_cli
from ledger import read_ledger
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from resgate.clock import iso
from resgate.engine import audit, evictions, extension, pools, release, reservations, sweep, tenants
from resgate.engine.records import Amounts, Limits
from resgate.engine.reservations import ReserveRequest
from resgate.errors import Refused
from resgate.render.data import event as event_dict
from resgate.store.database import Tx, open_database, resolve_target
from resgate.store.models import Event, Reservation

GENESIS = "0" * 64
COLUMNS = {"seq", "at", "actor", "action", "subject", "data", "prev_hash", "hash"}
AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


# ---------------------------------------------------------------- helpers


def recompute(event: dict[str, Any]) -> str:
    """README "The audit log", written out here rather than calling resgate."""
    body = {k: event[k] for k in ("seq", "at", "actor", "action", "subject", "data", "prev_hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_chain(events: list[dict[str, Any]]) -> None:
    """Seqs contiguous from 1, first prev_hash 64 zeros, every hash recomputable,
    every prev_hash the hash before it (so no two share a prev_hash)."""
    prev = GENESIS
    for number, event in enumerate(events, start=1):
        assert event["seq"] == number, event
        assert event["prev_hash"] == prev, event
        assert AT.fullmatch(event["at"]), event
        assert isinstance(event["data"], dict), event
        assert recompute(event) == event["hash"], event
        prev = event["hash"]
    assert len({e["prev_hash"] for e in events}) == len(events)


def log(cli: Callable[..., Result], *args: str) -> list[dict[str, Any]]:
    return list(json.loads(ok(cli, "audit", "log", "--json", *args).stdout))


def verdict(cli: Callable[..., Result], *args: str) -> tuple[int, dict[str, Any]]:
    result = cli("audit", "verify", "--json", *args)
    return result.code, json.loads(result.stdout)


class Recorder:
    """Runs commands and returns the events each one added."""

    def __init__(self, cli: Callable[..., Result]) -> None:
        self.cli = cli
        self.seen = 0

    def __call__(self, *args: str) -> list[dict[str, Any]]:
        ok(self.cli, *args)
        return self.new()

    def json(self, *args: str) -> tuple[Any, list[dict[str, Any]]]:
        printed = json.loads(ok(self.cli, *args, "--json").stdout)
        return printed, self.new()

    def new(self) -> list[dict[str, Any]]:
        events = log(self.cli, "--since-seq", str(self.seen))
        if events:
            self.seen = events[-1]["seq"]
        return events


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["action"], e["subject"]) for e in events]


def db_file() -> str:
    return os.environ["RESGATE_DB"]


def tamper(*statements: str) -> None:
    connection = sqlite3.connect(db_file(), isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


def rows(query: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db_file())
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# ---------------------------------------------------------------- every mutating path


def test_every_command_logs_its_events(cli: Callable[..., Result]) -> None:
    run = Recorder(cli)
    assert brief(
        run("pool", "create", "--name", "p", "--cpu", "8", "--memory", "1024", "--gpu", "2")
    ) == [("pool.create", "p")]
    assert run.new() == []
    (created,) = log(cli)
    assert created["data"] == {"cpu": 8, "memory": 1024, "gpu": 2}
    run("pool", "create", "--name", "q", "--cpu", "4")
    (added,) = run("tenant", "add", "--name", "lo", "--priority", "2")
    assert (added["action"], added["subject"], added["data"]["priority"]) == ("tenant.add", "lo", 2)
    run("tenant", "add", "--name", "hi", "--priority", "8")
    run("tenant", "add", "--name", "mid")
    (updated,) = run("tenant", "update", "--name", "mid", "--priority", "4", "--max-cpu", "6")
    assert (updated["action"], updated["subject"]) == ("tenant.update", "mid")
    assert updated["data"]["old"]["priority"] == 5 and updated["data"]["new"]["priority"] == 4

    # reserve, extend, unreserve: one event each, at the moment of the change
    r1, (create,) = run.json(
        "reserve", "--tenant", "lo", "--pool", "p", "--cpu", "2", "--ttl", "1h"
    )
    assert (create["action"], create["subject"]) == ("reservation.create", r1["id"])
    assert {k: create["data"][k] for k in ("tenant", "pool", "cpu", "memory", "gpu", "ttl")} == {
        "tenant": "lo",
        "pool": "p",
        "cpu": 2,
        "memory": 0,
        "gpu": 0,
        "ttl": 3600,
    }
    assert create["at"] == r1["created_at"]
    assert (create["data"]["starts_at"], create["data"]["ends_at"]) == (
        r1["starts_at"],
        r1["ends_at"],
    )
    extended, (ext,) = run.json("extend", "--id", r1["id"], "--ttl", "2h")
    assert (ext["action"], ext["subject"]) == ("reservation.extend", r1["id"])
    assert ext["data"]["old"]["ttl"] == 3600 and ext["data"]["new"]["ttl"] == 7200
    assert ext["data"]["new"]["expires_at"] == extended["expires_at"]
    released, (rel,) = run.json("unreserve", "--id", r1["id"])
    assert brief([rel]) == [("reservation.release", r1["id"])]
    assert rel["at"] == released["ended_at"]

    # reserve --preempt: each victim a reservation.preempt naming the new one (`for`),
    # in the same transaction as the new reservation
    victim, _ = run.json("reserve", "--tenant", "lo", "--pool", "p", "--cpu", "6")
    result, events = run.json("reserve", "--tenant", "hi", "--pool", "p", "--cpu", "6", "--preempt")
    new_id = result["reservation"]["id"]
    assert sorted(brief(events)) == [
        ("reservation.create", new_id),
        ("reservation.preempt", victim["id"]),
    ]
    (preempted,) = [e for e in events if e["action"] == "reservation.preempt"]
    assert preempted["data"]["for"] == new_id
    assert preempted["data"]["by"] == "hi"
    assert {e["at"] for e in events} == {
        result["preempted"][0]["ended_at"],
        result["reservation"]["created_at"],
    }
    assert len({e["at"] for e in events}) == 1

    # preempt: one event per victim, no `for`
    a, _ = run.json("reserve", "--tenant", "lo", "--pool", "q", "--cpu", "1")
    _, events = run.json("preempt", "--tenant", "hi", "--target", "lo")
    assert brief(events) == [("reservation.preempt", a["id"])]
    assert events[0]["data"]["by"] == "hi" and "for" not in events[0]["data"]

    (resize,) = run("pool", "resize", "--name", "p", "--cpu", "10")
    assert brief([resize]) == [("pool.resize", "p")]
    assert resize["data"]["old"]["cpu"] == 8 and resize["data"]["new"]["cpu"] == 10

    # pool delete --force: the forced releases, then the delete, in one transaction
    m, _ = run.json("reserve", "--tenant", "mid", "--pool", "q", "--cpu", "1")
    events = run("pool", "delete", "--name", "q", "--force")
    assert brief(events) == [("reservation.release", m["id"]), ("pool.delete", "q")]
    assert events[1]["data"]["released"] == [m["id"]] and events[1]["data"]["force"] is True
    assert len({e["at"] for e in events}) == 1

    # tenant remove --force: likewise
    m2, _ = run.json("reserve", "--tenant", "mid", "--pool", "p", "--cpu", "1")
    events = run("tenant", "remove", "--name", "mid", "--force")
    assert brief(events) == [("reservation.release", m2["id"]), ("tenant.remove", "mid")]
    assert events[1]["data"]["released"] == [m2["id"]]
    assert len({e["at"] for e in events}) == 1

    # reads write nothing
    for command in (
        ["list", "--all"],
        ["status"],
        ["pool", "list"],
        ["tenant", "list"],
        ["export"],
        ["audit", "verify"],
        ["sweep"],
    ):
        ok(cli, *command)
    assert run.new() == []

    everything = log(cli)
    check_chain(everything)
    code, result = verdict(cli)
    assert (code, result["ok"], result["events"]) == (0, True, len(everything))
    # The raw rows: `data` is a JSON object as text, never null, `{}` when empty.
    stored = rows("SELECT seq, data FROM events ORDER BY seq")
    assert all(
        json.loads(text) == e["data"] for (_, text), e in zip(stored, everything, strict=True)
    )
    assert dict(stored)[rel["seq"]] == "{}"


@pytest.mark.usefixtures("backend")
def test_sweep_logs_every_expiry_in_one_insert(engine: Engine) -> None:
    engine.write(pools.create_pool, "p", Amounts(64, 0, 0))
    names = [f"t{i}" for i in range(12)]
    ids = []
    for name in names:
        engine.write(tenants.add_tenant, name, 5)
        ids.append(reserve(engine, name, "p", cpu=1, ttl=10).reservation.id)
    engine.clock.advance(11)
    inserts: list[tuple[str, bool]] = []

    def count(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO EVENTS"):
            inserts.append((statement, executemany))

    sa_event.listen(engine.database.engine, "before_cursor_execute", count)
    try:
        expired = engine.write(sweep.sweep)
    finally:
        sa_event.remove(engine.database.engine, "before_cursor_execute", count)
    assert sorted(expired) == sorted(ids)
    assert len(inserts) == 1 and inserts[0][1] is True
    events = engine.read(lambda tx: [event_dict(e) for e in audit.log(tx)])
    expiries = [e for e in events if e["action"] == "reservation.expire"]
    assert sorted(e["subject"] for e in expiries) == sorted(ids)
    assert {e["at"] for e in expiries} == {iso(engine.clock.now())}
    assert [e["seq"] for e in expiries] == list(
        range(expiries[0]["seq"], expiries[0]["seq"] + len(ids))
    )
    check_chain(events)
    # Nothing due: no event at all.
    assert engine.write(sweep.sweep) == []
    assert engine.read(audit.head)[0] == events[-1]["seq"]


# ---------------------------------------------------------------- same transaction


def _setup(engine: Engine) -> dict[str, str]:
    engine.write(pools.create_pool, "p", Amounts(8, 1024, 0))
    engine.write(pools.create_pool, "q", Amounts(8, 1024, 0))
    engine.write(tenants.add_tenant, "lo", 2)
    engine.write(tenants.add_tenant, "hi", 8)
    a = reserve(engine, "lo", "p", cpu=6, ttl=60).reservation.id
    b = reserve(engine, "lo", "q", cpu=1).reservation.id
    return {"a": a, "b": b}


OPERATIONS: dict[str, Callable[[Tx, dict[str, str]], object]] = {
    "pool.create": lambda tx, ids: pools.create_pool(tx, "r", Amounts(1, 0, 0)),
    "pool.resize": lambda tx, ids: pools.resize_pool(tx, "p", 16, None, None, None),
    "pool.delete": lambda tx, ids: pools.delete_pool(tx, "q", True),
    "tenant.add": lambda tx, ids: tenants.add_tenant(tx, "new", 3),
    "tenant.update": lambda tx, ids: tenants.update_tenant(tx, "lo", 3, {"cpu": 4}),
    "tenant.remove": lambda tx, ids: tenants.remove_tenant(tx, "lo", True),
    "reserve": lambda tx, ids: reservations.reserve(
        tx, ReserveRequest("hi", "q", Amounts(1, 0, 0))
    ),
    "reserve --preempt": lambda tx, ids: reservations.reserve(
        tx, ReserveRequest("hi", "p", Amounts(4, 0, 0), preempt=True)
    ),
    "unreserve": lambda tx, ids: release.unreserve(tx, ids["a"]),
    "extend": lambda tx, ids: extension.extend(tx, ids["a"], 600),
    "preempt": lambda tx, ids: evictions.preempt(tx, "hi", "lo", None),
    "sweep": lambda tx, ids: sweep.sweep(tx),
}


def _snapshot(tx: Tx) -> tuple[int, list[tuple[Any, ...]]]:
    events = int(tx.session.scalar(select(func.count()).select_from(Event)) or 0)
    states = tx.session.execute(
        select(Reservation.id, Reservation.status, Reservation.expires_at).order_by(Reservation.id)
    ).all()
    return events, [tuple(row) for row in states]


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.usefixtures("backend")
def test_events_commit_and_roll_back_with_the_change(engine: Engine, operation: str) -> None:
    ids = _setup(engine)
    if operation == "sweep":
        engine.clock.advance(61)
    before = engine.read(_snapshot)
    seen: dict[str, Any] = {}

    def work(tx: Tx) -> None:
        OPERATIONS[operation](tx, ids)
        tx.session.flush()
        seen["inside"] = _snapshot(tx)

    # Rolled back (as a failure or a dry run would be): neither the change nor its events.
    engine.database.run(work, write=True, clock=engine.clock, commit=False)
    assert seen["inside"][0] > before[0], "the events are visible inside the transaction"
    assert engine.read(_snapshot) == before

    # A failure after the work: the same.
    def failing(tx: Tx) -> None:
        work(tx)
        raise Refused("boom")

    with pytest.raises(Refused):
        engine.database.run(failing, write=True, clock=engine.clock)
    assert engine.read(_snapshot) == before

    # Committed: both, exactly as seen inside.
    engine.database.run(work, write=True, clock=engine.clock)
    assert engine.read(_snapshot) == seen["inside"]
    assert engine.read(audit.verify).ok


def test_failing_commands_leave_no_event(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    ok(cli, "tenant", "add", "--name", "lo", "--priority", "2")
    ok(cli, "tenant", "add", "--name", "hi", "--priority", "8")
    victim = json.loads(
        ok(cli, "reserve", "--tenant", "lo", "--pool", "p", "--cpu", "3", "--json").stdout
    )
    head = log(cli)[-1]["seq"]
    failing = [
        (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "2"], 3),
        (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "9", "--preempt"], 3),
        (["reserve", "--tenant", "lo", "--pool", "p", "--cpu", "1"], 4),
        (["preempt", "--tenant", "lo", "--target", "hi"], 4),
        (["pool", "delete", "--name", "p"], 4),
        (["tenant", "remove", "--name", "lo"], 4),
        (["pool", "resize", "--name", "p", "--cpu", "2"], 4),
        (["pool", "create", "--name", "p", "--cpu", "1"], 4),
        (["tenant", "add", "--name", "lo"], 4),
        (["unreserve", "--id", "0123456789abcdef"], 1),
        (["extend", "--id", "0123456789abcdef", "--ttl", "5m"], 1),
        # dry runs that would succeed
        (["reserve", "--tenant", "hi", "--pool", "p", "--cpu", "2", "--preempt", "--dry-run"], 0),
        (["unreserve", "--id", victim["id"], "--dry-run"], 0),
        (["extend", "--id", victim["id"], "--ttl", "5m", "--dry-run"], 0),
        (["preempt", "--tenant", "hi", "--target", "lo", "--dry-run"], 0),
        (["pool", "resize", "--name", "p", "--cpu", "6", "--dry-run"], 0),
        (["pool", "delete", "--name", "p", "--force", "--dry-run"], 0),
        (["tenant", "remove", "--name", "lo", "--force", "--dry-run"], 0),
    ]
    for args, code in failing:
        result = cli(*args)
        assert result.code == code, (args, result)
        assert log(cli)[-1]["seq"] == head, args

    # A command that fails after it wrote its events (here: reserve --preempt, after
    # evicting and logging its victim and logging the new reservation) rolls them
    # back with everything else.
    recorded: list[str] = []
    real_record = audit.record

    def record_then_fail(tx: Tx, changes: Any) -> None:
        batch = list(changes)
        real_record(tx, batch)
        recorded.extend(change.action for change in batch)
        if any(change.action == "reservation.create" for change in batch):
            raise Refused("injected failure after the events were written")

    monkeypatch.setattr(audit, "record", record_then_fail)
    result = cli("reserve", "--tenant", "hi", "--pool", "p", "--cpu", "2", "--preempt")
    assert result.code == 4 and "injected failure" in result.stderr
    assert recorded == ["reservation.preempt", "reservation.create"]
    assert log(cli)[-1]["seq"] == head
    listed = json.loads(ok(cli, "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(victim["id"], "active")]
    assert verdict(cli)[0] == 0


# ---------------------------------------------------------------- actor


def test_actor_is_the_os_user_unless_resgate_actor(
    cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "4")
    monkeypatch.setenv("RESGATE_ACTOR", "zoë")  # not ASCII: ensure_ascii=False in the hash
    ok(cli, "tenant", "add", "--name", "a")
    monkeypatch.setenv("RESGATE_ACTOR", "")  # empty: not an actor
    ok(cli, "tenant", "add", "--name", "b")
    monkeypatch.delenv("RESGATE_ACTOR")
    events = log(cli)
    assert [e["actor"] for e in events] == [getpass.getuser(), "zoë", getpass.getuser()]
    check_chain(events)
    assert rows("SELECT actor FROM events WHERE seq = 2") == [("zoë",)]

    # A real process, as cron would run it.
    done = resgate(db_file(), "tenant", "add", "--name", "c")
    assert done.code == 0, done.stderr
    assert log(cli)[-1]["actor"] == getpass.getuser()

    # No user name for the uid: `uid:<n>`.
    def nobody() -> str:
        raise KeyError("getpwuid(): uid not found")

    def no_entry(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    audit._os_actor.cache_clear()
    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.setattr(getpass, "getuser", nobody)
    try:
        ok(cli, "tenant", "add", "--name", "d")
    finally:
        audit._os_actor.cache_clear()
    assert log(cli)[-1]["actor"] == f"uid:{os.getuid()}"
    check_chain(log(cli))


# ---------------------------------------------------------------- tampering


@pytest.fixture(scope="module")
def history_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """Eight events on SQLite, made once; each test gets a copy."""
    path = tmp_path_factory.mktemp("audit") / "history.db"

    def cli(*args: str) -> Result:
        return run_cli("--db", str(path), *args)

    ok(cli, "pool", "create", "--name", "p", "--cpu", "8")  # 1
    ok(cli, "tenant", "add", "--name", "a", "--priority", "2")  # 2
    ok(cli, "tenant", "add", "--name", "b", "--priority", "7")  # 3
    r = json.loads(
        ok(cli, "reserve", "--tenant", "a", "--pool", "p", "--cpu", "2", "--json").stdout
    )  # 4
    ok(cli, "extend", "--id", r["id"], "--ttl", "1h")  # 5
    ok(cli, "unreserve", "--id", r["id"])  # 6
    ok(cli, "pool", "resize", "--name", "p", "--cpu", "9")  # 7
    ok(cli, "tenant", "update", "--name", "b", "--priority", "6")  # 8
    events = log(cli)
    assert len(events) == 8
    check_chain(events)
    return path, events


@pytest.fixture
def history(history_template: tuple[Path, list[Any]]) -> list[dict[str, Any]]:
    path, events = history_template
    shutil.copy(path, db_file())
    return events


def _rehash_sql(event: dict[str, Any], **changes: Any) -> str:
    """An UPDATE that rewrites one event with changed fields and a correct hash of
    its own (what someone who knows the format can do)."""
    forged = {**event, **changes}
    forged["hash"] = recompute(forged)
    at = forged["at"].replace("T", " ").rstrip("Z")
    data = json.dumps(forged["data"], sort_keys=True, separators=(",", ":"))
    return (
        f"UPDATE events SET at='{at}', actor='{forged['actor']}', "
        f"action='{forged['action']}', subject='{forged['subject']}', data='{data}', "
        f"prev_hash='{forged['prev_hash']}', hash='{forged['hash']}' "
        f"WHERE seq={event['seq']}"
    )


def _swap_sql(x: int, y: int) -> list[str]:
    cols = "at, actor, action, subject, data, prev_hash, hash"
    return [
        f"CREATE TEMP TABLE swap AS SELECT seq, {cols} FROM events WHERE seq IN ({x}, {y})",
        *[
            f"UPDATE events SET ({cols}) = (SELECT {cols} FROM swap WHERE seq = {other}) "
            f"WHERE seq = {this}"
            for this, other in ((x, y), (y, x))
        ],
    ]


NO_UPDATE = "DROP TRIGGER events_no_update"
NO_DELETE = "DROP TRIGGER events_no_delete"

TAMPERING: dict[str, tuple[Callable[[list[dict[str, Any]]], list[str]], int, str]] = {
    "actor edited": (
        lambda ev: [NO_UPDATE, "UPDATE events SET actor='mallory' WHERE seq=3"],
        3,
        "altered",
    ),
    "data edited": (
        lambda ev: [
            NO_UPDATE,
            'UPDATE events SET data=\'{"cpu":2,"gpu":0,"memory":0,'
            '"pool":"p","tenant":"b","ttl":null}\' WHERE seq=4',
        ],
        4,
        "altered",
    ),
    "data not JSON": (
        lambda ev: [NO_UPDATE, "UPDATE events SET data='{oops' WHERE seq=5"],
        5,
        "altered",
    ),
    "time moved": (
        lambda ev: [NO_UPDATE, "UPDATE events SET at='2020-01-01 00:00:00.000000' WHERE seq=2"],
        2,
        "altered",
    ),
    "time not a time": (
        lambda ev: [NO_UPDATE, "UPDATE events SET at='garbage' WHERE seq=2"],
        2,
        "altered",
    ),
    "time a number": (lambda ev: [NO_UPDATE, "UPDATE events SET at=12 WHERE seq=6"], 6, "altered"),
    "action edited": (
        lambda ev: [NO_UPDATE, "UPDATE events SET action='reservation.expire' WHERE seq=6"],
        6,
        "altered",
    ),
    "hash edited": (
        lambda ev: [NO_UPDATE, f"UPDATE events SET hash='{'f' * 64}' WHERE seq=8"],
        8,
        "altered",
    ),
    "edited and rehashed": (
        lambda ev: [NO_UPDATE, _rehash_sql(ev[2], actor="mallory")],
        4,
        "out of chain",
    ),
    "middle deleted": (lambda ev: [NO_DELETE, "DELETE FROM events WHERE seq=3"], 3, "missing"),
    "first deleted": (lambda ev: [NO_DELETE, "DELETE FROM events WHERE seq=1"], 1, "missing"),
    "two swapped": (lambda ev: [NO_UPDATE, *_swap_sql(3, 6)], 3, "altered"),
    "neighbours swapped": (lambda ev: [NO_UPDATE, *_swap_sql(4, 5)], 4, "altered"),
    "swapped and rehashed": (
        lambda ev: [
            NO_UPDATE,
            _rehash_sql({**ev[4], "seq": 4}, seq=4),
            _rehash_sql({**ev[3], "seq": 5}, seq=5),
        ],
        4,
        "out of chain",
    ),
    "renumbered": (lambda ev: [NO_UPDATE, "UPDATE events SET seq=20 WHERE seq=5"], 5, "missing"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_is_detected_at_the_first_bad_seq(
    cli: Callable[..., Result], history: list[dict[str, Any]], case: str
) -> None:
    statements, seq, reason = TAMPERING[case]
    tamper(*statements(history))
    code, result = verdict(cli)
    assert code == 1, result
    assert result == {
        "ok": False,
        "events": seq - 1,
        "head_seq": seq - 1,
        # the last good event's hash, as it is stored now
        "head": rows(f"SELECT hash FROM events WHERE seq = {seq - 1}")[0][0]
        if seq > 1
        else GENESIS,
        "first_bad_seq": seq,
        "reason": reason,
    }
    text = cli("audit", "verify")
    assert (text.code, text.stdout, text.stderr) == (1, "", f"Error: seq {seq}: {reason}\n")


@pytest.mark.usefixtures("backend")
def test_the_database_refuses_update_and_delete(cli: Callable[..., Result], backend: str) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "a")
    statements = [
        "UPDATE events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 2",
        "DELETE FROM events",
    ]
    if backend == "sqlite":
        for statement in statements:
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                tamper(statement)
        names = {
            name
            for (name,) in rows(
                "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='events'"
            )
        }
        assert {"events_no_update", "events_no_delete"} <= names
    else:
        import psycopg

        url = db_file().replace("postgresql+psycopg://", "postgresql://")
        for statement in statements:
            with (
                psycopg.connect(url, autocommit=True) as connection,
                pytest.raises(psycopg.errors.RaiseException, match="append-only"),
            ):
                connection.execute(statement)
    events = log(cli)
    assert [e["actor"] for e in events] == [getpass.getuser()] * 2
    code, result = verdict(cli)
    assert (code, result["ok"], result["events"]) == (0, True, 2)


@pytest.mark.usefixtures("backend")
def test_the_database_refuses_a_second_event_at_a_seq(
    cli: Callable[..., Result], backend: str
) -> None:
    """A writer that read the same head as another (a fork in the making) gets the
    same seq, and the primary key refuses it; the next seq is accepted."""
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8")
    ok(cli, "tenant", "add", "--name", "a")
    first, last = log(cli)
    columns = "seq, at, actor, action, subject, data, prev_hash, hash"

    def event(seq: int, prev_hash: str) -> str:
        return (
            f"INSERT INTO events ({columns}) VALUES ({seq}, '2026-01-01 00:00:00', "
            f"'mallory', 'tenant.add', 'x', '{{}}', '{prev_hash}', '{'e' * 64}')"
        )

    twin = event(2, first["hash"])
    if backend == "sqlite":
        with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: events\.seq"):
            tamper(twin)
        tamper(event(3, last["hash"]))
    else:
        import psycopg

        url = db_file().replace("postgresql+psycopg://", "postgresql://")
        with (
            psycopg.connect(url, autocommit=True) as connection,
            pytest.raises(psycopg.errors.UniqueViolation),
        ):
            connection.execute(twin)
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(event(3, last["hash"]))
    assert [e["seq"] for e in log(cli)] == [1, 2, 3]
    # The hand-made event is in chain but its hash is made up: verify says so.
    code, result = verdict(cli)
    assert (code, result["first_bad_seq"], result["reason"]) == (1, 3, "altered")


def test_pinned_head_catches_a_cut_tail(
    cli: Callable[..., Result], history: list[dict[str, Any]]
) -> None:
    code, pinned = verdict(cli)
    assert (code, pinned["events"], pinned["head"]) == (0, 8, history[-1]["hash"])
    export = json.loads(ok(cli, "export").stdout)
    assert export["audit_head"] == {"seq": 8, "hash": pinned["head"]}
    pin = f"8:{pinned['head']}"

    # The log grows: the pin still holds.
    ok(cli, "tenant", "add", "--name", "c")
    ok(cli, "pool", "create", "--name", "q", "--cpu", "1")
    code, grown = verdict(cli, "--expect", pin)
    assert (code, grown["ok"], grown["events"]) == (0, True, 10)
    assert json.loads(ok(cli, "export").stdout)["audit_head"] == {"seq": 10, "hash": grown["head"]}
    text = ok(cli, "audit", "verify", "--expect", pin)
    assert text.stdout == f"ok: 10 events, head 10:{grown['head']}\n"  # ready to paste
    assert grown["head_seq"] == 10

    # Cut after the pin (events 9, 10 gone): the pin still holds (nothing it covers
    # changed), but the pin taken at 10 does not.
    tamper(NO_DELETE, "DELETE FROM events WHERE seq >= 9")
    assert verdict(cli, "--expect", pin)[0] == 0
    code, result = verdict(cli, "--expect", f"10:{grown['head']}")
    assert (code, result["first_bad_seq"], result["reason"]) == (1, 9, "missing")

    # Cut before the pin: the chain alone looks fine; the pin does not.
    tamper("DELETE FROM events WHERE seq >= 6")
    code, alone = verdict(cli)
    assert (code, alone["ok"], alone["events"]) == (0, True, 5)
    code, result = verdict(cli, "--expect", pin)
    assert (code, result) == (
        1,
        {
            "ok": False,
            "events": 5,
            "head_seq": 5,
            "head": history[4]["hash"],
            "first_bad_seq": 6,
            "reason": "missing",
        },
    )
    text = cli("audit", "verify", "--expect", pin)
    assert (text.code, text.stdout, text.stderr) == (1, "", "Error: seq 6: missing\n")

    # ... and writing new history over the cut does not fool it either.
    ok(cli, "tenant", "add", "--name", "d")
    ok(cli, "tenant", "add", "--name", "e")
    ok(cli, "tenant", "add", "--name", "f")
    ok(cli, "tenant", "add", "--name", "g")
    assert verdict(cli)[0] == 0
    code, result = verdict(cli, "--expect", pin)
    assert (code, result["first_bad_seq"], result["reason"]) == (1, 8, "head mismatch")
    text = cli("audit", "verify", "--expect", pin)
    found = next(e["hash"] for e in log(cli) if e["seq"] == 8)
    assert (text.code, text.stdout) == (1, "")
    assert text.stderr == (
        f"Error: the saved head 8:{pinned['head'][:4]}… does not match: seq 8 has hash "
        f"{found[:4]}… (the log was altered, or the saved head is wrong)\n"
    )


def test_expect_is_checked(cli: Callable[..., Result], history: list[dict[str, Any]]) -> None:
    for bad in ("8", "x:abc", f"0:{'a' * 64}", f"8:{'A' * 64}", "8:abc"):
        result = cli("audit", "verify", "--expect", bad)
        assert result.code == 2 and result.stdout == "", (bad, result)
    # A head that never was (right seq, wrong hash).
    code, result = verdict(cli, "--expect", f"5:{'a' * 64}")
    assert (code, result["first_bad_seq"], result["reason"]) == (1, 5, "head mismatch")
    # A pin beyond the log's end: cut short.
    code, result = verdict(cli, "--expect", f"9:{'a' * 64}")
    assert (code, result["first_bad_seq"], result["reason"]) == (1, 9, "missing")


def test_an_empty_log_verifies(cli: Callable[..., Result]) -> None:
    ok(cli, "list")
    code, result = verdict(cli)
    assert (code, result) == (
        0,
        {
            "ok": True,
            "events": 0,
            "head_seq": 0,
            "head": GENESIS,
            "first_bad_seq": None,
            "reason": None,
        },
    )
    assert json.loads(ok(cli, "export").stdout)["audit_head"] == {"seq": 0, "hash": GENESIS}


# ---------------------------------------------------------------- audit log, export


def test_audit_log_filters_and_columns(cli: Callable[..., Result], engine: Engine) -> None:
    engine.write(pools.create_pool, "p", Amounts(8, 0, 0))  # 12:00
    engine.clock.advance(3600)
    engine.write(tenants.add_tenant, "a", 5, Limits())  # 13:00
    r = reserve(engine, "a", "p", cpu=1).reservation
    engine.clock.advance(3600)
    engine.write(release.unreserve, r.id)  # 14:00
    reserve(engine, "a", "p", cpu=2)

    events = log(cli)
    check_chain(events)
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    raw = rows(
        "SELECT seq, at, actor, action, subject, data, prev_hash, hash FROM events ORDER BY seq"
    )
    for event, row in zip(events, raw, strict=True):
        assert set(event) == COLUMNS
        assert (
            event["seq"],
            event["actor"],
            event["action"],
            event["subject"],
            event["prev_hash"],
            event["hash"],
        ) == (row[0], *row[2:5], *row[6:8])
        assert event["data"] == json.loads(row[5])
        assert event["at"] == row[1].replace(" ", "T") + "Z"
    assert [e["at"] for e in events] == [
        "2026-01-01T12:00:00.000000Z",
        "2026-01-01T13:00:00.000000Z",
        "2026-01-01T13:00:00.000000Z",
        "2026-01-01T14:00:00.000000Z",
        "2026-01-01T14:00:00.000000Z",
    ]

    assert [e["seq"] for e in log(cli, "--action", "reservation.create")] == [3, 5]
    assert log(cli, "--action", "pool.delete") == []
    assert [e["seq"] for e in log(cli, "--since-seq", "3")] == [4, 5]
    assert log(cli, "--since-seq", "5") == []
    assert [e["seq"] for e in log(cli, "--since-seq", "0")] == [1, 2, 3, 4, 5]
    assert [e["seq"] for e in log(cli, "--since", "2026-01-01T13:00:00Z")] == [2, 3, 4, 5]
    assert [e["seq"] for e in log(cli, "--since", "2026-01-01T15:00:00+02:00")] == [2, 3, 4, 5]
    assert [e["seq"] for e in log(cli, "--since", "2026-01-01T13:00:00.000001Z")] == [4, 5]
    assert [
        e["seq"]
        for e in log(
            cli,
            "--since",
            "2026-01-01T13:00:00Z",
            "--since-seq",
            "2",
            "--action",
            "reservation.create",
        )
    ] == [3, 5]
    assert log(cli, "--since", "1h") == []  # real now is long after the clock above
    for bad in (
        ["--action", "nope"],
        ["--since-seq", "-1"],
        ["--since-seq", "x"],
        ["--since", "yesterday-ish"],
    ):
        result = cli("audit", "log", "--json", *bad)
        assert (result.code, result.stdout) == (2, ""), (bad, result)

    text = ok(cli, "audit", "log", "--action", "reservation.release").stdout
    header, _, line = text.splitlines()
    assert header.split() == ["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "DATA"]
    assert line.split()[:5] == [
        "4",
        "2026-01-01",
        "14:00:00",
        getpass.getuser(),
        "reservation.release",
    ]
    assert ok(cli, "audit", "log", "--since-seq", "5").stdout == "No events.\n"


def test_export_since_seq_follows_a_cursor(cli: Callable[..., Result]) -> None:
    ok(cli, "pool", "create", "--name", "p", "--cpu", "8")
    ok(cli, "pool", "create", "--name", "q", "--cpu", "8")
    for name in ("a", "b", "c", "d"):
        ok(cli, "tenant", "add", "--name", name)

    def reserve(tenant: str, pool: str) -> str:
        return str(
            json.loads(
                ok(
                    cli, "reserve", "--tenant", tenant, "--pool", pool, "--cpu", "1", "--json"
                ).stdout
            )["id"]
        )

    a, b, c = reserve("a", "p"), reserve("b", "p"), reserve("c", "q")
    first = json.loads(ok(cli, "export").stdout)
    assert verdict(cli)[0] == 0
    verified = verdict(cli)[1]
    assert first["audit_head"] == {"seq": verified["events"], "hash": verified["head"]}
    cursor = first["audit_head"]["seq"]
    assert [r["id"] for r in first["history"]] == [a, b, c]

    assert json.loads(ok(cli, "export", "--since-seq", str(cursor)).stdout)["history"] == []
    ok(cli, "extend", "--id", a, "--ttl", "1h")
    d = reserve("d", "p")
    ok(cli, "pool", "delete", "--name", "q", "--force")  # releases c
    ok(cli, "tenant", "add", "--name", "e")  # touches no reservation
    later = json.loads(ok(cli, "export", "--since-seq", str(cursor)).stdout)
    assert [r["id"] for r in later["history"]] == [a, c, d]
    assert {r["id"]: r["status"] for r in later["history"]} == {
        a: "active",
        c: "released",
        d: "active",
    }
    # The cron job's next cursor: nothing after it yet.
    cursor = later["audit_head"]["seq"]
    assert cursor == verdict(cli)[1]["events"]
    assert json.loads(ok(cli, "export", "--since-seq", str(cursor)).stdout)["history"] == []
    ok(cli, "unreserve", "--id", b)
    csv = ok(cli, "export", "--format", "csv", "--since-seq", str(cursor)).stdout.splitlines()
    assert len(csv) == 2 and csv[1].startswith(b + ",")
    # Everything since the beginning.
    assert len(json.loads(ok(cli, "export", "--since-seq", "0").stdout)["history"]) == 4


# ---------------------------------------------------------------- concurrent writers


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield str(request.getfixturevalue("pg_database"))
    else:
        yield str(tmp_path / "audit.db")


WRITERS, OPS = 4, 60


@pytest.mark.slow
def test_chain_stays_linear_under_concurrent_writers(tmp_path: Path, shared_db: str) -> None:
    """The hammer's workers (reserve, unreserve, extend, preempt, sweep, resize at
    random, racing for the same reservations) write through the engine at once;
    every acknowledged operation has its events, and the chain is one line."""
    database = open_database(resolve_target(shared_db), write=True)
    try:
        for name, totals in {"p0": Amounts(8, 4096, 2), "p1": Amounts(4, 2048, 1)}.items():
            database.run(lambda tx, n=name, a=totals: pools.create_pool(tx, n, a), write=True)
        for name, priority in {"t0": 1, "t1": 3, "t2": 5, "t3": 5, "t4": 7, "t5": 9}.items():
            database.run(lambda tx, n=name, p=priority: tenants.add_tenant(tx, n, p), write=True)
    finally:
        database.dispose()
    seed = int(os.environ.get("RESGATE_TEST_SEED") or int.from_bytes(os.urandom(3), "big"))
    names = [f"w{i}" for i in range(WRITERS)]
    # Real processes, forked from this one (fast to start), released together.
    results = race(
        tmp_path / "barrier",
        [
            engine_worker(
                shared_db, name, str(seed + i), str(OPS), str(tmp_path / f"ledger-{name}.jsonl")
            )
            for i, name in enumerate(names)
        ],
    )
    context = f"seed {seed}"
    for result in results:
        assert result.code == 0, f"{context}\n{result.stderr}"
    entries = [e for n in names for e in read_ledger(tmp_path / f"ledger-{n}.jsonl")]
    assert len(entries) > WRITERS * OPS // 3, context
    print(f"\n{len(entries)} of {WRITERS * OPS} operations acknowledged")

    database = open_database(resolve_target(shared_db), write=False)
    try:
        events = database.run(lambda tx: [event_dict(e) for e in audit.log(tx)], write=False)
        result = database.run(audit.verify, write=False)
    finally:
        database.dispose()
    check_chain(events)
    assert result.ok and result.events == len(events), (context, result)

    # Every acknowledged change has its event (written in its transaction), and no
    # event without an acknowledged change, but for expiries found by any writer's sweep.
    expected: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        op = entry["op"]
        if op == "reserve":
            expected["reservation.create", entry["id"]] += 1
        elif op == "unreserve":
            expected["reservation.release", entry["id"]] += 1
        elif op == "extend":
            expected["reservation.extend", entry["id"]] += 1
        elif op == "preempt":
            for rid in entry["ids"]:
                expected["reservation.preempt", rid] += 1
        elif op == "resize":
            expected["pool.resize", entry["pool"]] += 1
    actual = Counter(
        (e["action"], e["subject"])
        for e in events
        if e["action"] not in ("reservation.expire", "pool.create", "tenant.add")
    )
    assert actual == expected, context
    expired = [e["subject"] for e in events if e["action"] == "reservation.expire"]
    assert len(expired) == len(set(expired)), context
    swept = {rid for entry in entries if entry["op"] == "sweep" for rid in entry["ids"]}
    assert swept <= set(expired), context
    # Each reservation ends at most once.
    ended = Counter(
        e["subject"]
        for e in events
        if e["action"] in ("reservation.release", "reservation.expire", "reservation.preempt")
    )
    assert max(ended.values(), default=1) == 1, context
    # And the command line agrees.
    done = resgate(shared_db, "audit", "verify", "--json")
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["events"] == len(events)
