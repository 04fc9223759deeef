"""Pool policies (README "Pool policies"): several reservations of one tenant in a
pool, kept by the database too, and the default and maximum TTL. Both databases."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from helpers import Cli, js, ok, reserve

from resgate.engine import extension, pools, release, reservations, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts
from resgate.engine.reservations import ReserveRequest
from resgate.errors import InvalidInput, Refused

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture
def lab(engine):
    engine.write(pools.create_pool, "g", Amounts(16, 4096, 8), policy=Policy(per_tenant=2))
    engine.write(tenants.add_tenant, "nlp", 5)
    engine.write(tenants.add_tenant, "cv", 5)
    return engine


def test_a_tenant_holds_up_to_the_pools_limit(lab):
    reserve(lab, "nlp", "g", gpu=1)
    reserve(lab, "nlp", "g", gpu=1)
    with pytest.raises(Refused) as refused:
        reserve(lab, "nlp", "g", gpu=1)
    assert str(refused.value) == (
        "tenant 'nlp' already holds 2 reservation(s) in pool 'g' (the pool allows 2)"
    )
    reserve(lab, "cv", "g", gpu=1)  # the limit is per tenant


def test_limit_one_keeps_the_earlier_message_and_unlimited_has_none(lab):
    lab.write(pools.update_pool, "g", {"per_tenant": 1})
    first = reserve(lab, "nlp", "g", gpu=1).reservation
    with pytest.raises(Refused) as refused:
        reserve(lab, "nlp", "g", gpu=1)
    assert str(refused.value) == (
        f"tenant 'nlp' already has active reservation '{first.id}' in pool 'g'"
    )
    lab.write(pools.update_pool, "g", {"per_tenant": None})
    for _ in range(6):
        reserve(lab, "nlp", "g", gpu=1)
    assert lab.read(pools.show_pool, "g").reserved.gpu == 7


def test_lowering_the_limit_keeps_what_is_held_and_stops_new_ones(lab):
    held = [reserve(lab, "nlp", "g", cpu=1).reservation.id for _ in range(2)]
    info = lab.write(pools.update_pool, "g", {"per_tenant": 1})
    assert info.per_tenant == 1
    with pytest.raises(Refused, match=r"already holds 2 reservation\(s\) .* allows 1"):
        reserve(lab, "nlp", "g", cpu=1)
    lab.write(release.unreserve, held[0])
    with pytest.raises(Refused, match=f"already has active reservation '{held[1]}'"):
        reserve(lab, "nlp", "g", cpu=1)
    lab.write(release.unreserve, held[1])
    reserve(lab, "nlp", "g", cpu=1)


def test_released_and_expired_reservations_do_not_count(lab, clock):
    reserve(lab, "nlp", "g", cpu=1, ttl=60)
    released = reserve(lab, "nlp", "g", cpu=1).reservation
    lab.write(release.unreserve, released.id)
    reserve(lab, "nlp", "g", cpu=1)
    clock.advance(61)  # the first one is due: swept by the next write
    reserve(lab, "nlp", "g", cpu=1)


# ---------------------------------------------------------------- behind resgate's back


@contextlib.contextmanager
def raw(autocommit: bool = True) -> Iterator[Any]:
    """A DB-API connection to the database RESGATE_DB names; without autocommit,
    the first statement begins a transaction that holds the write lock."""
    url = os.environ.get("RESGATE_DB", "")
    if "://" in url:
        import psycopg

        with psycopg.connect(
            url.replace("postgresql+psycopg://", "postgresql://"), autocommit=autocommit
        ) as connection:
            yield connection
    else:
        connection = sqlite3.connect(url, isolation_level=None, timeout=10, check_same_thread=False)
        if not autocommit:
            connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        finally:
            connection.close()


def _insert(connection: Any, rid: str, tenant: str = "nlp", pool: str = "g") -> None:
    postgres = not isinstance(connection, sqlite3.Connection)
    mark = "%s" if postgres else "?"
    now = "now()" if postgres else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    connection.execute(
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, created_at) "
        f"SELECT {mark}, t.id, p.id, 1, 0, 0, 'active', {now} FROM tenants t, pools p "
        f"WHERE t.name = {mark} AND t.deleted_at IS NULL "
        f"AND p.name = {mark} AND p.deleted_at IS NULL",
        (rid, tenant, pool),
    )


def _refusal() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.IntegrityError]
    with contextlib.suppress(ImportError):
        import psycopg

        errors.append(psycopg.Error)
    return tuple(errors)


def test_the_database_refuses_a_raw_insert_past_the_limit(lab):
    reserve(lab, "nlp", "g", cpu=1)
    with raw() as connection:
        _insert(connection, "a" * 16)  # the second of two: allowed
        with pytest.raises(_refusal(), match="per-tenant limit"):
            _insert(connection, "b" * 16)
        _insert(connection, "c" * 16, tenant="cv")
        connection.execute("UPDATE pools SET per_tenant = NULL WHERE name = 'g'")
        _insert(connection, "d" * 16)
    assert len(lab.read(pools.show_pool, "g").devices) == 8
    assert lab.read(pools.show_pool, "g").reserved.cpu == 4


def test_the_database_refuses_a_bad_policy(lab):
    with raw() as connection:
        for statement in (
            "UPDATE pools SET per_tenant = 0",
            "UPDATE pools SET default_ttl = 0",
            "UPDATE pools SET max_ttl = -5",
            "UPDATE pools SET default_ttl = 7200, max_ttl = 3600",
        ):
            with pytest.raises(_refusal()):
                connection.execute(statement)
    assert lab.read(pools.show_pool, "g").per_tenant == 2


def test_two_raw_sessions_cannot_both_pass(lab):
    """Two writers behind resgate's back, each inserting the tenant's second row:
    the second waits for the first (SQLite's write lock; on PostgreSQL the
    trigger's lock on the pool row), then counts its row and is refused."""
    reserve(lab, "nlp", "g", cpu=1)
    with raw(autocommit=False) as first, raw() as second:
        _insert(first, "e" * 16)  # its transaction stays open
        outcome: list[BaseException | None] = []

        def race() -> None:
            try:
                _insert(second, "f" * 16)
                outcome.append(None)
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=race)
        thread.start()
        time.sleep(0.3)
        assert not outcome, "the second insert did not wait for the first"
        first.commit()
        thread.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], _refusal()), outcome
    assert lab.read(pools.show_pool, "g").reserved.cpu == 2


