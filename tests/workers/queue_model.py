"""A brute-force statement of the line (README "Waiting in line"), minute by minute,
for tests/test_queue_model.py. It imports nothing from resgate, only the standard
library (a test checks), so a bug in the engine cannot leak into it.

One pool of CPUs, tenants with priorities, no quotas and no per-tenant limit.
Reservations start when they are made and hold [start, end) (end None: for ever)
until released. The admission pass runs at the end of every write: in order of
priority (highest first), then arrival, a ticket that fits for its whole length is
admitted; the first that does not is the head, promised its earliest start with
every open-ended holder counted as ending now; a later ticket, or a plain reserve
of a tenant that does not outrank the head, may go ahead only if that promise does
not move later."""

from __future__ import annotations

from dataclasses import dataclass, field


class Refused(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Held:
    key: str
    tenant: str
    start: int
    end: int | None
    cpu: int

    def holds(self, minute: int) -> bool:
        return self.start <= minute and (self.end is None or minute < self.end)


@dataclass
class Waiting:
    key: str
    tenant: str
    priority: int
    arrival: int
    cpu: int
    length: int | None
    status: str = "waiting"


@dataclass
class LineModel:
    cpu: int
    priorities: dict[str, int]
    now: int = 0
    held: list[Held] = field(default_factory=list)
    tickets: list[Waiting] = field(default_factory=list)
    head: Waiting | None = None  # as the last pass left it

    # ------------------------------------------------------------ time and room

    def live(self) -> list[Held]:
        return [h for h in self.held if h.end is None or h.end > self.now]

    def fits(self, cpu: int, start: int, length: int | None, plans: list[Held]) -> bool:
        horizon = max([start, *(t for h in plans for t in (h.start, h.end) if t is not None)]) + 1
        stop = horizon if length is None else start + length
        return all(
            sum(h.cpu for h in plans if h.holds(t)) + cpu <= self.cpu for t in range(start, stop)
        )

    def earliest(self, cpu: int, length: int | None, plans: list[Held]) -> int | None:
        """The first start from now on where it fits, trying now and each end."""
        starts = sorted(
            {self.now, *(h.end for h in plans if h.end is not None and h.end > self.now)}
        )
        for start in starts:
            if self.fits(cpu, start, length, plans):
                return start
        return None

    def shadow(self, head: Waiting, keep_open: str | None = None) -> int | None:
        """The head's earliest start with every open-ended holder but `keep_open` ended now."""
        plans = [
            h
            if h.end is not None or h.key == keep_open
            else Held(h.key, h.tenant, h.start, self.now, h.cpu)
            for h in self.live()
        ]
        return self.earliest(head.cpu, head.length, plans)

    @staticmethod
    def later(shadow: int | None, was: int | None) -> bool:
        return was is not None and (shadow is None or shadow > was)

    # ------------------------------------------------------------ writes

    def reserve(self, key: str, tenant: str, cpu: int, length: int | None) -> None:
        """A plain reserve (exit 3 when it does not fit, or moves the head's promise)."""
        if not self.fits(cpu, self.now, length, self.live()):
            raise Refused(3)
        new = Held(key, tenant, self.now, None if length is None else self.now + length, cpu)
        head = self.head if self.head is not None and self.head.status == "waiting" else None
        if head is not None and self.priorities[tenant] <= head.priority:
            was = self.shadow(head)
            self.held.append(new)
            moved = self.later(self.shadow(head, keep_open=key), was)
            self.held.remove(new)
            if moved:
                raise Refused(3)
        self.held.append(new)
        self.admission()

    def join(self, key: str, tenant: str, cpu: int, length: int | None) -> None:
        if cpu > self.cpu:
            raise Refused(3)
        self.tickets.append(Waiting(key, tenant, self.priorities[tenant], self.now, cpu, length))
        self.admission()

    def release(self, key: str) -> None:
        held = [h for h in self.live() if h.key == key]
        if not held:
            raise Refused(4)
        self.held.remove(held[0])
        self.admission()

    def poke(self) -> None:
        """A write that changes nothing: the pass alone."""
        self.admission()

    def advance(self, minutes: int) -> None:
        self.now += minutes

    def admission(self) -> list[str]:
        """The pass; the keys of the reservations it made (a ticket's own key)."""
        order = sorted(
            (t for t in self.tickets if t.status == "waiting"),
            key=lambda t: (-t.priority, t.arrival, t.key),  # the key: the ticket's id
        )
        admitted: list[str] = []
        head: Waiting | None = None
        promised: int | None = None
        for ticket in order:
            if not self.fits(ticket.cpu, self.now, ticket.length, self.live()):
                if head is None:
                    head, promised = ticket, self.shadow(ticket)
                continue
            end = None if ticket.length is None else self.now + ticket.length
            new = Held(ticket.key, ticket.tenant, self.now, end, ticket.cpu)
            self.held.append(new)
            if head is not None and self.later(self.shadow(head, keep_open=ticket.key), promised):
                self.held.remove(new)
                continue
            ticket.status = "admitted"
            admitted.append(ticket.key)
        self.head = head
        return admitted
