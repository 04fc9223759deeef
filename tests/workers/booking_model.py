"""A brute-force statement of booking ahead (README "Booking ahead"), minute by
minute, for tests/test_booking_model.py. It imports nothing from resgate, only the
standard library (a test checks), so a bug in the engine cannot leak into it.

One pool (CPU, GPU devices 0..n-1, a per-tenant limit); times are whole minutes
from the start of the run. A reservation holds [start, end) (end None: for ever)
until it is cancelled; it is over once the clock reaches its end."""

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

    def holds(self, minute: int) -> bool:
        return self.start <= minute and (self.end is None or minute < self.end)

    def live(self, now: int) -> bool:
        return not self.cancelled and (self.end is None or self.end > now)


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
        self, tenant: str, start: int, length: int | None, cpu: int, gpu: int
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
        self.bookings.append(Booking(tenant, start, end, cpu, devices))
        return devices

    def cancel(self, index: int) -> None:
        booking = self.bookings[index]
        if not booking.live(self.now):
            raise Refused(4)
        booking.cancelled = True

    def extend(self, index: int, by: int) -> None:
        booking = self.bookings[index]
        if not booking.live(self.now) or booking.end is None:
            raise Refused(4)
        new_end = booking.end + by
        added = range(booking.end, new_end)
        others = self._others(booking)
        for t in added:
            if sum(b.cpu for b in others if b.holds(t)) + booking.cpu > self.cpu:
                raise Refused(3)
        held = {d for b in others if any(b.holds(t) for t in added) for d in b.devices}
        if held & set(booking.devices):
            raise Refused(3)
        mine = [b for b in others if b.tenant == booking.tenant]
        if any(sum(b.holds(t) for b in mine) + 1 > self.per_tenant for t in added):
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
            if b.cancelled:
                shown.append("released")
            elif b.end is not None and b.end <= self.now:
                shown.append("expired")
            elif b.start > self.now:
                shown.append("upcoming")
            else:
                shown.append("active")
        return shown
