"""Finding a slot (README "Booking ahead"): `slots` and `reserve --earliest` against
tests/workers/slot_model.py, a minute-by-minute brute force that imports nothing
from resgate, on random plans — bounded and open-ended holders, GPUs chosen and
pinned, the tenant's caps over two pools, the per-tenant limit — on both databases."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import slot_model
from helpers import STANDARD_LIBRARY, Cli, Engine, imported_packages, js, ok, out
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from slot_model import Ask, Found, Plan, World
from slot_model import Refused as ModelRefused

from resgate.clock import FixedClock, beside, local
from resgate.engine import extension, pools, reservations, slots, tenants
from resgate.engine.policies import Policy
from resgate.engine.records import Amounts, Limits
from resgate.engine.reservations import ReserveRequest
from resgate.errors import InsufficientResources, ResgateError

pytestmark = pytest.mark.usefixtures("backend")

MINUTE = timedelta(minutes=1)
At = Callable[[float], str]
BOX_CPU, BOX_GPUS, OTHER_CPU, OTHER_GPUS = 8, 4, 8, 4
NAMES = itertools.count()

booking = st.tuples(
    st.sampled_from(["a", "b", "c"]),  # tenant
    st.sampled_from(["box", "box", "other"]),
    st.integers(0, 24).map(lambda n: n * 10),  # start, minutes from the first instant
    st.sampled_from([None, 10, 30, 60, 90, 180]),  # length
    st.integers(0, 4),  # cpu
    st.integers(0, 3),  # gpu
    st.booleans(),  # pin the highest ids instead of taking the lowest
)
ask = st.fixed_dictionaries(
    {
        "cpu": st.integers(0, 5),
        "gpu": st.integers(0, 4),
        "pinned": st.none() | st.sets(st.integers(0, BOX_GPUS - 1), min_size=1, max_size=3),
        "length": st.sampled_from([10, 30, 60, 120]),
        "after": st.sampled_from([0, 0, 5, 30, 100]),
        "count": st.integers(1, 4),
    }
)
world = st.fixed_dictionaries(
    {
        "plans": st.lists(booking, max_size=14),
        "per_tenant": st.sampled_from([None, 1, 2]),
        "cpu_cap": st.sampled_from([None, 4, 6]),
        "gpu_cap": st.sampled_from([None, 2, 3]),
        "advance": st.sampled_from([0, 0, 15, 45]),  # the clock moves on after booking
    }
)


def build(engine: Engine, spec: dict) -> tuple[dict[str, str], datetime, World]:
    """Fresh pools and tenants (named apart from earlier examples on the same
    database) with the plans the engine accepted, and the model's view of them."""
    n = next(NAMES)
    names = {k: f"{k}{n}" for k in ("a", "b", "c", "box", "other")}
    engine.write(
        pools.create_pool,
        names["box"],
        Amounts(BOX_CPU, 0, BOX_GPUS),
        policy=Policy(per_tenant=spec["per_tenant"]),
    )
    engine.write(
        pools.create_pool, names["other"], Amounts(OTHER_CPU, 0, OTHER_GPUS), policy=Policy(None)
    )
    caps = (spec["cpu_cap"], spec["gpu_cap"])
    for tenant in ("a", "b", "c"):
        limits = Limits(cpu=caps[0], gpu=caps[1]) if tenant == "a" else None
        engine.write(tenants.add_tenant, names[tenant], 5, limits)
    base = engine.clock.now()
    plans = []
    for tenant, pool, start, length, cpu, gpu, pin in spec["plans"]:
        if cpu == 0 and gpu == 0:
            cpu = 1
        total = BOX_GPUS if pool == "box" else OTHER_GPUS
        pinned = tuple(range(total - gpu, total)) if pin and gpu else None
        request = ReserveRequest(
            names[tenant],
            names[pool],
            Amounts(cpu, 0, gpu),
            gpu_ids=pinned,
            start=None if start == 0 else base + start * MINUTE,
            duration=None if length is None else length * 60,
        )
        try:
            made = engine.write(reservations.reserve, request)
        except ResgateError:
            continue
        end = None if length is None else start + length
        plans.append(Plan(made.id, tenant, pool, start, end, cpu, gpu, frozenset(made.gpu_ids)))
    engine.clock.advance(spec["advance"] * 60)
    caps_of = {"a": caps}
    return names, base, World(BOX_CPU, BOX_GPUS, spec["per_tenant"], caps_of, tuple(plans))


def minutes(base: datetime, at: datetime | None) -> int | None:
    if at is None:
        return None
    whole, rest = divmod(at - base, MINUTE)
    assert rest == timedelta(0), at
    return whole


