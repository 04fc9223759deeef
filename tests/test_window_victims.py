"""Victim choice over a window (README "Booking ahead", preempting the future), as a
pure function: resgate.engine.window_victims.choose against a brute-force oracle
written here, over every subset of the candidates, minute by minute, with the full
order (1)–(5) of README "Preemption" and "freed" in resource-minutes. It uses
nothing from the module but its two dataclasses."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from resgate.engine.records import Amounts
from resgate.engine.window_victims import Booked, Room, choose

T0 = datetime(2026, 12, 4, 8, tzinfo=UTC).replace(tzinfo=None)
HORIZON = 366 * 24 * 60  # minutes: how far an open-ended window counts for waste
TOTAL = (8, 64, 4)  # cpu, memory, gpu devices 0-3


@dataclass(frozen=True)
class P:
    """A plan, in minutes from T0 (end None: open)."""

    id: str
    priority: int
    created: int
    start: int
    end: int | None
    amounts: tuple[int, int, int]
    devices: frozenset[int]

    def holds(self, t: int) -> bool:
        return self.start <= t and (self.end is None or t < self.end)

    def overlaps(self, s: int, e: int | None) -> bool:
        return (self.end is None or self.end > s) and (e is None or self.start < e)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@st.composite
def scenarios(draw):
    """Plans that fit the pool at every minute (devices never shared at once), a
    window and a request, and the requester's priority."""
    plans: list[P] = []
    for n in range(draw(st.integers(0, 7))):
        start = draw(st.integers(0, 20))
        end = draw(st.one_of(st.none(), st.integers(start + 1, 30)))
        cpu, mem = draw(st.integers(0, 4)), draw(st.sampled_from([0, 16, 32]))
        wanted = draw(st.sets(st.integers(0, 3), max_size=2))
        plan = P(f"{n:016x}", draw(st.integers(1, 6)), draw(st.integers(0, 3)), start, end,
                 (cpu, mem, len(wanted)), frozenset(wanted))  # fmt: skip
        if _fits([*plans, plan]):
            plans.append(plan)
    s = draw(st.integers(0, 25))
    e = draw(st.one_of(st.none(), st.integers(s + 1, 35)))
    need = (draw(st.integers(0, 8)), draw(st.sampled_from([0, 16, 64])), draw(st.integers(0, 4)))
    requested = draw(st.one_of(st.none(), st.sets(st.integers(0, 3), min_size=1, max_size=2)))
    if requested is not None:
        need = (need[0], need[1], len(requested))
    return plans, s, e, need, None if requested is None else tuple(sorted(requested))


def _fits(plans: list[P]) -> bool:
    for t in range(0, 40):
        held = [p for p in plans if p.holds(t)]
        for r in range(3):
            if sum(p.amounts[r] for p in held) > TOTAL[r]:
                return False
        devices = [d for p in held for d in p.devices]
        if len(devices) != len(set(devices)):
            return False
    return True


def _free(plans: list[P], t: int) -> tuple[int, ...]:
    return tuple(TOTAL[r] - sum(p.amounts[r] for p in plans if p.holds(t)) for r in range(3))


def oracle(plans, s, e, need, requested, priority):
    """The best victim set by brute force, or None."""
    candidates = [p for p in plans if p.priority < priority and p.overlaps(s, e)]
    last = e if e is not None else 40  # beyond every plan's breakpoints: nothing changes
    stop = e if e is not None else s + HORIZON

    def works(victims: tuple[P, ...]) -> bool:
        rest = [p for p in plans if p not in victims]
        for t in range(s, last):
            if any(f < n for f, n in zip(_free(rest, t), need, strict=True)):
                return False
        free = {d for d in range(4) if not any(d in p.devices and p.overlaps(s, e) for p in rest)}
        return set(requested) <= free if requested is not None else len(free) >= need[2]

    def missing(r: int) -> int:
        total = sum(max(0, need[r] - _free(plans, t)[r]) for t in range(s, last))
        if e is None:  # from `last` on, what is free no longer changes
            total += max(0, need[r] - _free(plans, last)[r]) * (stop - last)
        return total

    def freed(victims, r: int) -> int:
        return sum(
            v.amounts[r] * (min(stop, v.end if v.end is not None else stop) - max(s, v.start))
            for v in victims
        )

    def key(victims):
        waste = sum(Fraction(max(0, freed(victims, r) - missing(r)), TOTAL[r]) for r in range(3))
        newest = sorted((v.created for v in victims), reverse=True)
        return (
            max((v.priority for v in victims), default=0),
            len(victims),
            waste,
            [-c for c in newest],
            sorted(v.id for v in victims),
        )

    working = [
        combo
        for size in range(len(candidates) + 1)
        for combo in itertools.combinations(candidates, size)
        if works(combo)
    ]
    if not working:
        return None
    return sorted(v.id for v in min(working, key=key))


def booked(p: P) -> Booked:
    return Booked(p.id, p.priority, at(p.created), Amounts(*p.amounts), at(p.start),
                  None if p.end is None else at(p.end), p.devices)  # fmt: skip


def room(plans, s, e, need, requested) -> Room:
    points = sorted({s} | {t for p in plans for t in (p.start, p.end)
                           if t is not None and s < t and (e is None or t < e)})  # fmt: skip
    steps = [(at(t), Amounts(*_free(plans, t))) for t in points]
    holders = {
        d: frozenset(p.id for p in plans if d in p.devices and p.overlaps(s, e)) for d in range(4)
    }
    return Room(at(s), None if e is None else at(e), steps, Amounts(*need), Amounts(*TOTAL),
                holders, requested)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.integers(2, 7))
def test_choose_is_the_brute_force_best(scenario, priority: int):
    plans, s, e, need, requested = scenario
    candidates = [booked(p) for p in plans if p.priority < priority and p.overlaps(s, e)]
    holding = [p for p in plans if requested and p.overlaps(s, e) and p.devices & set(requested)]
    if any(p.priority >= priority for p in holding):
        return  # the engine refuses these before choosing (exit 3)
    forced = [booked(p) for p in holding]
    chosen = choose(candidates, room(plans, s, e, need, requested), forced)
    expected = oracle(plans, s, e, need, requested, priority)
    assert (None if chosen is None else sorted(v.id for v in chosen)) == expected


def test_a_booking_that_starts_inside_the_window_is_the_one_to_go():
    # Two 4-GPU bookings of equal priority: one overlaps the window for an hour, the
    # other for ten minutes; the request needs the GPUs for the last ten minutes only,
    # so evicting the second wastes less.
    long = P("a" * 16, 1, 0, 0, 60, (0, 0, 4), frozenset(range(4)))
    short = P("b" * 16, 1, 0, 60, 120, (0, 0, 4), frozenset(range(4)))
    plans = [long, short]
    chosen = choose([booked(long), booked(short)], room(plans, 50, 70, (0, 0, 4), None), ())
    assert chosen is not None and sorted(v.id for v in chosen) == [long.id, short.id]
    later = choose([booked(long), booked(short)], room(plans, 60, 70, (0, 0, 4), None), ())
    assert later is not None and [v.id for v in later] == [short.id]
