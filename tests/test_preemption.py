"""Victim choice for `reserve --preempt` (README "Preemption"), as a pure function.

The property test compares choose_victims with a brute-force oracle written here,
over every subset (itertools.combinations) and the full order (1)–(5); it uses
nothing from resgate.engine.preemption but the two dataclasses."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import NamedTuple

from hypothesis import given, settings
from hypothesis import strategies as st

from resgate.engine.preemption import Candidate, Shortfall, choose_victims
from resgate.engine.records import Amounts

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def cand(
    n: int, priority: int = 1, minutes: int = 0, *, cpu: int = 0, memory: int = 0, gpu: int = 0
) -> Candidate:
    """A candidate with id f"{n:016x}" created `minutes` after T0."""
    return Candidate(
        id=f"{n:016x}",
        priority=priority,
        created_at=T0 + timedelta(minutes=minutes),
        amounts=Amounts(cpu, memory, gpu),
    )


def ids(result: list[Candidate] | Shortfall) -> list[str]:
    assert isinstance(result, list), result
    return [c.id for c in result]


def gpus(n: int) -> Amounts:
    return Amounts(gpu=n)


# ------------------------------------------------------------------ hand-built


def test_takes_only_what_it_needs() -> None:
    # 8 GPUs held 1, 1, 1, 4 by equal low-priority tenants (and 1 by a tenant the
    # requester cannot preempt), pool full, a request for 4: evicting the small
    # holders first (the 1-GPU ones are the newest) would take all four.
    small = [cand(i, minutes=10 + i, gpu=1) for i in (1, 2, 3)]
    big = cand(4, minutes=0, gpu=4)
    result = choose_victims([*small, big], free=gpus(0), request=gpus(4), total=gpus(8))
    assert ids(result) == [big.id]


def test_fits_already_evicts_nothing() -> None:
    cands = [cand(1, gpu=4), cand(2, cpu=4)]
    free = Amounts(4, 0, 4)
    assert choose_victims(cands, free, Amounts(4, 0, 4), Amounts(8, 8, 8)) == []


def test_fits_thanks_to_forced_returns_only_forced() -> None:
    forced = [cand(9, priority=3, minutes=5, gpu=2), cand(8, priority=3, minutes=1, gpu=1)]
    result = choose_victims([cand(1, gpu=4)], gpus(1), gpus(4), gpus(8), forced=forced)
    assert ids(result) == [forced[1].id, forced[0].id]  # by created_at


def test_cpu_holder_frees_no_gpu() -> None:
    cpu_big = cand(1, minutes=9, cpu=32, memory=64)
    gpu_small = cand(2, priority=2, minutes=0, gpu=1)
    # Only the GPU holder serves a GPU request, though it has the higher priority.
    assert ids(choose_victims([cpu_big, gpu_small], Amounts(), gpus(1), Amounts(32, 64, 1))) == [
        gpu_small.id
    ]
    # With CPU-only victims a GPU request is a shortfall naming the GPU alone.
    result = choose_victims([cpu_big], Amounts(), Amounts(cpu=8, gpu=2), Amounts(32, 64, 2))
    assert result == Shortfall(Amounts(0, 0, 2))


def test_multi_resource_needs_every_resource_covered() -> None:
    # The request needs CPU and GPU; no single holder has both.
    a = cand(1, cpu=4)
    b = cand(2, gpu=2)
    c = cand(3, cpu=2, gpu=1)
    result = choose_victims([a, b, c], Amounts(), Amounts(cpu=4, gpu=2), Amounts(10, 0, 3))
    assert ids(result) == [a.id, b.id]


def test_shortfall_missing_is_exact() -> None:
    cands = [cand(1, cpu=3, memory=100), cand(2, gpu=1), cand(3, priority=4, cpu=1)]
    free = Amounts(cpu=2, memory=50, gpu=0)
    forced = [cand(7, priority=5, gpu=1)]
    result = choose_victims(cands, free, Amounts(10, 100, 4), Amounts(16, 256, 4), forced)
    # cpu 10 − 2 − 3 − 1 = 4; memory 100 ≤ 50 + 100; gpu 4 − 1 (forced) − 1 = 2.
    assert result == Shortfall(Amounts(cpu=4, memory=0, gpu=2))
    assert choose_victims([], Amounts(1, 1, 1), Amounts(1, 5, 0), Amounts(2, 2, 2)) == Shortfall(
        Amounts(0, 4, 0)
    )


def test_criterion_1_beats_criterion_2() -> None:
    # Two priority-1 victims rather than one priority-2 victim.
    lows = [cand(1, priority=1, gpu=2), cand(2, priority=1, gpu=2)]
    high = cand(3, priority=2, minutes=60, gpu=4)
    assert ids(choose_victims([*lows, high], gpus(0), gpus(4), gpus(8))) == [lows[0].id, lows[1].id]


def test_forced_victims_count_for_criterion_1() -> None:
    # A forced priority-3 victim already sets the highest priority at 3, so one
    # priority-3 victim now beats two priority-1 victims (criterion 2 decides).
    lows = [cand(1, priority=1, gpu=2), cand(2, priority=1, gpu=2)]
    high = cand(3, priority=3, minutes=60, gpu=4)
    forced = [cand(9, priority=3, minutes=30, gpu=1)]
    result = choose_victims([*lows, high], gpus(0), gpus(5), gpus(9), forced)
    assert ids(result) == [forced[0].id, high.id]


def test_criterion_3_waste_decides() -> None:
    # One victim either way; the newer one (criterion 4) frees 4 GPUs where 2 are needed.
    exact = cand(1, minutes=0, gpu=2)
    too_big = cand(2, minutes=60, gpu=4)
    assert ids(choose_victims([exact, too_big], gpus(0), gpus(2), gpus(8))) == [exact.id]


def test_criterion_3_waste_is_relative_to_total() -> None:
    # Both free 2 GPUs and one unneeded unit; 1 CPU of 64 wastes more than 1 MiB of 1024.
    with_cpu = cand(1, minutes=60, cpu=1, gpu=2)
    with_mem = cand(2, minutes=0, memory=1, gpu=2)
    total = Amounts(64, 1024, 4)
    assert ids(choose_victims([with_cpu, with_mem], Amounts(), gpus(2), total)) == [with_mem.id]


def test_criterion_3_counts_free_capacity() -> None:
    # 1 GPU is free, so only 1 is needed from victims: the 1-GPU holder wastes nothing.
    one = cand(1, minutes=0, gpu=1)
    two = cand(2, minutes=60, gpu=2)
    assert ids(choose_victims([one, two], gpus(1), gpus(2), gpus(4))) == [one.id]


def test_criterion_4_newest_decides() -> None:
    older = cand(1, minutes=0, gpu=2)
    newer = cand(2, minutes=5, gpu=2)
    assert ids(choose_victims([older, newer], gpus(0), gpus(2), gpus(4))) == [newer.id]


def test_criterion_4_is_lexicographic_on_descending_times() -> None:
    # {t50, t1} beats {t40, t30}: its newest victim is newer, though its mean is older.
    # Amounts make those the only waste-free pairs ({a, c} covers too, wasting a CPU).
    a, b = cand(1, minutes=50, cpu=1, memory=1), cand(2, minutes=1, gpu=1)
    c, d = cand(3, minutes=40, cpu=1, gpu=1), cand(4, minutes=30, memory=1)
    need, total = Amounts(1, 1, 1), Amounts(4, 4, 4)
    assert ids(choose_victims([c, d, a, b], Amounts(), need, total)) == [b.id, a.id]
    a = cand(1, minutes=50, gpu=1)
    # Same newest victim: the second newest decides ({t50, t10} over {t50, t1}).
    f = cand(6, minutes=10, gpu=1)
    assert ids(choose_victims([a, b, f], gpus(0), gpus(2), gpus(4))) == [f.id, a.id]


def test_criterion_4_counts_victims_at_each_time() -> None:
    # One very new victim with three old ones beats four fairly new ones: the
    # comparison is lexicographic, not a weighted sum of times. Each frees 1 GPU and
    # the pairs that mix X with a Y waste CPU, so these are the two waste-free sets.
    x = cand(1, minutes=20, cpu=4, gpu=1)
    zs = [cand(2 + i, minutes=0, gpu=1) for i in range(3)]
    ys = [cand(5 + i, minutes=10, cpu=1, gpu=1) for i in range(4)]
    result = choose_victims([*ys, *zs, x], Amounts(), Amounts(cpu=4, gpu=4), Amounts(8, 0, 8))
    assert ids(result) == [z.id for z in zs] + [x.id]


def test_criterion_5_ids_decide() -> None:
    same = [cand(n, minutes=7, gpu=1) for n in (0xC, 0xA, 0xB)]
    assert ids(choose_victims(same, gpus(0), gpus(1), gpus(3))) == [f"{0xA:016x}"]
    # Two victims: sorted id lists compared lexicographically, [a, b] < [a, c] < [b, c].
    assert ids(choose_victims(same, gpus(0), gpus(2), gpus(3))) == [f"{0xA:016x}", f"{0xB:016x}"]


def test_result_sorted_by_created_at_then_id_and_order_independent() -> None:
    cands = [
        cand(5, minutes=3, gpu=1),
        cand(4, minutes=3, gpu=1),
        cand(3, minutes=9, gpu=1),
        cand(2, minutes=1, cpu=1),
    ]
    expected = [f"{4:016x}", f"{5:016x}", f"{3:016x}"]
    for perm in itertools.permutations(cands):
        assert ids(choose_victims(perm, gpus(0), gpus(3), Amounts(1, 0, 3))) == expected


def test_greedy_drops_a_victim_it_no_longer_needs() -> None:
    # Beyond 16 candidates: the one covering most of the request goes first, but once
    # the CPU-only and GPU-only holders are in, it can be spared.
    both = cand(1, minutes=0, cpu=3, gpu=3)
    cpu_only = cand(2, minutes=0, cpu=4)
    gpu_only = cand(3, minutes=0, gpu=4)
    filler = [cand(10 + i, minutes=5, memory=1) for i in range(15)]
    cands = [both, cpu_only, gpu_only, *filler]
    result = choose_victims(cands, Amounts(), Amounts(cpu=4, gpu=4), Amounts(8, 16, 8))
    assert ids(result) == [cpu_only.id, gpu_only.id]


def test_sixteen_candidates_search_is_fast() -> None:
    # Worst case for the exact search: 16 equal-priority candidates, half of them needed.
    rng = random.Random(16)
    cands = [cand(i, minutes=rng.randrange(5), cpu=2, memory=2, gpu=2) for i in range(16)]
    total = Amounts(32, 32, 32)
    start = time.perf_counter()
    result = choose_victims(cands, Amounts(), Amounts(16, 15, 16), total)
    elapsed = time.perf_counter() - start
    assert len(ids(result)) == 8
    assert elapsed < 1.0, f"{elapsed:.3f} s"


# -------------------------------------------------------------- brute force


def oracle_freed(victims: Sequence[Candidate]) -> tuple[int, int, int]:
    return (
        sum(v.amounts.cpu for v in victims),
        sum(v.amounts.memory for v in victims),
        sum(v.amounts.gpu for v in victims),
    )


def oracle(
    candidates: Sequence[Candidate],
    free: Amounts,
    request: Amounts,
    total: Amounts,
    forced: Sequence[Candidate],
) -> list[Candidate] | Shortfall:
    """Every subset of the candidates, each with the forced victims, keyed by (1)–(5)."""

    def covers(victims: Sequence[Candidate]) -> bool:
        freed = oracle_freed(victims)
        return all(f + g >= n for f, g, n in zip(free, freed, request, strict=True))

    def key(victims: Sequence[Candidate]) -> tuple[object, ...]:
        freed = oracle_freed(victims)
        waste = sum(
            (
                Fraction(max(0, g - max(0, n - f)), t)
                for g, n, f, t in zip(freed, request, free, total, strict=True)
                if t > 0
            ),
            Fraction(0),
        )
        micros = [(v.created_at - T0) // timedelta(microseconds=1) for v in victims]
        return (
            max((v.priority for v in victims), default=0),  # 1: lowest highest priority
            len(victims),  # 2: fewest
            waste,  # 3: least waste
            [-m for m in sorted(micros, reverse=True)],  # 4: later wins, lexicographically
            sorted(v.id for v in victims),  # 5: ascending ids
        )

    everyone = [*candidates, *forced]
    if not covers(everyone):
        freed = oracle_freed(everyone)
        return Shortfall(
            Amounts(*(max(0, n - f - g) for n, f, g in zip(request, free, freed, strict=True)))
        )
    covering = [
        [*subset, *forced]
        for size in range(len(candidates) + 1)
        for subset in itertools.combinations(candidates, size)
        if covers([*subset, *forced])
    ]
    best = min(covering, key=key)
    return sorted(best, key=lambda v: (v.created_at, v.id))


SMALL = st.integers(0, 3)
SMALL_AMOUNTS = st.builds(Amounts, SMALL, SMALL, SMALL)


class Pool(NamedTuple):
    candidates: list[Candidate]
    free: Amounts
    request: Amounts
    total: Amounts
    forced: list[Candidate]


@st.composite
def pools(
    draw: st.DrawFn,
    min_candidates: int = 0,
    max_candidates: int = 12,
    amounts: st.SearchStrategy[Amounts] = SMALL_AMOUNTS,
    max_request: int = 8,
) -> Pool:
    """Small amounts, few priorities and times: coverage is tight and ties are many."""
    n = draw(st.integers(min_candidates, max_candidates))
    n_forced = draw(st.integers(0, 2))
    raw_ids = draw(
        st.lists(
            st.integers(0, 2**64 - 1), min_size=n + n_forced, max_size=n + n_forced, unique=True
        )
    )
    everyone = [
        Candidate(
            id=f"{raw_id:016x}",
            priority=draw(st.integers(1, 4)),
            created_at=T0 + timedelta(seconds=draw(st.integers(0, 5))),
            amounts=draw(amounts),
        )
        for raw_id in raw_ids
    ]
    free = Amounts(*(draw(st.integers(0, 3)) for _ in range(3)))
    request = Amounts(*(draw(st.integers(0, max_request)) for _ in range(3)))
    held = oracle_freed(everyone)
    # Totals ≥ free + held; sometimes more (held by tenants that cannot be
    # preempted), sometimes 0 for an unused resource (left out of the waste).
    total = Amounts(*(f + h + draw(st.integers(0, 4)) for f, h in zip(free, held, strict=True)))
    return Pool(everyone[:n], free, request, total, everyone[n:])


@settings(max_examples=200, deadline=None)
@given(pools())
def test_matches_brute_force_oracle(pool: Pool) -> None:
    candidates, free, request, total, forced = pool
    expected = oracle(candidates, free, request, total, forced)
    assert choose_victims(candidates, free, request, total, forced) == expected
    # Deterministic whatever order the caller lists the candidates in.
    assert choose_victims(candidates[::-1], free, request, total, forced[::-1]) == expected


# Balanced holders among lopsided ones: the greedy takes a balanced one first,
# which the lopsided ones taken after it can make redundant.
BIG = st.sampled_from([0, 0, 4, 6])
LUMPY = st.one_of(
    st.integers(1, 3).map(lambda k: Amounts(k, k, k)), st.builds(Amounts, BIG, BIG, BIG)
)


@settings(max_examples=100, deadline=None)
@given(pools(min_candidates=17, max_candidates=30, amounts=LUMPY, max_request=20))
def test_many_candidates_cover_and_spare_nothing(pool: Pool) -> None:
    candidates, free, request, total, forced = pool
    result = choose_victims(candidates, free, request, total, forced)

    def covers(victims: Sequence[Candidate]) -> bool:
        freed = oracle_freed(victims)
        return all(f + g >= r for f, g, r in zip(free, freed, request, strict=True))

    if not covers([*candidates, *forced]):
        assert isinstance(result, Shortfall)
        return
    assert isinstance(result, list)
    assert result == sorted(result, key=lambda v: (v.created_at, v.id))
    forced_ids = {f.id for f in forced}
    assert forced_ids <= {v.id for v in result}
    assert covers(result)
    for v in result:
        if v.id not in forced_ids:
            assert not covers([w for w in result if w is not v]), f"{v.id} could be spared"
    # Criterion 1 stays exact: no covering set has a lower highest priority.
    top = max((v.priority for v in result), default=0)
    forced_top = max((f.priority for f in forced), default=0)
    for level in range(max(1, forced_top), top):
        assert not covers([*(c for c in candidates if c.priority <= level), *forced])