def asked(spec: dict, asking: dict, length: int | None) -> Ask:
    pinned = None if asking["pinned"] is None else tuple(sorted(asking["pinned"]))
    gpu = asking["gpu"] if pinned is None else len(pinned)
    cpu = asking["cpu"] or (0 if gpu else 1)
    after = spec["advance"] + asking["after"]
    return Ask("a", "box", cpu, gpu, pinned, length, after, asking["count"])


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(spec=world, asking=ask)
def test_slots_are_what_brute_force_finds(engine: Engine, spec: dict, asking: dict) -> None:
    names, base, model = build(engine, spec)
    question = asked(spec, asking, asking["length"])
    expected = model.slots(question)
    request = slots.SlotRequest(
        names["a"],
        names["box"],
        Amounts(question.cpu, 0, question.gpu),
        asking["length"] * 60,
        question.pinned,
        after=None if asking["after"] == 0 else base + question.after * MINUTE,
        count=question.count,
    )
    try:
        found = engine.read(slots.find_slots, request).slots
    except InsufficientResources:
        assert expected == []
        return
    by_id = {p.id: p for p in model.plans}
    got = []
    for slot in found:
        freed = frozenset() if slot.freed_by is None else frozenset({slot.freed_by[0]})
        got.append(
            Found(minutes(base, slot.start), minutes(base, slot.free_until), slot.gpu_ids, freed)
        )
        if slot.freed_by is not None:  # it names its tenant, and ends where the slot starts
            assert names[by_id[slot.freed_by[0]].tenant] == slot.freed_by[1]
    # What frees a slot: one of the plans ending at its start, of the pool or the tenant.
    assert [(g.start, g.free_until, g.devices) for g in got] == [
        (e.start, e.free_until, e.devices) for e in expected
    ]
    for g, e in zip(got, expected, strict=True):
        assert g.freed_by <= e.freed_by and bool(g.freed_by) == bool(e.freed_by)
        plan = by_id.get(next(iter(g.freed_by), ""))
        assert plan is None or plan.pool == "box" or plan.tenant == "a"


@SETTINGS
@given(spec=world, asking=ask, open_ended=st.booleans())
def test_earliest_books_the_first_slot(
    engine: Engine, spec: dict, asking: dict, open_ended: bool
) -> None:
    names, base, model = build(engine, spec)
    length = None if open_ended else asking["length"]
    question = asked(spec, asking, length)
    expected = model.slots(Ask(**{**question.__dict__, "count": 1}))
    request = ReserveRequest(
        names["a"],
        names["box"],
        Amounts(question.cpu, 0, question.gpu),
        gpu_ids=question.pinned,
        duration=None if length is None else length * 60,
        earliest=True,
        after=None if asking["after"] == 0 else base + question.after * MINUTE,
    )
    try:  # booked and rolled back: the next example asks on the same plans' database
        made = engine.database.run(
            lambda tx: reservations.reserve(tx, request),
            write=True,
            clock=engine.clock,
            commit=False,
        )
    except InsufficientResources:
        assert expected == []
        return
    assert expected, made
    first = expected[0]
    assert minutes(base, made.starts_at) == first.start
    assert made.gpu_ids == first.devices
    end = None if length is None else first.start + length
    assert minutes(base, made.ends_at) == end


@SETTINGS
@given(
    spec=world,
    pick=st.integers(0, 100),
    by=st.sampled_from([10, 30, 60, 240, None]),  # None: open-ended
    partial=st.booleans(),
)
def test_extend_to_the_latest_possible_end(
    engine: Engine, spec: dict, pick: int, by: int | None, partial: bool
) -> None:
    _, base, model = build(engine, spec)
    now = spec["advance"]
    mine = [p for p in model.plans if p.pool == "box" and p.end is not None and p.end > now]
    if not mine:
        return
    plan = mine[pick % len(mine)]
    change = extension.Extension(ttl=0, partial=partial)
    if by is not None:
        change = extension.Extension(by=by * 60, partial=partial)
    try:
        expected: Any = ("ok", model.extended(plan, None if by is None else plan.end + by, partial))
    except ModelRefused as refused:
        expected = ("exit", refused.code)
    try:  # rolled back, as in test_earliest_books_the_first_slot
        done = engine.database.run(
            lambda tx: extension.extend_and_report(tx, plan.id, change),
            write=True,
            clock=engine.clock,
            commit=False,
        )
        got: Any = ("ok", minutes(base, done.reservation.expires_at))
        assert done.partly == (got[1] != (None if by is None else plan.end + by))
    except ResgateError as exc:
        got = ("exit", exc.exit_code)
        assert "cannot extend to" in exc.message, exc.message
        # With --partial, refused only when there is no room at all.
        assert not partial or exc.message.endswith("there is no room at all"), exc.message
    event(f"extend: {got[0]} {got[1] if got[0] == 'exit' else ''} partial={partial}")
    assert got == expected, plan


