"""README "Who is acting": the actor is the OS user (the passwd name of
the effective uid) or RESGATE_ACTOR; when the label differs from the OS user every
event's data says `os_user`; each new reservation keeps its actor in
`reservations.created_by`, shown as `created_by` in JSON, USER in `list`, and
`list --mine` keeps the caller's. Both databases."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import Cli, alembic, js, ok, out, reserve_id

from resgate.clock import FixedClock
from resgate.engine import audit
from resgate.store.schema import SCHEMA_HEAD

pytestmark = pytest.mark.usefixtures("backend")

OS_USER = pwd.getpwuid(os.geteuid()).pw_name


@pytest.fixture(autouse=True)
def fresh_actor() -> Iterator[None]:
    """The OS user is looked up once per process: afresh for each test."""
    audit._os_actor.cache_clear()
    yield
    audit._os_actor.cache_clear()


@pytest.fixture
def world(cli: Cli, frozen: FixedClock) -> FixedClock:
    out(cli, "pool", "create", "--name", "p", "--cpu", "10", "--memory", "1000", "--gpu", "2")
    out(cli, "tenant", "add", "--name", "a")
    out(cli, "tenant", "add", "--name", "b")
    out(cli, "tenant", "add", "--name", "c")
    return frozen


def events(cli: Cli) -> list[dict[str, Any]]:
    return list(js(cli, "audit", "log"))


def verified(cli: Cli) -> dict[str, Any]:
    result = cli("audit", "verify", "--json")
    assert result.code == 0, result
    verdict: dict[str, Any] = json.loads(result.stdout)
    assert verdict["ok"] is True, verdict
    return verdict


def table(text: str) -> list[dict[str, str]]:
    """`list`'s table as dicts by column (every cell here is one word)."""
    lines = text.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[2:]]


# ---------------------------------------------------------------- the actor and os_user


