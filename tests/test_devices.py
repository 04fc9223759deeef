"""GPU devices (README "GPU devices"): pools name their ids, reservations hold specific ones,
the database refuses a device held twice, and every end frees them."""

from __future__ import annotations

import json
import sqlite3

import pytest
from helpers import reserve
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from resgate.engine import evictions, listing, pools, release, tenants
from resgate.engine.records import Amounts
from resgate.engine.sweep import sweep
from resgate.errors import InsufficientResources, InvalidInput, NotFound, Refused

pytestmark = pytest.mark.usefixtures("backend")


def devices(engine, pool="box"):
    return engine.read(pools.show_pool, pool).devices


@pytest.fixture
def box(engine):
    engine.write(pools.create_pool, "box", Amounts(0, 0, 8))
    engine.write(tenants.add_tenant, "lo", 2)
    engine.write(tenants.add_tenant, "mid", 5)
    engine.write(tenants.add_tenant, "hi", 9)
    return engine


def test_default_ids_and_lowest_free(box):
    assert [d for d, _ in devices(box)] == list(range(8))
    a = reserve(box, "lo", "box", gpu=2).reservation
    b = reserve(box, "mid", "box", gpu=3).reservation
    assert (a.gpu_ids, b.gpu_ids) == ((0, 1), (2, 3, 4))
    box.write(release.unreserve, a.id)
    c = reserve(box, "hi", "box", gpu=3).reservation
    assert c.gpu_ids == (0, 1, 5)  # the lowest free ids
    held = dict(devices(box))
    assert held[0] == c.id and held[2] == b.id and held[7] is None
    # History keeps the ids a reservation held.
    listed = {r.id: r.gpu_ids for r in box.read(listing.list_reservations, include_ended=True)}
    assert listed[a.id] == (0, 1)


def test_explicit_ids(engine):
    engine.write(pools.create_pool, "box", Amounts(4, 0, 0), [0, 1, 4, 5, 6, 7])
    engine.write(tenants.add_tenant, "t", 5)
    engine.write(tenants.add_tenant, "u", 5)
    assert engine.read(pools.show_pool, "box").total.gpu == 6
    with pytest.raises(InvalidInput, match=r"gpu 3 and gpu_ids name 2 GPU\(s\)"):
        engine.write(pools.create_pool, "bad", Amounts(0, 0, 3), [0, 1])
    got = reserve(engine, "t", "box", ids=[4, 6]).reservation
    assert got.gpu_ids == (4, 6) and got.amounts.gpu == 2
    with pytest.raises(NotFound, match="pool 'box' has no GPU 2"):
        reserve(engine, "u", "box", ids=[2])
    with pytest.raises(InsufficientResources, match="GPU 6 is held"):
        reserve(engine, "u", "box", ids=[5, 6])


def test_every_end_frees_devices(box):
    a = reserve(box, "lo", "box", gpu=2).reservation
    box.write(release.unreserve, a.id)
    b = reserve(box, "lo", "box", gpu=2, ttl=10).reservation
    assert b.gpu_ids == (0, 1)
    box.clock.advance(10)
    # Due but not swept: shown free already; the sweep frees the rows.
    assert dict(devices(box))[0] is None
    assert box.write(sweep) == [b.id]
    c = reserve(box, "lo", "box", gpu=8).reservation
    box.write(evictions.preempt, "hi", "lo")
    box.clock.advance(1)
    d = reserve(box, "mid", "box", gpu=8).reservation
    box.write(pools.delete_pool, "box", force=True)
    history = box.read(listing.list_reservations, include_ended=True, pool="box")
    assert [r.status for r in history] == ["released", "expired", "preempted", "released"]
    assert {r.id for r in history} == {a.id, b.id, c.id, d.id}

    def active_rows(tx):
        return tx.session.execute(
            text("SELECT count(*) FROM reservation_devices WHERE active = :on"), {"on": True}
        ).scalar_one()

    assert box.read(active_rows) == 0