def test_the_slot_model_imports_nothing_from_resgate() -> None:
    assert imported_packages(slot_model) <= STANDARD_LIBRARY


# ---------------------------------------------------------------- the commands


@pytest.fixture
def lab(cli: Cli, frozen: FixedClock) -> Cli:
    """Pool gpu-box (8 GPUs): nlp holds 0-5 for 2 h from now; cv has 0-3 booked
    from +3 h to +4 h."""
    ok(cli, "pool", "create", "--name", "gpu-box", "--cpu", "32", "--memory", "128G", "--gpu", "8")
    ok(cli, "pool", "update", "gpu-box", "--per-tenant", "unlimited")
    ok(cli, "tenant", "add", "--name", "nlp", "--priority", "5")
    ok(cli, "tenant", "add", "--name", "cv", "--priority", "3")
    ok(cli, "reserve", "-t", "nlp", "--gpu", "6", "--duration", "2h")
    ok(cli, "reserve", "-t", "cv", "--gpu", "4", "--start", "+3h", "--duration", "1h")
    return cli


@pytest.fixture
def at(frozen: FixedClock) -> Callable[[float], str]:
    """The instant `hours` from the frozen now, as JSON shows it."""
    start = frozen.now()
    return lambda hours: (start + timedelta(hours=hours)).isoformat(timespec="microseconds") + "Z"


def shown(frozen: FixedClock, hours: float) -> str:
    return local(frozen.now() + timedelta(hours=hours))


def near(frozen: FixedClock, hours: float) -> str:
    """As a message shows an instant beside now: HH:MM today, else with the date."""
    return beside(frozen.now() + timedelta(hours=hours), frozen.now())


def test_extend_names_the_gpus_booked_in_the_way(cli: Cli, frozen: FixedClock) -> None:
    ok(cli, "pool", "create", "--name", "gpu-box", "--cpu", "32", "--gpu", "8",
       "--per-tenant", "unlimited")  # fmt: skip
    ok(cli, "tenant", "add", "--name", "nlp")
    ok(cli, "tenant", "add", "--name", "vision")
    nlp = js(cli, "reserve", "-t", "nlp", "--gpu", "4", "--duration", "2h")["id"]
    vision = js(cli, "reserve", "-t", "vision", "--gpu", "4", "--start", "+3h", "--duration",
                "1h", "--gpu-ids", "0-3")  # fmt: skip
    refused = cli("extend", nlp, "--by", "3h")
    assert refused.code == 3
    assert refused.stderr == (
        f"Error: cannot extend to {near(frozen, 5)}: gpu 0-3 are booked by 'vision' from "
        f"{near(frozen, 3)} (reservation {vision['id'][:8]}…); the latest possible end is "
        f"{near(frozen, 3)}\n"
    )


def test_slots_in_json_and_text(lab: Cli, at: At, frozen: FixedClock) -> None:
    nlp = js(lab, "list", "-t", "nlp")[0]["id"]
    found = js(lab, "slots", "-t", "cv", "--gpu", "4", "--duration", "3h")
    # Now only 6-7 are free; at +2 h nlp's end frees 0-5, but cv's own booking
    # holds 0-3 from +3 h: 4-7 stay free for ever.
    assert found == [
        {
            "start": at(2),
            "free_until": None,
            "gpu_ids": [4, 5, 6, 7],
            "because": {"reservation": nlp, "tenant": "nlp"},
        }
    ]
    two = js(lab, "slots", "-t", "cv", "--gpu", "2", "--duration", "1h", "--count", "5")
    assert [(s["start"], s["free_until"], s["gpu_ids"]) for s in two] == [(at(0), None, [6, 7])]
    text = out(lab, "slots", "-t", "cv", "--gpu", "6", "--duration", "1h")
    lines = text.splitlines()
    assert lines[0].split() == ["START", "FREE", "UNTIL", "GPUS", "FREED", "BY"]
    start, until = shown(frozen, 2), shown(frozen, 3)
    assert lines[2].split() == [
        *start[:16].split(),
        until[11:16],
        "0-5",
        "reservation",
        f"{nlp[:8]}…",
        "(nlp)",
        "ends",
        start[11:16],
    ]
    assert len(lines) == 4  # and the one from +4 h, when cv's booking ends
    assert lines[3].split()[2:4] == ["open", "0-5"]


