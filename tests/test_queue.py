"""Waiting in line (README "Waiting in line"), through the engine API with an
injected clock on both databases: the order of admission, the head's shadow and
backfilling, a plain reserve that may not take what the head was promised, tickets
that wait for their own tenant without blocking anyone, and tickets that time out or
whose waiter is gone. tests/test_queue_processes.py drives `reserve --wait` itself."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Engine

from resgate.engine import pools, queue, release, reservations, tenants
from resgate.engine.queries import reservation_info
from resgate.engine.records import Amounts, Ticket
from resgate.engine.reservations import ReserveRequest
from resgate.engine.sweep import sweep
from resgate.errors import InsufficientResources

pytestmark = pytest.mark.usefixtures("backend")

HOUR = 3600
# A waiter that is alive for as long as the test runs: nobody, so never abandoned.
NOBODY: str | None = None


@pytest.fixture
def lab(engine: Engine) -> Engine:
    engine.write(pools.create_pool, "box", Amounts(8, 0, 4), policy=_unlimited())
    for name, priority in (("nlp", 5), ("cv", 5), ("ops", 7)):
        engine.write(tenants.add_tenant, name, priority)
    return engine


def _unlimited() -> Any:
    from resgate.engine.policies import Policy

    return Policy(per_tenant=None)


def hold(lab: Engine, tenant: str, *, cpu: int = 0, gpu: int = 0, ttl: int | None = None) -> str:
    request = ReserveRequest(tenant, "box", Amounts(cpu, 0, gpu), ttl=ttl)
    return str(lab.write(reservations.reserve, request).id)


def wait(lab: Engine, tenant: str, *, cpu: int = 0, gpu: int = 0, hours: float = 1) -> Ticket:
    request = ReserveRequest(tenant, "box", Amounts(cpu, 0, gpu), duration=int(hours * HOUR))
    ticket: Ticket = lab.write(queue.join, request, NOBODY)
    return ticket


def status(lab: Engine, ticket: Ticket) -> Ticket:
    shown: Ticket = lab.read(queue.standing, ticket.id)
    return shown


def test_a_release_lets_the_line_in_by_priority_then_age(lab: Engine) -> None:
    holder = hold(lab, "nlp", gpu=4)
    first = wait(lab, "cv", gpu=4)
    higher = wait(lab, "ops", gpu=4)
    assert [t.id for t in lab.read(queue.line)] == [higher.id, first.id]
    assert status(lab, higher).position == 1 and status(lab, first).position == 2
    lab.write(release.unreserve, holder)
    admitted = status(lab, higher)
    assert admitted.status == "admitted" and admitted.reservation_id is not None
    assert status(lab, first).status == "waiting"
    # Its reservation starts now, for its owner.
    info = lab.read(reservation_info, admitted.reservation_id)
    assert (info.tenant, info.status, info.gpu_ids) == ("ops", "active", (0, 1, 2, 3))


def test_a_ticket_that_fits_when_it_joins_is_let_in_at_once(lab: Engine) -> None:
    hold(lab, "nlp", gpu=2)
    ticket = wait(lab, "cv", gpu=2)
    assert status(lab, ticket).status == "admitted"


def test_the_head_has_an_eta_and_a_small_job_that_ends_in_time_goes_ahead(
    lab: Engine,
) -> None:
    soon = hold(lab, "nlp", gpu=2, ttl=HOUR)  # gives 2 GPUs back in an hour
    hold(lab, "cv", gpu=1, ttl=2 * HOUR)
    head = wait(lab, "ops", gpu=3)  # fits in an hour: the head's shadow
    assert status(lab, head).eta == lab.read(reservation_info, soon).expires_at
    late = wait(lab, "nlp", gpu=1, hours=2)  # would still hold a GPU at the shadow
    short = wait(lab, "cv", gpu=1, hours=0.5)  # ends before the shadow
    assert status(lab, short).status == "admitted"
    assert status(lab, late).status == "waiting"
    assert status(lab, head).status == "waiting"
    lab.clock.advance(HOUR)
    lab.write(queue.heartbeat, head.id)  # nobody else writes: the clock made room
    assert status(lab, head).status == "admitted"


def test_a_plain_reserve_may_not_take_what_the_head_was_promised(lab: Engine) -> None:
    hold(lab, "nlp", gpu=2, ttl=HOUR)
    wait(lab, "cv", gpu=4)  # the head: all four GPUs in an hour
    with pytest.raises(InsufficientResources, match="queued requests are ahead"):
        hold(lab, "nlp", gpu=1, ttl=2 * HOUR)
    with pytest.raises(InsufficientResources, match="queued requests are ahead"):
        hold(lab, "cv", gpu=1)  # open-ended: it would never give it back
    hold(lab, "nlp", gpu=1, ttl=HOUR // 2)  # done before the head's turn
    hold(lab, "ops", gpu=1, ttl=2 * HOUR)  # outranks the head


def test_a_ticket_held_back_by_its_own_quota_blocks_nobody(lab: Engine) -> None:
    lab.write(tenants.update_tenant, "cv", caps={"gpu": 1})
    hold(lab, "cv", gpu=1)
    hold(lab, "nlp", gpu=2)
    capped = wait(lab, "cv", gpu=1)  # room in the pool, none under cv's cap
    assert status(lab, capped).reason == "quota"
    behind = wait(lab, "nlp", gpu=1)
    assert status(lab, behind).status == "admitted"
    assert status(lab, capped).status == "waiting"


def test_a_timed_out_or_abandoned_ticket_ends_with_nothing_reserved(lab: Engine) -> None:
    hold(lab, "nlp", gpu=4)
    request = ReserveRequest("cv", "box", Amounts(0, 0, 4), duration=HOUR)
    deadline = lab.clock.now() + _hours(0.5)
    timed = lab.write(queue.join, request, NOBODY, deadline)
    gone = lab.write(queue.join, request, "999999999@" + _host() + ":1")
    lab.clock.advance(HOUR)
    lab.write(queue.heartbeat, timed.id)
    assert (status(lab, timed).status, status(lab, timed).reason) == ("timed_out", "timeout")
    assert status(lab, gone).status == "abandoned"
    assert lab.read(queue.line) == []


def test_what_can_never_be_admitted_is_refused_at_once(lab: Engine) -> None:
    request = ReserveRequest("cv", "box", Amounts(0, 0, 5), duration=HOUR)
    with pytest.raises(InsufficientResources, match="can never be admitted"):
        lab.write(queue.join, request, NOBODY)
    assert lab.read(queue.line) == []


def test_a_ticket_is_withdrawn_by_prefix_and_stays_as_it_ended(lab: Engine) -> None:
    hold(lab, "nlp", gpu=4)
    ticket = wait(lab, "cv", gpu=4)
    ended = lab.write(queue.leave, ticket.id[:6], "cancelled", "withdrawn")
    assert (ended.status, ended.reason) == ("cancelled", "withdrawn")
    with pytest.raises(InsufficientResources, match="available"):
        hold(lab, "cv", gpu=1)  # the pool is full: refused as ever
    assert lab.read(queue.line) == []


def _hours(hours: float) -> Any:
    from datetime import timedelta

    return timedelta(hours=hours)


def _host() -> str:
    import socket

    return socket.gethostname()


def test_a_deleted_pool_or_removed_tenant_ends_its_tickets(lab: Engine) -> None:
    holder = hold(lab, "nlp", gpu=4)
    gone = wait(lab, "cv", gpu=4)
    lab.write(tenants.remove_tenant, "cv")
    lab.write(release.unreserve, holder)  # the next write: the ticket ends, nobody gets in
    assert (status(lab, gone).status, status(lab, gone).reason) == (
        "cancelled",
        "the tenant was removed",
    )
    hold(lab, "nlp", gpu=4)
    waiting = wait(lab, "ops", gpu=1)
    lab.write(pools.delete_pool, "box", force=True)
    assert status(lab, waiting).status == "cancelled"


def test_a_waiter_elsewhere_is_gone_once_its_heartbeat_lapses(lab: Engine, backend: str) -> None:
    """A waiter on another host: PostgreSQL tells it is gone by its heartbeat (30 s);
    SQLite is one host's database, where only a pid tells, so it keeps waiting."""
    hold(lab, "nlp", gpu=4)
    request = ReserveRequest("cv", "box", Amounts(0, 0, 4), duration=HOUR)
    elsewhere = lab.write(queue.join, request, "4242@another-host:1")
    lab.clock.advance(20)
    lab.write(queue.heartbeat, elsewhere.id)  # alive at 20 s
    lab.clock.advance(25)
    lab.write(sweep)
    assert status(lab, elsewhere).status == "waiting"  # 25 s since its heartbeat
    lab.clock.advance(10)
    lab.write(sweep)
    expected = "abandoned" if backend == "postgresql" else "waiting"
    assert status(lab, elsewhere).status == expected


def test_an_extension_may_not_take_what_the_head_was_promised(lab: Engine) -> None:
    from resgate.engine import extension

    soon = hold(lab, "nlp", gpu=2, ttl=HOUR)
    wait(lab, "cv", gpu=4)  # the head: all four GPUs in an hour
    longer = extension.Extension(by=HOUR)
    with pytest.raises(InsufficientResources, match="queued requests are ahead"):
        lab.write(extension.extend_and_report, soon, longer)
    shorter = extension.Extension(by=-HOUR // 2)
    lab.write(extension.extend_and_report, soon, shorter)  # giving time back is fine


def test_a_preempting_ticket_evicts_instead_of_waiting(lab: Engine) -> None:
    held = hold(lab, "nlp", gpu=4)
    strong = ReserveRequest("ops", "box", Amounts(0, 0, 4), duration=HOUR, preempt=True)
    ticket = lab.write(queue.join, strong, NOBODY)
    assert status(lab, ticket).status == "admitted"
    assert lab.read(reservation_info, held).status == "preempted"
    # Nobody below ops holds anything now: a second one waits.
    again = lab.write(queue.join, strong, NOBODY)
    assert status(lab, again).status == "waiting"