def test_an_ended_reservations_runner_may_only_be_cleared(lab):
    done = reserve(lab, "nlp", "g", cpu=1).reservation
    with raw() as connection:
        connection.execute(f"UPDATE reservations SET runner = '12@box' WHERE id = '{done.id}'")
    lab.write(release.unreserve, done.id)
    with raw() as connection:
        for statement in (
            "UPDATE reservations SET runner = '13@box'",
            "UPDATE reservations SET status = 'active', ended_at = NULL",
            "UPDATE reservations SET runner = NULL, ttl = 60",
            "UPDATE reservations SET created_by = 'mallory'",
        ):
            with pytest.raises(_refusal(), match="only an active reservation may change"):
                connection.execute(f"{statement} WHERE id = '{done.id}'")
        connection.execute(f"UPDATE reservations SET runner = NULL WHERE id = '{done.id}'")
        row = connection.execute(
            f"SELECT status, runner FROM reservations WHERE id = '{done.id}'"
        ).fetchone()
    assert tuple(row) == ("released", None)


# ---------------------------------------------------------------- TTL policies


@pytest.fixture
def bounded(engine):
    engine.write(
        pools.create_pool,
        "b",
        Amounts(8, 0, 4),
        policy=Policy(per_tenant=None, default_ttl=3600, max_ttl=86400),
    )
    engine.write(tenants.add_tenant, "nlp", 5)
    return engine


def test_a_reserve_without_ttl_gets_the_pools_default(bounded, clock):
    made = reserve(bounded, "nlp", "b", cpu=1).reservation
    assert made.ttl == 3600 and made.expires_at == clock.now() + timedelta(hours=1)
    own = reserve(bounded, "nlp", "b", cpu=1, ttl=600).reservation
    assert own.ttl == 600


def test_the_maximum_bounds_reserve_and_extend_but_not_renewals(bounded, clock):
    with pytest.raises(Refused) as refused:
        reserve(bounded, "nlp", "b", cpu=1, ttl=86401)
    assert str(refused.value) == "pool 'b' allows reservations of at most 1d"
    made = reserve(bounded, "nlp", "b", cpu=1, ttl=86400).reservation  # exactly the maximum
    clock.advance(3600)
    with pytest.raises(Refused, match="at most 1d"):
        bounded.write(extension.extend, made.id, 86400)  # would end 25 h after it began
    with pytest.raises(Refused, match="at most 1d"):
        bounded.write(extension.extend, made.id, 0)  # no end at all
    assert bounded.write(extension.extend, made.id, 82800).ttl == 82800

    bounded.write(pools.update_pool, "b", {"max_ttl": 3600})
    lease = ReserveRequest("nlp", "b", Amounts(1, 0, 0), ttl=120, lease=True)
    leased = bounded.write(reservations.reserve, lease)
    assert leased.ttl == 120  # a lease keeps its own TTL, never the pool's default
    for _ in range(50):  # renewals for longer than the maximum: never refused
        clock.advance(100)
        assert bounded.write(extension.renew, leased.id, 120).status == "active"


