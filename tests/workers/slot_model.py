"""A brute-force statement of finding a slot (README "Booking ahead"), minute by
minute, for tests/test_slots.py. It imports nothing from resgate, only the
standard library (a test checks), so a bug in the engine cannot leak into it.

Plans hold [start, end) (end None: for ever) in whole minutes; the pool asked
about has CPUs and GPU devices 0..n-1 and may limit how many plans a tenant holds
at once; the tenant's caps count its plans in every pool. A window fits when, at
every minute of it, the pool's sums stay within its totals, the tenant's within its
caps and its count within the limit, and its GPUs (the lowest free for the whole
window, or those asked for) are held by no plan overlapping it."""

from __future__ import annotations

from dataclasses import dataclass


class Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Plan:
    id: str
    tenant: str
    pool: str
    start: int
    end: int | None
    cpu: int
    gpu: int
    devices: frozenset[int]

    def holds(self, minute: int) -> bool:
        return self.start <= minute and (self.end is None or minute < self.end)


@dataclass(frozen=True)
class Ask:
    tenant: str
    pool: str
    cpu: int
    gpu: int
    pinned: tuple[int, ...] | None
    length: int | None  # minutes; None: for ever
    after: int
    count: int


@dataclass(frozen=True)
class Found:
    start: int
    free_until: int | None
    devices: tuple[int, ...]
    freed_by: frozenset[str]  # the pool's or the tenant's plans ending at the start


@dataclass(frozen=True)
class World:
    cpu: int
    gpus: int
    per_tenant: int | None
    caps: dict[str, tuple[int | None, int | None]]  # tenant: (cpu cap, gpu cap)
    plans: tuple[Plan, ...]

    def last(self) -> int:
        """A minute past which nothing changes any more."""
        points = [0] + [p.start for p in self.plans] + [p.end for p in self.plans if p.end]
        return max(points) + 1

    def _state(self, ask: Ask, minute: int) -> tuple[int, int, frozenset[int], int, int, int]:
        here = [p for p in self.plans if p.pool == ask.pool and p.holds(minute)]
        mine = [p for p in self.plans if p.tenant == ask.tenant and p.holds(minute)]
        return (
            sum(p.cpu for p in here),
            sum(p.gpu for p in here),
            frozenset(d for p in here for d in p.devices),
            sum(p.cpu for p in mine),
            sum(p.gpu for p in mine),
            sum(1 for p in mine if p.pool == ask.pool),
        )

    def fits(self, ask: Ask, start: int, end: int | None) -> tuple[int, ...] | None:
        """The GPUs the request takes over [start, end) (None: for ever), or None."""
        stop = max(self.last(), start) + 1 if end is None else end
        cpu_cap, gpu_cap = self.caps.get(ask.tenant, (None, None))
        busy: set[int] = set()
        for minute in range(start, stop):
            cpu, gpu, devices, my_cpu, my_gpu, count = self._state(ask, minute)
            if cpu + ask.cpu > self.cpu or gpu + ask.gpu > self.gpus:
                return None
            if ask.cpu and cpu_cap is not None and my_cpu + ask.cpu > cpu_cap:
                return None
            if ask.gpu and gpu_cap is not None and my_gpu + ask.gpu > gpu_cap:
                return None
            if self.per_tenant is not None and count + 1 > self.per_tenant:
                return None
            busy |= devices
        free = [d for d in range(self.gpus) if d not in busy]
        if ask.pinned is not None:
            return tuple(sorted(ask.pinned)) if set(ask.pinned) <= set(free) else None
        return tuple(free[: ask.gpu]) if len(free) >= ask.gpu else None

    def refusal_at(self, ask: Ask, minute: int, devices: frozenset[int]) -> int | None:
        """Why the request, holding `devices`, cannot be held at `minute`: 3 for the
        pool's capacity or a GPU held by another plan, 4 for the tenant's caps or
        the per-tenant limit (3 first when both); None: it can."""
        cpu, gpu, held, my_cpu, my_gpu, count = self._state(ask, minute)
        if cpu + ask.cpu > self.cpu or gpu + ask.gpu > self.gpus or held & devices:
            return 3
        cpu_cap, gpu_cap = self.caps.get(ask.tenant, (None, None))
        if ask.cpu and cpu_cap is not None and my_cpu + ask.cpu > cpu_cap:
            return 4
        if ask.gpu and gpu_cap is not None and my_gpu + ask.gpu > gpu_cap:
            return 4
        if self.per_tenant is not None and count + 1 > self.per_tenant:
            return 4
        return None

    def extended(self, plan: Plan, to: int | None, partial: bool) -> int | None:
        """Where `plan`'s end may move towards `to` (None: for ever): `to` when all
        of it fits; else the first minute that does not, if `partial` and that is
        later than its end. A refusal raises Refused with its exit code."""
        assert plan.end is not None
        others = World(
            self.cpu,
            self.gpus,
            self.per_tenant,
            self.caps,
            tuple(p for p in self.plans if p is not plan),
        )
        ask = Ask(plan.tenant, plan.pool, plan.cpu, plan.gpu, None, None, plan.end, 1)
        stop = max(self.last(), plan.end) + 1 if to is None else to
        for minute in range(plan.end, stop):
            code = others.refusal_at(ask, minute, plan.devices)
            if code is None:
                continue
            if partial and minute > plan.end:
                return minute
            raise Refused(code)
        return to

    def grows(self, ask: Ask, minute: int) -> bool:
        """Whether something the request could use is given back at `minute`."""
        was, now = self._state(ask, minute - 1), self._state(ask, minute)
        cpu_cap, gpu_cap = self.caps.get(ask.tenant, (None, None))
        return (
            now[0] < was[0]
            or now[1] < was[1]
            or bool(was[2] - now[2])
            or (cpu_cap is not None and now[3] < was[3])
            or (gpu_cap is not None and now[4] < was[4])
            or (self.per_tenant is not None and now[5] < was[5])
        )

    def slots(self, ask: Ask) -> list[Found]:
        found: list[Found] = []
        for start in range(ask.after, max(self.last(), ask.after) + 1):
            if start != ask.after and not self.grows(ask, start):
                continue
            if any(
                f.start <= start and (f.free_until is None or start < f.free_until) for f in found
            ):
                continue
            end = None if ask.length is None else start + ask.length
            devices = self.fits(ask, start, end)
            if devices is None:
                continue
            found.append(
                Found(
                    start, self._until(ask, start, end, devices), devices, self._ending(start, ask)
                )
            )
            if len(found) == ask.count or found[-1].free_until is None:
                break
        return found

    def _until(self, ask: Ask, start: int, end: int | None, devices: tuple[int, ...]) -> int | None:
        """The first minute from `end` on at which the window, grown to it with the
        same GPUs, stops fitting; None: never."""
        if end is None:
            return None
        pinned = Ask(ask.tenant, ask.pool, ask.cpu, ask.gpu, devices, None, ask.after, 1)
        for minute in range(end, self.last() + 1):
            if self.fits(pinned, start, minute + 1) is None:
                return minute
        return None

    def _ending(self, start: int, ask: Ask) -> frozenset[str]:
        if start == ask.after:
            return frozenset()
        return frozenset(
            p.id
            for p in self.plans
            if p.end == start and (p.pool == ask.pool or p.tenant == ask.tenant)
        )
