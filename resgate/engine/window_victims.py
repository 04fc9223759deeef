"""Victim choice over a window (README "Booking ahead", preempting the future): a
pure function, no database.

A request for [start, end) may have to make room at any instant of its window, not
only now. The candidates are lower-priority plans that overlap the window; evicting
one gives back what it holds over its overlap (a truncation from the window's start,
or a cancellation). A set of victims makes room when, at every step of the pool's
free capacity over the window, what is free plus what the victims holding that step
give back covers the request, and when enough GPU devices (the ones asked for by id,
if any) have no holder over the window but victims.

Among the sets that make room, the order of README "Preemption" (engine/preemption.py):
  1. the lowest highest-priority among victims;
  2. the fewest victims;
  3. the least waste, with "freed" measured as amount × overlap with the window in
     resource-seconds (an open-ended window cut at HORIZON): Σ over resources with
     total > 0 of max(0, freed − missing) / total, where "missing" is what the
     request lacks, integrated over the window;
  4. the newest victims (creation times sorted descending, later wins);
  5. the smallest ids (sorted ascending).
Exact when the eligible candidates number at most EXACT_LIMIT; beyond that, greedy
and then every victim that can be spared is dropped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from itertools import combinations

from resgate.engine.records import Amounts

EXACT_LIMIT = 16
# How far an open-ended window counts, for the waste (and nothing else).
HORIZON = timedelta(days=366)
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Booked:
    """A candidate: a lower-priority plan overlapping the window."""

    id: str
    priority: int
    created_at: datetime
    amounts: Amounts
    start: datetime
    end: datetime | None  # the planned end; None: open
    devices: frozenset[int] = frozenset()

    def holds(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at < self.end)


@dataclass(frozen=True)
class Room:
    """What the request faces over its window."""

    start: datetime
    end: datetime | None
    # What is free over the window, every plan counted: (from, free) at the window's
    # start and at each later step inside it (engine/windows.free_steps).
    steps: Sequence[tuple[datetime, Amounts]]
    need: Amounts
    total: Amounts
    # Every device of the pool → the plans holding it at some instant of the window.
    device_holders: Mapping[int, frozenset[str]]
    requested: tuple[int, ...] | None = None  # GPU ids asked for


def choose(
    candidates: Sequence[Booked], room: Room, forced: Sequence[Booked] = ()
) -> list[Booked] | None:
    """The victims (forced ones included) sorted by creation then id, or None when
    even every candidate together does not make room."""
    forced_ids = {f.id for f in forced}
    pool = [c for c in candidates if c.id not in forced_ids]
    fits = _Fit(room, [*pool, *forced])
    if not fits([*pool, *forced]):
        return None
    if fits(forced):
        return _sorted(forced)
    eligible = _eligible(pool, forced, fits)
    ranker = _Ranker(room, [*pool, *forced])
    if len(eligible) <= EXACT_LIMIT:
        chosen = _exact(eligible, forced, fits, ranker)
    else:
        chosen = _greedy(eligible, forced, fits, ranker)
    return _sorted([*chosen, *forced])


class _Fit:
    """Whether a set of victims makes room (see the module's docstring)."""

    def __init__(self, room: Room, everyone: Sequence[Booked]) -> None:
        self.room = room
        # Per step, what is missing; per candidate, which steps it holds.
        self.missing = [room.need - free for _, free in room.steps]
        self.held = {c.id: [c.holds(at) for at, _ in room.steps] for c in everyone}
        self.devices = room.device_holders

    def __call__(self, victims: Iterable[Booked]) -> bool:
        chosen = list(victims)
        for i, missing in enumerate(self.missing):
            given = Amounts()
            for victim in chosen:
                if self.held[victim.id][i]:
                    given = given + victim.amounts
            if not missing.fits_in(given):
                return False
        return self._devices({v.id for v in chosen})

    def _devices(self, ids: set[str]) -> bool:
        room = self.room
        free = {d for d, holders in self.devices.items() if holders <= ids}
        if room.requested is not None:
            return set(room.requested) <= free
        return len(free) >= room.need.gpu


def _eligible(pool: Sequence[Booked], forced: Sequence[Booked], fits: _Fit) -> list[Booked]:
    """Criterion 1: the candidates at or below the lowest priority level whose
    candidates (with all below it, and the forced) make room, or the forced top."""
    forced_top = max((f.priority for f in forced), default=None)
    for level in sorted({c.priority for c in pool}):
        below = [c for c in pool if c.priority <= level]
        if fits([*below, *forced]):
            cap = level if forced_top is None else max(level, forced_top)
            return [c for c in pool if c.priority <= cap]
    raise AssertionError("unreachable: the caller checked that every candidate makes room")


class _Ranker:
    """Criteria 3–5 of a whole set, as a sort key (smaller is better)."""

    def __init__(self, room: Room, everyone: Sequence[Booked]) -> None:
        self.start = room.start
        self.stop = room.end if room.end is not None else room.start + HORIZON
        self.total = room.total
        bounds = [*(at for at, _ in room.steps), self.stop]
        # Integrated over the window: what the request lacks (resource-µs).
        missing = Amounts()
        for (at, free), until in zip(room.steps, bounds[1:], strict=False):
            span = _length(max(at, self.start), min(until, self.stop))
            lack = Amounts(*(max(0, n - f) for n, f in zip(room.need, free, strict=True)))
            missing = missing + Amounts(*(span * x for x in lack))
        self.missing = missing
        times = sorted({c.created_at for c in everyone})
        self._rank = {t: i for i, t in enumerate(times)}

    def freed(self, victim: Booked) -> Amounts:
        """What `victim` gives back over the window, in resource-µs."""
        end = self.stop if victim.end is None else min(victim.end, self.stop)
        span = _length(max(victim.start, self.start), end)
        return Amounts(*(span * x for x in victim.amounts))

    def key(self, victims: Sequence[Booked]) -> tuple[Fraction, tuple[int, ...], tuple[str, ...]]:
        freed = Amounts()
        for victim in victims:
            freed = freed + self.freed(victim)
        excess = Amounts(*(max(0, f - m) for f, m in zip(freed, self.missing, strict=True)))
        waste = _weight(excess, self.total)
        newest = tuple(sorted(-self._rank[v.created_at] for v in victims))
        return waste, newest, tuple(sorted(v.id for v in victims))


def _exact(
    eligible: Sequence[Booked], forced: Sequence[Booked], fits: _Fit, ranker: _Ranker
) -> list[Booked]:
    """The best set among the fewest that make room (criteria 2–5): sizes are tried
    from the smallest up, so the search stops at the first size that works."""
    for size in range(1, len(eligible) + 1):
        working = [
            list(chosen) for chosen in combinations(eligible, size) if fits([*chosen, *forced])
        ]
        if working:
            return min(working, key=lambda chosen: ranker.key([*chosen, *forced]))
    raise AssertionError("unreachable: every eligible candidate together makes room")


def _greedy(
    eligible: Sequence[Booked], forced: Sequence[Booked], fits: _Fit, ranker: _Ranker
) -> list[Booked]:
    """More than EXACT_LIMIT eligible: take the candidate that gives back the most
    over the window (least waste, newest, smallest id on ties) until the set makes
    room, then drop each victim that can be spared, highest priority and oldest first."""
    chosen: list[Booked] = []
    remaining = sorted(eligible, key=lambda c: (-_weight(ranker.freed(c), ranker.total), *_tie(c)))
    for candidate in remaining:
        if fits([*chosen, *forced]):
            break
        chosen.append(candidate)
    drop_order = sorted(
        sorted(chosen, key=lambda c: c.id, reverse=True), key=lambda c: (-c.priority, c.created_at)
    )
    for victim in drop_order:
        rest = [c for c in chosen if c.id != victim.id]
        if fits([*rest, *forced]):
            chosen = rest
    return chosen


def _weight(amounts: Amounts, total: Amounts) -> Fraction:
    """Σ amount / total over the resources the pool has."""
    return sum((Fraction(a, t) for a, t in zip(amounts, total, strict=True) if t > 0), Fraction(0))


def _tie(c: Booked) -> tuple[float, str]:
    return (-c.created_at.timestamp(), c.id)


def _length(start: datetime, stop: datetime) -> int:
    return max(0, (stop - start) // _MICROSECOND)


def _sorted(victims: Iterable[Booked]) -> list[Booked]:
    return sorted(victims, key=lambda c: (c.created_at, c.id))
