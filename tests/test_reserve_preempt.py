"""`reserve --preempt` through the engine (README "Preemption"): what is evicted, the
reason kept on each victim, and what is never evicted."""

from __future__ import annotations

import pytest
from helpers import reserve

from resgate.engine import listing, pools, tenants
from resgate.engine.records import Amounts, Limits
from resgate.errors import InsufficientResources, Refused

pytestmark = pytest.mark.usefixtures("backend")


def statuses(engine):
    rows = engine.read(listing.list_reservations, include_ended=True)
    return {r.id: (r.status, r.preempted_by, r.preempted_for) for r in rows}


@pytest.fixture
def full_box(engine):
    """8 GPUs held 1, 1, 1, 4 by equal low-priority tenants, one more by a peer."""
    engine.write(pools.create_pool, "box", Amounts(8, 0, 8))
    for name in ("a", "b", "c", "d"):
        engine.write(tenants.add_tenant, name, 2)
    engine.write(tenants.add_tenant, "peer", 7)
    engine.write(tenants.add_tenant, "boss", 7, Limits(gpu=4))
    held = {
        name: reserve(engine, name, "box", gpu=n).reservation.id
        for name, n in (("a", 1), ("b", 1), ("c", 1), ("d", 4))
    }
    reserve(engine, "peer", "box", gpu=1)
    return engine, held


def test_takes_only_what_is_needed_and_keeps_the_reason(full_box):
    engine, held = full_box
    before = statuses(engine)
    result = reserve(engine, "boss", "box", gpu=4, preempt=True)
    new = result.reservation.id
    assert [(v.reservation.id, v.priority) for v in result.preempted] == [(held["d"], 2)]
    after = statuses(engine)
    assert after[held["d"]] == ("preempted", "boss", new)
    assert all(after[rid] == before[rid] for rid in (held["a"], held["b"], held["c"]))
    assert result.reservation.gpu_ids == (3, 4, 5, 6)


def test_not_enough_even_with_every_candidate(full_box):
    engine, _ = full_box
    engine.write(tenants.update_tenant, "boss", caps={"gpu": None})
    before = statuses(engine)
    with pytest.raises(InsufficientResources) as excinfo:
        reserve(engine, "boss", "box", gpu=8, cpu=9, preempt=True)  # peer's GPU cannot go
    assert str(excinfo.value) == (
        "insufficient resources in 'box' even after preempting every lower-priority "
        "reservation: short cpu=1 mem=0 gpu=1"
    )
    assert statuses(engine) == before  # nothing evicted


def test_never_evicts_for_a_request_over_quota(full_box):
    engine, _ = full_box
    before = statuses(engine)
    with pytest.raises(Refused, match="quota exceeded for tenant 'boss': gpu 0 held"):
        reserve(engine, "boss", "box", gpu=5, preempt=True)
    assert statuses(engine) == before


def test_fits_without_evicting(full_box):
    engine, _ = full_box
    result = reserve(engine, "boss", "box", cpu=8, preempt=True)
    assert result.preempted == []