def test_slots_refusals(lab: Cli) -> None:
    def refused(code: int, *args: str) -> str:
        result = lab(*args)
        assert (result.code, result.stdout) == (code, ""), result
        assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
        return result.stderr

    assert "no room in 'gpu-box' for gpu=9" in refused(
        3, "slots", "-t", "cv", "--gpu", "9", "--duration", "1h"
    )
    assert "--duration" in refused(2, "slots", "-t", "cv", "--gpu", "1")
    assert "did you mean +2h?" in refused(
        2, "slots", "-t", "cv", "--gpu", "1", "--duration", "1h", "--after", "2h"
    )
    refused(2, "slots", "-t", "cv", "--gpu", "1", "--duration", "0")
    refused(2, "slots", "-t", "cv", "--gpu", "1", "--duration", "1h", "--count", "0")
    refused(2, "slots", "-t", "cv", "--gpu", "1", "--duration", "1h", "--after", "+400d")
    refused(1, "slots", "-t", "cv", "-p", "gpubox", "--gpu", "1", "--duration", "1h")
    refused(2, "reserve", "-t", "cv", "--gpu", "1", "--earliest", "--start", "+1h")
    refused(2, "reserve", "-t", "cv", "--gpu", "1", "--earliest", "--preempt")
    refused(2, "reserve", "-t", "cv", "--gpu", "1", "--after", "+1h")
    refused(3, "reserve", "-t", "cv", "--gpu", "9", "--earliest", "--duration", "1h")
    assert len(js(lab, "list")) == 2  # nothing booked by any of them


def test_reserve_earliest(lab: Cli, at: At) -> None:
    made = js(lab, "reserve", "-t", "cv", "--gpu", "4", "--duration", "3h", "--earliest")
    assert (made["starts_at"], made["ends_at"], made["gpu_ids"]) == (at(2), at(5), [4, 5, 6, 7])
    assert made["status"] == "upcoming"
    # From +5 h on: the first window after it that fits.
    later = js(lab, "reserve", "-t", "nlp", "--gpu", "8", "--ttl", "30m", "--earliest")
    assert (later["starts_at"], later["ends_at"]) == (at(5), at(5.5))
    after = js(lab, "reserve", "-t", "nlp", "--gpu", "1", "--earliest", "--after", "+6h")
    assert (after["starts_at"], after["ends_at"]) == (at(6), None)  # open-ended


def test_free_at_an_instant_ahead(lab: Cli, at: At, frozen: FixedClock) -> None:
    now = js(lab, "free")[0]
    assert (now["free"]["gpu"], now["gpu_ids"], now["until"]) == (2, [6, 7], None)
    then = js(lab, "free", "--at", "+3h30m")[0]
    assert (then["free"]["gpu"], then["gpu_ids"], then["until"]) == (4, [4, 5, 6, 7], None)
    before = js(lab, "free", "--at", "+2h30m")[0]
    assert (before["free"]["gpu"], before["until"]) == (8, at(3))
    row = out(lab, "free", "--at", "+2h30m").splitlines()[2].split()
    assert row == ["gpu-box", "32", "128G", "8", "0-7", shown(frozen, 3)[11:16]]
    result = lab("free", "--at", "-1h")
    assert result.code == 2 and "past" in result.stderr


def test_extend_partial(lab: Cli, at: At, frozen: FixedClock) -> None:
    nlp = js(lab, "list", "-t", "nlp")[0]["id"]
    refused = lab("extend", nlp, "--by", "2h")
    assert refused.code == 3 and refused.stdout == ""
    assert refused.stderr == (
        f"Error: cannot extend to {near(frozen, 4)}: only cpu=32 mem=131072 gpu=4 are "
        f"free from {near(frozen, 3)}; the latest possible end is {near(frozen, 3)}\n"
    )
    line = out(lab, "extend", nlp, "--by", "2h", "--partial")
    assert line == (
        f"Reservation '{nlp}' now expires {shown(frozen, 3)} (in 3h0m; 1h later than before; "
        f"the latest possible end: {shown(frozen, 4)} does not fit)\n"
    )
    assert js(lab, "list", "-t", "nlp")[0]["expires_at"] == at(3)
    again = lab("extend", nlp, "--by", "1h", "--partial")
    assert again.code == 3 and again.stderr.endswith("there is no room at all\n")
    assert js(lab, "list", "-t", "nlp")[0]["expires_at"] == at(3)
