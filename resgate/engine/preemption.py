"""Victim choice for `reserve --preempt` (README "Preemption"): a pure function, no database.

The caller gathers the candidates (effective-active reservations in the pool whose
tenant has strictly lower priority than the requester) and any victims that must go
anyway (`forced`, e.g. GPU device holders, README "GPU devices"); this module only decides which of
the candidates to evict.

Order among covering sets, best first (README "Preemption"), always evaluated on the whole set
(candidates chosen plus forced):
  1. the lowest highest-priority among victims;
  2. the fewest victims;
  3. the least waste: Σ over resources with total > 0 of
     max(0, freed − max(0, need − free)) / total;
  4. the newest victims: created_at sorted descending, compared lexicographically,
     later wins;
  5. the ids sorted ascending, compared lexicographically, smaller wins.
Optimal when the eligible candidates number at most 16; beyond that, greedy and
then every victim that can be spared is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from resgate.engine.records import Amounts

# Above this many eligible candidates the exhaustive search (2^n subsets) is
# replaced by the greedy; 2^16 = 65,536 subsets still take well under a second.
EXACT_LIMIT = 16


@dataclass(frozen=True)
class Candidate:
    id: str  # 16 hex chars
    priority: int  # the holder tenant's priority (below the requester's; caller filters)
    created_at: datetime
    amounts: Amounts


@dataclass(frozen=True)
class Shortfall:
    """Even every candidate together is not enough."""

    missing: Amounts  # per resource, still missing after evicting every candidate


def choose_victims(
    candidates: Sequence[Candidate],
    free: Amounts,
    request: Amounts,
    total: Amounts,
    forced: Sequence[Candidate] = (),
) -> list[Candidate] | Shortfall:
    """The victims to evict (forced ones included), sorted by created_at then id,
    or the Shortfall when even every candidate together does not cover `request`."""
    forced_ids = {f.id for f in forced}
    # A forced victim goes anyway; listing it among the candidates too must not
    # count its amounts twice.
    pool = [c for c in candidates if c.id not in forced_ids]
    # What the candidates still have to free, per resource, once the forced
    # victims are gone (≤ 0 where nothing more is needed).
    deficit = request - free - _sum(f.amounts for f in forced)

    everything = _sum(c.amounts for c in pool)
    if not deficit.fits_in(everything):
        return Shortfall(
            Amounts(*(max(0, d - e) for d, e in zip(deficit, everything, strict=True)))
        )
    if all(d <= 0 for d in deficit):
        return _sorted(forced)

    eligible = _eligible(pool, forced, deficit)
    ranker = _Ranker([*pool, *forced], free, request, total)
    if len(eligible) <= EXACT_LIMIT:
        chosen = _exact(eligible, forced, deficit, ranker)
    else:
        chosen = _greedy(eligible, deficit, ranker)
    return _sorted([*chosen, *forced])


# ------------------------------------------------------------------ criterion 1


def _eligible(
    pool: Sequence[Candidate], forced: Sequence[Candidate], deficit: Amounts
) -> list[Candidate]:
    """The candidates the best set may use: priority ≤ max(L, highest forced), where L is
    the lowest priority level whose candidates (with all below it) cover the deficit.

    Every covering subset of the result scores the optimal criterion 1: below L
    nothing covers, so a covering subset reaches L or the forced maximum, whichever
    is higher; and a candidate above both would raise the maximum."""
    forced_top = max((f.priority for f in forced), default=None)
    freed = Amounts()
    for level in sorted({c.priority for c in pool}):
        freed = freed + _sum(c.amounts for c in pool if c.priority == level)
        if deficit.fits_in(freed):
            cap = level if forced_top is None else max(level, forced_top)
            return [c for c in pool if c.priority <= cap]
    raise AssertionError("unreachable: the caller checked that every candidate covers")


# ------------------------------------------------------------ criteria 3, 4, 5


class _Ranker:
    """Criteria 3–5 as integers, exact and cheap.

    Waste is Σ excess_r / total_r; scaling every term by the lcm of the non-zero
    totals keeps it exact (same order as fractions.Fraction) and much cheaper inside
    the 2^16 loop. Creation times become integer ranks so "later wins" is a plain
    ascending comparison of negated ranks."""

    def __init__(
        self, everyone: Sequence[Candidate], free: Amounts, request: Amounts, total: Amounts
    ) -> None:
        scale = math.lcm(*(t for t in total if t > 0)) if any(t > 0 for t in total) else 1
        # A resource with total 0 weighs 0: the formula leaves it out.
        self.weights = Amounts(*(scale // t if t > 0 else 0 for t in total))
        # What the victims must free in each resource; anything beyond is waste.
        self.useful = Amounts(*(max(0, n - f) for n, f in zip(request, free, strict=True)))
        times = sorted({c.created_at for c in everyone})
        rank = {t: i for i, t in enumerate(times)}
        self._neg_rank = {c.id: -rank[c.created_at] for c in everyone}

    def waste_of_excess(self, excess: Amounts) -> int:
        """Σ excess / total over resources with total > 0, scaled by lcm(totals)."""
        return sum(w * e for w, e in zip(self.weights, excess, strict=True))

    def tiebreak(self, c: Candidate) -> tuple[int, str]:
        """Single-candidate form of criteria 4–5 (newer first, then smaller id)."""
        return (self._neg_rank[c.id], c.id)


# ------------------------------------------------------------------ exact search


def _exact(
    eligible: Sequence[Candidate],
    forced: Sequence[Candidate],
    deficit: Amounts,
    ranker: _Ranker,
) -> list[Candidate]:
    """Best subset by criteria 2–5 among the covering subsets of `eligible` (≤ 16).

    Every per-subset quantity is an integer built from a smaller subset plus its
    lowest member (2^n additions, no per-subset loop), because with 16 equal
    candidates C(16, 8) = 12,870 subsets can tie on criteria 2 and 3."""
    n = len(eligible)
    size = 1 << n
    # Criterion 4 on equal-size sets: comparing the times sorted descending is
    # comparing how many victims each set has at the newest time, then the next…
    # so a base-(n + 1) number with one digit per distinct time (newest most
    # significant) orders them: larger wins. Forced victims add the same to every set.
    times = sorted({c.created_at for c in eligible})
    time_digit = {t: (n + 1) ** i for i, t in enumerate(times)}
    # Criterion 5 on equal-size sets: the smaller sorted id list is the one holding the
    # smallest id of the symmetric difference, so one bit per candidate with the
    # smallest id most significant orders them: larger wins.
    by_id = sorted(range(n), key=lambda i: eligible[i].id)
    id_bit = [0] * n
    for position, i in enumerate(by_id):
        id_bit[i] = 1 << (n - 1 - position)

    cpu, mem, gpu = [0] * size, [0] * size, [0] * size
    newest, smallest = [0] * size, [0] * size
    for mask in range(1, size):
        low = mask & -mask
        rest = mask ^ low
        i = low.bit_length() - 1
        c = eligible[i]
        cpu[mask] = cpu[rest] + c.amounts.cpu
        mem[mask] = mem[rest] + c.amounts.memory
        gpu[mask] = gpu[rest] + c.amounts.gpu
        newest[mask] = newest[rest] + time_digit[c.created_at]
        smallest[mask] = smallest[rest] + id_bit[i]

    need_cpu, need_mem, need_gpu = deficit
    covering = [
        mask
        for mask in range(size)
        if cpu[mask] >= need_cpu and mem[mask] >= need_mem and gpu[mask] >= need_gpu
    ]
    fewest = min(mask.bit_count() for mask in covering)  # criterion 2
    # Waste is of the whole set: what a subset frees beyond `spare` per resource
    # (the useful part minus what the forced victims free) is waste.
    (wc, wm, wg), (sc, sm, sg) = ranker.weights, ranker.useful - _sum(f.amounts for f in forced)

    def key(mask: int) -> tuple[int, int, int]:
        waste = (
            wc * max(0, cpu[mask] - sc) + wm * max(0, mem[mask] - sm) + wg * max(0, gpu[mask] - sg)
        )
        return (waste, -newest[mask], -smallest[mask])

    best = min((mask for mask in covering if mask.bit_count() == fewest), key=key)
    return [eligible[i] for i in range(n) if best >> i & 1]


# ------------------------------------------------------------------------ greedy


def _greedy(eligible: Sequence[Candidate], deficit: Amounts, ranker: _Ranker) -> list[Candidate]:
    """More than 16 eligible candidates: add the most useful one until covered, then
    drop every victim that can be spared.

    Criterion 1 is already settled by `_eligible`, so the greedy aims at criterion 2:
    it takes the candidate covering the largest share of what is still missing
    (Σ over short resources of min(amount, missing) / missing), ties broken by least
    waste, then newest, then smallest id."""
    chosen: list[Candidate] = []
    remaining = list(eligible)
    missing = deficit
    while not all(m <= 0 for m in missing):
        pick = min(remaining, key=lambda c: _greedy_score(c, missing, ranker))
        # `_eligible` guarantees the remaining candidates cover what is missing, so
        # the best one always contributes something.
        assert _greedy_score(pick, missing, ranker)[0] < 0
        chosen.append(pick)
        remaining.remove(pick)
        missing = missing - pick.amounts

    # Drop what can be spared, in the order the criteria would give up first:
    # highest priority, then oldest (criterion 4 keeps the newest), then largest id
    # (criterion 5 keeps the smallest). One pass suffices: coverage only shrinks as
    # victims leave, so a victim kept because it was needed stays needed.
    by_id_desc = sorted(chosen, key=lambda c: c.id, reverse=True)
    drop_order = sorted(by_id_desc, key=lambda c: (-c.priority, c.created_at))  # stable
    freed = _sum(c.amounts for c in chosen)
    for victim in drop_order:
        if deficit.fits_in(freed - victim.amounts):
            freed = freed - victim.amounts
            chosen.remove(victim)
    return chosen


def _greedy_score(
    c: Candidate, missing: Amounts, ranker: _Ranker
) -> tuple[Fraction, int, int, str]:
    """Smaller is better: largest share of what is missing, then least waste, newest, id."""
    useful = sum(
        (Fraction(min(a, m), m) for a, m in zip(c.amounts, missing, strict=True) if m > 0),
        Fraction(0),
    )
    # Beyond what is still missing, what c frees is waste (free is already counted in
    # `missing`, so the waste formula's max(0, need − free) becomes max(0, missing)).
    over = Amounts(*(max(0, a - max(0, m)) for a, m in zip(c.amounts, missing, strict=True)))
    return (-useful, ranker.waste_of_excess(over), *ranker.tiebreak(c))


# ------------------------------------------------------------------------ helpers


def _sum(amounts: Iterable[Amounts]) -> Amounts:
    result = Amounts()
    for a in amounts:
        result = result + a
    return result


def _sorted(victims: Iterable[Candidate]) -> list[Candidate]:
    return sorted(victims, key=lambda c: (c.created_at, c.id))