def test_preempt_by_id_and_for_the_rest(box):
    lo = reserve(box, "lo", "box", gpu=4).reservation  # 0-3
    mid = reserve(box, "mid", "box", gpu=4).reservation  # 4-7
    # Asking for GPU 5 evicts its holder, even though 'lo' ranks lower.
    result = reserve(box, "hi", "box", ids=[5], preempt=True)
    assert [v.reservation.id for v in result.preempted] == [mid.id]
    assert result.reservation.gpu_ids == (5,)
    box.write(tenants.add_tenant, "top", 10)
    # A holder that does not rank below the requester: exit 3.
    with pytest.raises(InsufficientResources, match="does not outrank"):
        reserve(box, "mid", "box", ids=[5], preempt=True)
    # Ids plus more than is free: the holders go, README "Preemption" picks the rest.
    result = reserve(box, "top", "box", gpu=6, preempt=True)
    assert {v.reservation.id for v in result.preempted} == {lo.id}
    assert result.reservation.amounts.gpu == 6
    taken = set(result.reservation.gpu_ids)
    assert len(taken) == 6 and 5 not in taken  # 5 is still hi's


def test_resize_devices(box):
    r = reserve(box, "lo", "box", gpu=2).reservation  # holds 0, 1
    grown = box.write(pools.resize_pool, "box", gpu=10)
    assert grown.total.gpu == 10
    assert [d for d, _ in devices(box)] == list(range(10))
    box.write(pools.resize_pool, "box", gpu=3)  # drops the highest free ids
    assert [d for d, _ in devices(box)] == [0, 1, 2]
    with pytest.raises(Refused):
        box.write(pools.resize_pool, "box", gpu=1)  # below what is held
    with pytest.raises(Refused, match="GPU 1 is held"):
        box.write(pools.resize_pool, "box", gpu_ids=[0, 2, 3])
    box.write(pools.resize_pool, "box", gpu_ids=[0, 1, 9])
    assert [d for d, _ in devices(box)] == [0, 1, 9]
    box.write(release.unreserve, r.id)
    assert reserve(box, "mid", "box", gpu=3).reservation.gpu_ids == (0, 1, 9)


def test_database_refuses_a_device_held_twice(box, backend, db_path):
    a = reserve(box, "lo", "box", gpu=2).reservation
    b = reserve(box, "mid", "box", gpu=1).reservation
    statement = (
        "INSERT INTO reservation_devices (reservation_id, device, pool_id, active) "
        f"VALUES ('{b.id}', 1, 1, {'1' if backend == 'sqlite' else 'true'})"
    )
    if backend == "sqlite":
        connection = sqlite3.connect(db_path)
        with pytest.raises(sqlite3.IntegrityError):
            connection.execute(statement)
        connection.close()
    else:
        with pytest.raises(IntegrityError), box.database.engine.connect() as conn:
            conn.execute(text(statement))
    assert dict(devices(box))[1] == a.id


def test_cli_shows_ids(cli):
    assert cli("pool", "create", "--name", "box", "--gpu-ids", "0,1,4-7").code == 0
    assert cli("pool", "create", "--name", "bad", "--gpu", "3", "--gpu-ids", "0-1").code == 2
    assert cli("pool", "create", "--name", "bad", "--gpu-ids", "3-1").code == 2
    assert cli("tenant", "add", "--name", "t").code == 0
    made = json.loads(
        cli("reserve", "--tenant", "t", "--pool", "box", "--gpu-ids", "4,5", "--json").stdout
    )
    assert made["gpu_ids"] == [4, 5] and made["gpu"] == 2
    shown = json.loads(cli("pool", "show", "--name", "box", "--json").stdout)
    assert shown["devices"][2] == {"id": 4, "reservation": made["id"]}
    assert shown["devices"][0] == {"id": 0, "reservation": None}
    listed = cli("list").stdout
    assert "  2  4-5  " in listed  # GPU, then DEVICES as ranges
    csv_text = cli("export", "--format", "csv").stdout.splitlines()
    assert csv_text[0].split(",")[12] == "gpu_ids" and csv_text[1].split(",")[12] == "4 5"
    assert cli("tenant", "add", "--name", "u").code == 0
    missing = cli("reserve", "--tenant", "u", "--pool", "box", "--gpu-ids", "2")
    assert (missing.code, missing.stderr) == (1, "Error: pool 'box' has no GPU 2\n")
