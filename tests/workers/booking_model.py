"""A brute-force statement of booking ahead (README "Booking ahead"), minute by
minute, for tests/test_booking_model.py. It imports nothing from resgate, only the
standard library (a test checks), so a bug in the engine cannot leak into it.

One pool (CPU, GPU devices 0..n-1, a per-tenant limit); times are whole minutes
from the start of the run. A reservation holds [start, min(end, preempt_at)) (None:
for ever) until it is cancelled; it is over once the clock reaches that end.

Preemption is checked by its consequences, not by re-deriving the choice (that is
tests/test_window_victims.py's brute force): the victims the engine names must be
of lower priority and in the way, the request must then fit by this model's rules,
and `pardon` gives truncated victims back, minute by minute, what fits again."""

from __future__ import annotations

from dataclasses import dataclass, field


class Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Booking:
    tenant: str
    start: int
    end: int | None
    cpu: int
    devices: tuple[int, ...]
    cancelled: bool = False
    priority: int = 5
    preempt_at: int | None = None  # a planned truncation
    preempted_for: int | None = None  # the index of the booking it was preempted for
    preempted: bool = False  # ended by a preemption (cancelled, or at preempt_at)

    @property
    def plan_end(self) -> int | None:
        ends = [t for t in (self.end, self.preempt_at) if t is not None]
        return min(ends) if ends else None

    def holds(self, minute: int) -> bool:
        return self.start <= minute and (self.plan_end is None or minute < self.plan_end)

    def live(self, now: int) -> bool:
        return not self.cancelled and (self.plan_end is None or self.plan_end > now)