def test_no_end_is_refused_where_there_is_a_maximum_and_no_default(bounded):
    bounded.write(pools.update_pool, "b", {"default_ttl": None})
    with pytest.raises(Refused, match="pool 'b' allows reservations of at most 1d"):
        reserve(bounded, "nlp", "b", cpu=1)


def test_a_replay_of_a_defaulted_request_is_the_same_request(bounded):
    request = ReserveRequest("nlp", "b", Amounts(1, 0, 0), request_id="job-1")
    first = bounded.write(reservations.reserve, request)
    again = bounded.write(reservations.reserve, request)
    assert again.id == first.id and again.ttl == 3600


def test_policy_changes_are_checked(bounded):
    with pytest.raises(InvalidInput, match="default TTL \\(2d\\) is above the maximum TTL"):
        bounded.write(pools.update_pool, "b", {"default_ttl": 172800, "max_ttl": 86400})
    with pytest.raises(Refused, match="would have a default TTL \\(2d\\) above its maximum"):
        bounded.write(pools.update_pool, "b", {"default_ttl": 172800})
    with pytest.raises(InvalidInput, match="nothing to change"):
        bounded.write(pools.update_pool, "b", {})
    info = bounded.write(pools.update_pool, "b", {"max_ttl": None, "default_ttl": 172800})
    assert (info.per_tenant, info.default_ttl, info.max_ttl) == (None, 172800, None)


# ---------------------------------------------------------------- the command line


def test_pool_policies_on_the_command_line(cli: Cli):
    created = js(
        cli, "pool", "create", "--name", "g", "--gpu", "4", "--per-tenant", "3",
        "--default-ttl", "2h", "--max-ttl", "1d", "--json",
    )  # fmt: skip
    assert (created["per_tenant"], created["default_ttl"], created["max_ttl"]) == (3, 7200, 86400)
    updated = js(cli, "pool", "update", "g", "--per-tenant", "unlimited", "--max-ttl", "none",
                 "--json")  # fmt: skip
    assert (updated["per_tenant"], updated["default_ttl"], updated["max_ttl"]) == (None, 7200, None)
    shown = ok(cli, "pool", "show", "--name", "g").stdout
    assert "Policies: per tenant unlimited, default TTL 2h, max TTL none" in shown
    line = ok(cli, "pool", "update", "--name", "g", "--per-tenant", "1").stdout
    assert line == "Pool 'g' updated — per tenant 1, default TTL 2h, max TTL none\n"
    events = js(cli, "audit", "log", "--json")
    updates = [e for e in events if e["action"] == "pool.update"]
    assert [e["data"] for e in updates] == [
        {"old": {"per_tenant": 3, "max_ttl": 86400}, "new": {"per_tenant": None, "max_ttl": None}},
        {"old": {"per_tenant": None}, "new": {"per_tenant": 1}},
    ]
    assert [e["data"] for e in events if e["action"] == "pool.create"] == [
        {"cpu": 0, "memory": 0, "gpu": 4, "per_tenant": 3, "default_ttl": 7200, "max_ttl": 86400}
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pool", "update", "g"], 2, "nothing to change"),
        (["pool", "update", "g", "--per-tenant", "0"], 2, "invalid value for --per-tenant: '0'"),
        (["pool", "update", "g", "--max-ttl", "soon"], 2, "invalid duration for --max-ttl"),
        (["pool", "update", "g", "--default-ttl", "0"], 2, "invalid value for --default-ttl"),
        (
            ["pool", "update", "g", "--default-ttl", "2d", "--max-ttl", "1d"],
            2,
            "the default TTL (2d) is above the maximum TTL (1d)",
        ),
        (["pool", "update", "g", "--default-ttl", "2d"], 4, "above its maximum (1d)"),
        (
            ["pool", "update", "nope", "--per-tenant", "2"],
            1,
            "pool 'nope' not found (see: resgate pool list)",
        ),
        (
            ["pool", "update", "--per-tenant", "2"],
            2,
            "missing pool name: give it as NAME or --name",
        ),
        (["pool", "update", "g", "--name", "g", "--per-tenant", "2"], 2, "give the pool name once"),
        (
            ["reserve", "--tenant", "t", "--pool", "g", "--cpu", "1", "--ttl", "2d"],
            4,
            "pool 'g' allows reservations of at most 1d",
        ),
    ],
)
def test_policy_errors_change_nothing(cli: Cli, args: list[str], code: int, message: str):
    ok(cli, "pool", "create", "--name", "g", "--cpu", "4", "--max-ttl", "1d")
    ok(cli, "tenant", "add", "--name", "t")
    before = js(cli, "pool", "show", "--name", "g", "--json"), js(cli, "audit", "log", "--json")
    done = cli(*args)
    assert (done.code, done.stdout) == (code, "")
    assert done.stderr.startswith("Error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
    after = js(cli, "pool", "show", "--name", "g", "--json"), js(cli, "audit", "log", "--json")
    assert after == before