def test_os_user_in_data_exactly_when_the_label_differs(
    cli: Cli, world: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = len(events(cli))
    # No label: the OS user acts, and no event says os_user.
    rid = reserve_id(cli, "a", cpu=1, ttl="10")
    # The label is the OS user's own name: nothing to add.
    monkeypatch.setenv("RESGATE_ACTOR", OS_USER)
    out(cli, "extend", "--id", rid, "--ttl", "20")
    # A label for a script: every event of its commands names the OS user too,
    # those of the batched sweep included.
    monkeypatch.setenv("RESGATE_ACTOR", "cron@host1")
    other = reserve_id(cli, "b", cpu=1, ttl="5")
    out(cli, "tenant", "update", "--name", "c", "--priority", "7")
    world.advance(30)
    assert js(cli, "sweep")["expired"] == 2
    out(cli, "pool", "resize", "--name", "p", "--cpu", "12")
    monkeypatch.delenv("RESGATE_ACTOR")
    out(cli, "tenant", "add", "--name", "d")

    new = events(cli)[before:]
    assert [(e["actor"], e["action"]) for e in new] == [
        (OS_USER, "reservation.create"),
        (OS_USER, "reservation.extend"),
        ("cron@host1", "reservation.create"),
        ("cron@host1", "tenant.update"),
        ("cron@host1", "reservation.expire"),
        ("cron@host1", "reservation.expire"),
        ("cron@host1", "pool.resize"),
        (OS_USER, "tenant.add"),
    ]
    for e in new:
        assert ("os_user" in e["data"]) == (e["actor"] == "cron@host1"), e
        if e["actor"] == "cron@host1":
            assert e["data"]["os_user"] == OS_USER
    # Only os_user is added: the rest of the data is as without a label.
    created = new[2]["data"]
    assert created == {
        "tenant": "b",
        "pool": "p",
        "cpu": 1,
        "memory": 0,
        "gpu": 0,
        "ttl": 5,
        "starts_at": "2026-11-24T12:00:00.000000Z",
        "ends_at": "2026-11-24T12:00:05.000000Z",
        "os_user": OS_USER,
    }
    assert sorted(e["subject"] for e in new[4:6]) == sorted([rid, other])
    assert [sorted(e["data"]) for e in new[4:6]] == [["expires_at", "os_user"]] * 2
    assert verified(cli)["events"] == before + len(new)


def test_the_os_user_is_the_passwd_name_not_logname(
    cli: Cli, world: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # LOGNAME and USER are anyone's to set: they neither act nor hide the real user.
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("USER", "mallory")
    rid = reserve_id(cli, "a", cpu=1)
    last = events(cli)[-1]
    assert last["actor"] == OS_USER and "os_user" not in last["data"]
    assert js(cli, "list")[0]["created_by"] == OS_USER
    monkeypatch.setenv("RESGATE_ACTOR", "mallory")
    out(cli, "unreserve", "--id", rid)
    last = events(cli)[-1]
    assert (last["actor"], last["data"]) == ("mallory", {"os_user": OS_USER})
    verified(cli)


# ---------------------------------------------------------------- created_by


def test_new_reservations_record_their_actor(
    cli: Cli, world: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = js(cli, "reserve", "--tenant", "a", "--pool", "p", "--cpu", "1")
    assert mine["created_by"] == OS_USER
    monkeypatch.setenv("RESGATE_ACTOR", "zoë")  # not ASCII
    theirs = js(cli, "reserve", "--tenant", "b", "--pool", "p", "--cpu", "1")
    assert theirs["created_by"] == "zoë"
    monkeypatch.delenv("RESGATE_ACTOR")

    # Kept in the row: whoever reads it later sees who made it.
    listed = {r["id"]: r["created_by"] for r in js(cli, "list")}
    assert listed == {mine["id"]: OS_USER, theirs["id"]: "zoë"}
    rows = table(out(cli, "list"))
    assert list(rows[0]) == [
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
    assert {r["ID"]: (r["TENANT"], r["USER"]) for r in rows} == {
        mine["id"]: ("a", OS_USER),
        theirs["id"]: ("b", "zoë"),
    }
    # Ended ones keep it.
    released = js(cli, "unreserve", "--id", theirs["id"])
    assert released["created_by"] == "zoë"
    assert {r["id"]: r["created_by"] for r in js(cli, "list", "--all")} == listed

    report = json.loads(out(cli, "export"))
    assert {r["id"]: r["created_by"] for r in report["history"]} == listed
    assert [r["created_by"] for r in report["reservations"]] == [OS_USER]
    # The CSV's columns (README "Booking ahead"): the window and the actor come last.
    csv = out(cli, "export", "--format", "csv")
    assert csv.splitlines()[0] == (
        "id,tenant,pool,cpu,memory,gpu,ttl,status,created_at,expires_at,ended_at,"
        "preempted_by,gpu_ids,starts_at,ends_at,preempt_at,created_by"
    )


def test_list_mine_shows_the_callers_reservations(
    cli: Cli, world: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESGATE_ACTOR", "alice")
    alice_a = reserve_id(cli, "a", cpu=1)
    alice_b = reserve_id(cli, "b", cpu=1)
    monkeypatch.setenv("RESGATE_ACTOR", "bob")
    bob_c = reserve_id(cli, "c", cpu=1)
    out(cli, "unreserve", "--id", alice_b)  # bob ends it: it stays alice's

    def mine(*args: str) -> list[str]:
        return [r["id"] for r in js(cli, "list", "--mine", *args)]

    assert mine() == [bob_c]
    assert mine("--all") == [bob_c]
    monkeypatch.setenv("RESGATE_ACTOR", "alice")
    assert mine() == [alice_a]
    assert mine("--all") == [alice_a, alice_b]
    assert mine("--status", "released") == [alice_b]
    assert mine("--tenant", "c") == []
    assert mine("--tenant", "a") == [alice_a]
    rows = table(out(cli, "list", "--mine", "--all"))
    assert [(r["ID"], r["USER"]) for r in rows] == [(alice_a, "alice"), (alice_b, "alice")]
    # Without a label the caller is the OS user, who made none of them.
    monkeypatch.delenv("RESGATE_ACTOR")
    assert mine("--all") == []
    assert out(cli, "list", "--mine") == "No reservations.\n"
    assert len(js(cli, "list", "--all")) == 3


def test_list_mine_refuses_a_bad_label(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESGATE_ACTOR", "a\nb")
    result = cli("list", "--mine")
    assert result.code == 2 and result.stdout == ""
    assert "RESGATE_ACTOR" in result.stderr


# ---------------------------------------------------------------- the upgrade from 0006


def test_upgrade_from_0006_gives_old_rows_the_actor_of_their_create_event(
    cli: Cli, world: FixedClock, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESGATE_ACTOR", "cron@host1")
    kept = reserve_id(cli, "a", cpu=2, memory=100)
    ended = reserve_id(cli, "b", cpu=1, ttl="10")
    out(cli, "unreserve", "--id", ended)
    monkeypatch.delenv("RESGATE_ACTOR")
    world.advance(5)

    def views() -> dict[str, Any]:
        return {
            "status": js(cli, "status"),
            "list": js(cli, "list", "--all"),
            "table": out(cli, "list", "--all"),
            "export": json.loads(out(cli, "export")),
            "csv": out(cli, "export", "--format", "csv"),
        }

    before = views()
    head = verified(cli)
    # The same database as revision 0006 left it: no created_by column.
    db = os.environ["RESGATE_DB"]
    alembic(db, "downgrade", "0006")
    result = cli("list")  # a read does not upgrade
    assert result.code == 1 and "revision 0006" in result.stderr, result
    assert "resgate db upgrade" in result.stderr
    # A row with no reservation.create event, written behind resgate's back.
    behind = "feedfacefeedface"
    _sql(
        db,
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, "
        "created_at, ended_at) SELECT :id, t.id, p.id, 1, 0, 0, 'released', "
        ":at, :at FROM tenants t, pools p WHERE t.name = 'a' AND p.name = 'p'",
        id=behind,
        at=world.now() - timedelta(days=2),  # outside status's 24-hour window
    )

    if backend == "sqlite":
        assert js(cli, "sweep") == {"expired": 0, "ids": []}  # any write upgrades a file
        assert Path(f"{db}.bak-0006").is_file()
    else:
        ok(cli, "db", "upgrade")
    assert js(cli, "db", "current")["revision"] == SCHEMA_HEAD

    after = views()
    creators = {r["id"]: r["created_by"] for r in after["list"]}
    assert creators == {kept: "cron@host1", ended: "cron@host1", behind: None}
    # Apart from the row added behind resgate's back, everything reads as before.
    after["list"] = [r for r in after["list"] if r["id"] != behind]
    assert after["list"] == before["list"]
    assert after["status"] == before["status"]
    exported = after["export"]
    exported["history"] = [r for r in exported["history"] if r["id"] != behind]
    assert {k: v for k, v in exported.items() if k != "generated_at"} == {
        k: v for k, v in before["export"].items() if k != "generated_at"
    }
    assert [line for line in after["csv"].splitlines() if behind not in line] == before[
        "csv"
    ].splitlines()
    shown = [r for r in table(after["table"]) if not behind.startswith(r["ID"])]
    assert shown == table(before["table"])
    # The ended row was filled in around the trigger that guards ended rows, which holds.
    refused = _sql(db, "UPDATE reservations SET created_by = 'x' WHERE id = :id", id=ended)
    assert refused is not None and "only an active reservation may change" in refused
    assert [r["id"] for r in js(cli, "list", "--all", "--mine")] == []
    assert verified(cli) == head


def _sql(db: str, statement: str, **values: Any) -> str | None:
    """Run one statement on the database directly; the error's text if it is refused."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    url = db if "://" in db else f"sqlite:///{db}"
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(statement), values)
    except DBAPIError as exc:
        return str(exc.orig)
    finally:
        engine.dispose()
    return None