@dataclass
class BookingModel:
    cpu: int
    gpus: int
    per_tenant: int
    now: int = 0
    bookings: list[Booking] = field(default_factory=list)

    def _horizon(self, *extra: int | None) -> int:
        """One minute past the last instant anything changes: beyond it every sum is
        what it is there."""
        points = [self.now, *(x for x in extra if x is not None)]
        for b in self.bookings:
            points += [b.start] + ([b.end] if b.end is not None else [])
        return max(points) + 1

    def _minutes(self, start: int, end: int | None, horizon: int) -> range:
        return range(start, horizon if end is None else end)

    def _others(self, skip: Booking | None = None) -> list[Booking]:
        return [b for b in self.bookings if b is not skip and b.live(self.now)]

    def book(
        self, tenant: str, start: int, length: int | None, cpu: int, gpu: int, priority: int = 5
    ) -> tuple[int, ...]:
        start = max(start, self.now)
        end = None if length is None else start + length
        horizon = self._horizon(start, end)
        live = self._others()
        minutes = self._minutes(start, end, horizon)
        mine = [b for b in live if b.tenant == tenant]
        if any(sum(b.holds(t) for b in mine) + 1 > self.per_tenant for t in minutes):
            raise Refused(4)
        gpu_at = {t: sum(len(b.devices) for b in live if b.holds(t)) for t in minutes}
        if any(sum(b.cpu for b in live if b.holds(t)) + cpu > self.cpu for t in minutes):
            raise Refused(3)
        if any(gpu_at[t] + gpu > self.gpus for t in minutes):
            raise Refused(3)
        taken = {d for b in live if any(b.holds(t) for t in minutes) for d in b.devices}
        free = [d for d in range(self.gpus) if d not in taken]
        if len(free) < gpu:
            raise Refused(3)
        devices = tuple(free[:gpu])
        self.bookings.append(Booking(tenant, start, end, cpu, devices, priority=priority))
        return devices

    def cancel(self, index: int) -> None:
        booking = self.bookings[index]
        if not booking.live(self.now):
            raise Refused(4)
        booking.cancelled = True
        self.pardon([index])

    # ------------------------------------------------------------ preemption

    def in_the_way(self, priority: int, start: int, length: int | None) -> list[int]:
        """The live bookings of lower priority whose plans overlap the window."""
        start = max(start, self.now)
        end = None if length is None else start + length
        return [
            i
            for i, b in enumerate(self.bookings)
            if b.live(self.now)
            and b.priority < priority
            and (b.plan_end is None or b.plan_end > start)
            and (end is None or b.start < end)
        ]

    def evict(self, victims: list[int], start: int, for_index: int) -> None:
        """What the engine does to its victims: a victim that starts before a window
        that has not started is truncated at its start, any other ends now."""
        start = max(start, self.now)
        for i in victims:
            b = self.bookings[i]
            b.preempted_for = for_index
            if b.start < start and start > self.now:
                b.preempt_at = start
            else:
                b.cancelled = b.preempted = True

    def pardon(self, ended: list[int]) -> None:
        """The victims truncated for `ended` (which had not started) get back, in
        descending priority and then booking order, as much of their end as fits."""
        before_start = {i for i in ended if self.bookings[i].start > self.now}
        pardoned = [
            (-b.priority, i)
            for i, b in enumerate(self.bookings)
            if b.preempted_for in before_start and b.live(self.now) and b.preempt_at is not None
        ]
        for _, i in sorted(pardoned):
            b = self.bookings[i]
            assert b.preempt_at is not None
            back, stop = b.preempt_at, b.end
            horizon = self._horizon(stop)
            others = self._others(b)
            mine = [o for o in others if o.tenant == b.tenant]
            minute = back
            while minute < (horizon if stop is None else stop):
                held = [o for o in others if o.holds(minute)]
                if (
                    sum(o.cpu for o in held) + b.cpu > self.cpu
                    or {d for o in held for d in o.devices} & set(b.devices)
                    or sum(o.holds(minute) for o in mine) + 1 > self.per_tenant
                ):
                    break
                minute += 1
            if stop is None and minute >= horizon:
                b.preempt_at, b.preempted_for = None, None  # for ever again
            elif stop is not None and minute >= stop:
                b.preempt_at, b.preempted_for = None, None
            else:
                b.preempt_at = minute

    def extend(self, index: int, by: int) -> None:
        booking = self.bookings[index]
        if not booking.live(self.now) or booking.end is None:
            raise Refused(4)
        new_end = booking.end + by
        if booking.preempt_at is not None and new_end > booking.preempt_at:
            raise Refused(4)  # not past a planned truncation
        others = self._others(booking)
        mine = [b for b in others if b.tenant == booking.tenant]
        # The first minute of the added time that some rule refuses decides (the
        # capacity before the devices before the per-tenant limit at one minute).
        for t in range(booking.end, new_end):
            held = [b for b in others if b.holds(t)]
            if sum(b.cpu for b in held) + booking.cpu > self.cpu:
                raise Refused(3)
            if {d for b in held for d in b.devices} & set(booking.devices):
                raise Refused(3)
            if len([b for b in mine if b.holds(t)]) + 1 > self.per_tenant:
                raise Refused(4)
        booking.end = new_end

    def resize(self, cpu: int) -> None:
        horizon = self._horizon()
        live = self._others()
        if any(sum(b.cpu for b in live if b.holds(t)) > cpu for t in range(self.now, horizon)):
            raise Refused(4)
        self.cpu = cpu

    def advance(self, minutes: int) -> None:
        self.now += minutes

    def shown(self) -> list[str]:
        """Each booking's status, in booking order."""
        shown = []
        for b in self.bookings:
            if b.preempted:
                shown.append("preempted")
            elif b.cancelled:
                shown.append("released")
            elif b.preempt_at is not None and b.preempt_at <= self.now:
                shown.append("preempted" if b.end is None or b.preempt_at <= b.end else "expired")
            elif b.end is not None and b.end <= self.now:
                shown.append("expired")
            elif b.start > self.now:
                shown.append("upcoming")
            else:
                shown.append("active")
        return shown
