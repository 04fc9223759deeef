"""Booking ahead (README "Booking ahead"): windows through the engine with an injected
clock, and the database's own rules for capacity over time, devices and the
per-tenant limit, written behind resgate's back with `sqlite3` and psycopg."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from helpers import Engine, raw_sql

from resgate.engine import check, evictions, listing, pools, release, reservations, tenants
from resgate.engine.records import Amounts, ReservationInfo
from resgate.engine.reservations import ReserveRequest
from resgate.errors import InsufficientResources, InvalidInput, NotFound, Refused

pytestmark = pytest.mark.usefixtures("backend")

HOUR = timedelta(hours=1)


@pytest.fixture
def lab(engine: Engine) -> Engine:
    engine.write(pools.create_pool, "box", Amounts(8, 0, 4))
    for name, priority in (("nlp", 5), ("cv", 5), ("ops", 9)):
        engine.write(tenants.add_tenant, name, priority)
    return engine


def book(
    engine: Engine,
    tenant: str,
    *,
    start: timedelta | None = None,
    length: timedelta | None = None,
    cpu: int = 0,
    gpu: int = 0,
    ids: tuple[int, ...] | None = None,
) -> ReservationInfo:
    now = engine.clock.now()
    request = ReserveRequest(
        tenant,
        "box",
        Amounts(cpu, 0, gpu),
        start=None if start is None else now + start,
        duration=None if length is None else int(length.total_seconds()),
        gpu_ids=ids,
    )
    info: ReservationInfo = engine.write(reservations.reserve, request)
    return info


def shown(engine: Engine, rid: str) -> str:
    found = [r for r in engine.read(listing.list_reservations, include_ended=True) if r.id == rid]
    return found[0].status


def problems(engine: Engine) -> list[str]:
    return list(engine.read(check.check).problems)


def test_a_booking_is_upcoming_then_active_then_over_with_no_command(lab: Engine) -> None:
    booked = book(lab, "nlp", start=2 * HOUR, length=HOUR, cpu=8)
    assert booked.status == "upcoming"
    assert (booked.starts_at, booked.ends_at) == (
        lab.clock.now() + 2 * HOUR,
        lab.clock.now() + 3 * HOUR,
    )
    assert [r.id for r in lab.read(listing.list_reservations, status="upcoming")] == [booked.id]
    # Until it starts, the whole pool is free now.
    now_ = book(lab, "cv", length=HOUR, cpu=8)
    lab.clock.advance(7200)
    assert shown(lab, booked.id) == "active"
    assert shown(lab, now_.id) == "expired"
    lab.clock.advance(3600)
    assert shown(lab, booked.id) == "expired"
    assert problems(lab) == []


def test_back_to_back_windows_fit_and_overlapping_ones_do_not(lab: Engine) -> None:
    book(lab, "nlp", start=HOUR, length=HOUR, cpu=8, gpu=4)
    book(lab, "cv", start=2 * HOUR, length=HOUR, cpu=8, gpu=4)
    book(lab, "ops", length=HOUR, cpu=8, gpu=4)
    with pytest.raises(InsufficientResources) as refused:
        book(lab, "ops", start=150 * timedelta(minutes=1), length=HOUR, cpu=1)
    assert "insufficient resources in 'box' from " in str(refused.value)
    assert "(held by cv " in str(refused.value)
    assert problems(lab) == []


def test_an_open_ended_request_must_fit_for_ever(lab: Engine) -> None:
    later = book(lab, "nlp", start=3 * HOUR, length=HOUR, gpu=3)
    with pytest.raises(InsufficientResources) as refused:
        book(lab, "cv", gpu=2)
    message = str(refused.value)
    assert f"(booking {later.id[:8]}… of nlp): add end '" in message  # --end from the CLI
    # With the end it names, it fits.
    fits = book(lab, "cv", length=3 * HOUR, gpu=2)
    assert fits.status == "active"
    assert problems(lab) == []


def test_devices_are_the_lowest_free_for_the_whole_window(lab: Engine) -> None:
    first = book(lab, "nlp", start=HOUR, length=HOUR, gpu=2)
    assert first.gpu_ids == (0, 1)
    # Now and until the booking: 0 and 1 are free now but not over the window.
    second = book(lab, "cv", length=90 * timedelta(minutes=1), gpu=2)
    assert second.gpu_ids == (2, 3)
    after = book(lab, "ops", start=2 * HOUR, length=HOUR, gpu=4)
    assert after.gpu_ids == (0, 1, 2, 3)
    with pytest.raises(InsufficientResources, match=f"GPU 0 is held by reservation '{first.id}'"):
        book(lab, "cv", start=90 * timedelta(minutes=1), length=HOUR / 2, ids=(0,))
    assert book(lab, "cv", start=90 * timedelta(minutes=1), length=HOUR / 2, ids=(2,)).gpu_ids == (
        2,
    )


def test_cancelling_an_upcoming_booking_gives_its_time_back(lab: Engine) -> None:
    booked = book(lab, "nlp", start=HOUR, length=HOUR, cpu=8)
    cancelled = lab.write(release.unreserve, booked.id)
    assert cancelled.status == "released"
    assert cancelled.ended_at is not None and cancelled.ended_at < booked.starts_at  # type: ignore[operator]
    book(lab, "cv", start=HOUR, length=HOUR, cpu=8)
    assert problems(lab) == []


def test_the_per_tenant_limit_holds_at_every_instant(lab: Engine) -> None:
    book(lab, "nlp", start=HOUR, length=HOUR, cpu=1)
    book(lab, "nlp", start=2 * HOUR, length=HOUR, cpu=1)  # back to back: one at a time
    with pytest.raises(Refused, match="already has upcoming reservation"):
        book(lab, "nlp", start=90 * timedelta(minutes=1), length=HOUR, cpu=1)


@pytest.mark.parametrize(
    ("start", "length", "error"),
    [
        (timedelta(minutes=-5), HOUR, "is in the past"),
        (timedelta(days=400), HOUR, "more than 366 days ahead"),
    ],
)
def test_windows_out_of_range_are_refused(
    lab: Engine, start: timedelta, length: timedelta, error: str
) -> None:
    with pytest.raises(InvalidInput, match=error):
        book(lab, "nlp", start=start, length=length, cpu=1)


def test_a_start_within_the_last_minute_is_now(lab: Engine) -> None:
    info = book(lab, "nlp", start=timedelta(seconds=-30), length=HOUR, cpu=1)
    assert info.status == "active" and info.starts_at == lab.clock.now()


def test_extending_into_a_booking_names_the_latest_end(lab: Engine) -> None:
    from resgate.engine import extension

    running = book(lab, "nlp", length=HOUR, cpu=8)
    book(lab, "cv", start=2 * HOUR, length=HOUR, cpu=4)
    with pytest.raises(InsufficientResources, match="the latest possible end is"):
        lab.write(extension.extend, running.id, 3 * 3600)
    moved = lab.write(extension.extend, running.id, 2 * 3600)
    assert moved.expires_at == lab.clock.now() + 2 * HOUR
    assert problems(lab) == []


# ---------------------------------------------------------------- behind resgate's back


@contextmanager
def raw(engine: Engine) -> Iterator[Callable[[str], Any]]:
    """A connection of the database's own client library, not SQLAlchemy's."""
    with raw_sql() as execute:
        yield execute


def _stamp(at: datetime) -> str:
    return at.isoformat(" ", "microseconds")


def insert_row(
    execute: Callable[[str], Any],
    rid: str,
    tenant_id: int,
    start: datetime,
    end: datetime | None,
    cpu: int = 0,
    gpu: int = 0,
) -> None:
    ends = "NULL" if end is None else f"'{_stamp(end)}'"
    execute(
        "INSERT INTO reservations (id, tenant_id, pool_id, cpu, memory, gpu, status, created_at,"
        " starts_at, ends_at, expires_at, lease) VALUES"
        f" ('{rid}', {tenant_id}, 1, {cpu}, 0, {gpu}, 'active', '{_stamp(start)}',"
        f" '{_stamp(start)}', {ends}, {ends}, false)"
    )


def test_the_database_refuses_an_over_committed_future_instant(lab: Engine) -> None:
    t0 = lab.clock.now()
    book(lab, "nlp", start=HOUR, length=HOUR, cpu=6)
    with raw(lab) as execute:
        with pytest.raises(Exception, match="capacity"):
            insert_row(execute, "a" * 16, 2, t0 + 90 * timedelta(minutes=1), None, cpu=3)
        # Back to back with it, and within what is left beside it: accepted.
        insert_row(execute, "b" * 16, 2, t0 + 2 * HOUR, t0 + 3 * HOUR, cpu=8)
        insert_row(execute, "c" * 16, 3, t0 + HOUR, t0 + 2 * HOUR, cpu=2)
        with pytest.raises(Exception, match="capacity"):
            # Moving an end into the next booking over-commits it.
            execute(
                f"UPDATE reservations SET ends_at = '{_stamp(t0 + 150 * timedelta(minutes=1))}',"
                f" expires_at = '{_stamp(t0 + 150 * timedelta(minutes=1))}' WHERE id = '{'c' * 16}'"
            )
        with pytest.raises(Exception, match=r"free|capacity|check"):
            execute("UPDATE pools SET cpu = 7 WHERE id = 1")
    assert problems(lab) == []


def test_the_database_refuses_a_device_booked_twice_over_overlapping_windows(
    lab: Engine,
) -> None:
    t0 = lab.clock.now()
    first = book(lab, "nlp", start=HOUR, length=HOUR, ids=(1,))
    with raw(lab) as execute:
        insert_row(execute, "d" * 16, 2, t0 + 90 * timedelta(minutes=1), None, gpu=1)
        with pytest.raises(Exception, match="GPU device held"):
            execute(
                "INSERT INTO reservation_devices (reservation_id, device, pool_id, active)"
                f" VALUES ('{'d' * 16}', 1, 1, true)"
            )
        insert_row(execute, "e" * 16, 3, t0 + 2 * HOUR, None, gpu=1)
        execute(
            "INSERT INTO reservation_devices (reservation_id, device, pool_id, active)"
            f" VALUES ('{'e' * 16}', 1, 1, true)"
        )  # back to back with the first booking
        with pytest.raises(Exception, match="GPU device held"):
            later = _stamp(t0 + 150 * timedelta(minutes=1))
            execute(
                f"UPDATE reservations SET ends_at = '{later}', expires_at = '{later}'"
                f" WHERE id = '{first.id}'"
            )
    assert problems(lab) == []


def test_the_database_refuses_a_tenant_over_its_limit_at_some_instant(lab: Engine) -> None:
    t0 = lab.clock.now()
    book(lab, "nlp", start=HOUR, length=HOUR, cpu=1)
    with raw(lab) as execute:
        with pytest.raises(Exception, match="per-tenant"):
            insert_row(execute, "f" * 16, 1, t0 + 90 * timedelta(minutes=1), None, cpu=1)
        insert_row(execute, "9" * 16, 1, t0 + 2 * HOUR, None, cpu=1)  # back to back
    assert problems(lab) == []


def test_db_check_finds_pool_free_edited_by_hand(lab: Engine) -> None:
    book(lab, "nlp", start=HOUR, length=HOUR, cpu=2)
    with raw(lab) as execute:
        execute("UPDATE pool_free SET cpu = cpu - 1 WHERE pool_id = 1 AND cpu = 6")
    assert any("pool_free says" in p for p in problems(lab))


# ---------------------------------------------------------------- the upgrade from 0008


def test_the_upgrade_from_0008_keeps_what_every_view_shows(
    cli: Any, frozen: Any, backend: str
) -> None:
    import json

    from helpers import alembic, js, ok, out, reserve_id

    from resgate.engine import extension
    from resgate.store.database import open_database
    from resgate.store.target import resolve_target

    ok(cli, "pool", "create", "--name", "p", "--cpu", "16", "--memory", "4G", "--gpu", "4")
    for name in ("a", "b", "c", "d", "e"):
        ok(cli, "tenant", "add", "--name", name, "--priority", "5")
    held = reserve_id(cli, "a", cpu=2, gpu=2)
    open_ended = reserve_id(cli, "b", memory=100)
    lease = reserve_id(cli, "c", cpu=1, ttl="1m")
    due = reserve_id(cli, "d", cpu=1, ttl="10")
    released = reserve_id(cli, "e", gpu=1)
    out(cli, "unreserve", released)
    database = open_database(resolve_target(None), write=True)
    try:
        Engine(database, frozen).write(extension.renew, lease, 60)  # as `resgate run` does
    finally:
        database.dispose()
    frozen.advance(30)  # `due` is past its end, not yet swept

    def views() -> dict[str, Any]:
        export = json.loads(out(cli, "export"))
        del export["generated_at"]
        return {
            "status": js(cli, "status"),
            "list": js(cli, "list", "--all"),
            "table": out(cli, "list", "--all"),
            "export": export,
            "csv": out(cli, "export", "--format", "csv"),
            "pool": js(cli, "pool", "show", "p"),
        }

    before = views()
    db = os.environ["RESGATE_DB"]
    alembic(db, "downgrade", "0008")
    alembic(db, "upgrade", "head")
    after = views()
    rows = {r["id"]: dict(r) for r in after["list"]}
    # Only what the upgrade derives differs: the renewed reservation is now a lease,
    # whose planned end is its time limit (none) rather than its renewed deadline.
    for view in (before, after):
        for shape in (*view["list"], *view["export"]["reservations"], *view["export"]["history"]):
            if shape["id"] == lease:
                shape.pop("lease"), shape.pop("ends_at")
        view["csv"] = [
            line.split(",")[:14] + line.split(",")[15:] if line.startswith(lease) else line
            for line in view["csv"].splitlines()
        ]
    assert after == before
    assert out(cli, "db", "check").startswith("ok:")
    assert rows[lease]["lease"] is True and rows[lease]["ends_at"] is None
    assert rows[held]["lease"] is False and rows[held]["ends_at"] is None
    assert rows[open_ended]["starts_at"] == rows[open_ended]["created_at"]
    assert rows[due]["status"] == "expired" and rows[due]["ends_at"] == rows[due]["expires_at"]
    # The plans are back in pool_free: the pool is as full as before.
    with raw(None) as execute, pytest.raises(Exception, match="capacity"):  # type: ignore[arg-type]
        insert_row(execute, "7" * 16, 5, frozen.now(), None, gpu=3)


def test_preempt_ends_what_has_started_and_with_upcoming_cancels_bookings(lab: Engine) -> None:
    running = book(lab, "nlp", length=HOUR, cpu=2)
    booked = book(lab, "nlp", start=2 * HOUR, length=HOUR, cpu=2)
    with pytest.raises(NotFound, match="has no active reservations to preempt"):
        lab.write(evictions.preempt, "ops", "cv")
    done = lab.write(evictions.preempt, "ops", "nlp")
    assert [r.id for r in done.preempted] == [running.id]
    assert (shown(lab, running.id), shown(lab, booked.id)) == ("preempted", "upcoming")
    done = lab.write(evictions.preempt, "ops", "nlp", upcoming=True)
    assert [(r.id, r.status, r.ended_at) for r in done.preempted] == [
        (booked.id, "preempted", lab.clock.now())
    ]
    with pytest.raises(NotFound, match="has no active or upcoming reservations"):
        lab.write(evictions.preempt, "ops", "nlp", upcoming=True)
    # The booking's time is free again.
    assert book(lab, "cv", start=2 * HOUR, length=HOUR, cpu=8).status == "upcoming"
    assert problems(lab) == []
