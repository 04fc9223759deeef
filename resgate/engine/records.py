"""What the engine hands back: plain values, no sessions, no SQL. Rendering
(resgate/render) turns these into tables, bars, JSON and CSV."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, NamedTuple, TypeVar

from resgate.limits import RESOURCES

Removed = TypeVar("Removed")


class Amounts(NamedTuple):
    cpu: int = 0
    memory: int = 0
    gpu: int = 0

    def __add__(self, other: object) -> Amounts:
        assert isinstance(other, Amounts)
        return Amounts(self.cpu + other.cpu, self.memory + other.memory, self.gpu + other.gpu)

    def __sub__(self, other: Amounts) -> Amounts:
        return Amounts(self.cpu - other.cpu, self.memory - other.memory, self.gpu - other.gpu)

    def fits_in(self, other: Amounts) -> bool:
        return self.cpu <= other.cpu and self.memory <= other.memory and self.gpu <= other.gpu

    def is_zero(self) -> bool:
        return self.cpu == 0 and self.memory == 0 and self.gpu == 0

    def asked(self) -> str:
        """What a request asks for, as messages say it: `cpu=2 mem=512 gpu=1`, the
        resources above 0 only (empty when none is)."""
        named = (("cpu", self.cpu), ("mem", self.memory), ("gpu", self.gpu))
        return " ".join(f"{name}={value}" for name, value in named if value)


class Limits(NamedTuple):
    """Quota caps; None means no cap."""

    cpu: int | None = None
    memory: int | None = None
    gpu: int | None = None


def percent(used: int, total: int) -> float:
    """Utilisation in percent, 2 decimals; a resource with total 0 counts as 0 %."""
    return round(100.0 * used / total, 2) if total > 0 else 0.0


def health(utilization: dict[str, float]) -> str:
    highest = max(utilization.values(), default=0.0)
    if highest >= 90:
        return "exhausted"
    if highest >= 60:
        return "warning"
    return "healthy"


@dataclass(frozen=True)
class Truncation:
    """A booked reservation that a higher-priority booking will end early."""

    id: str
    tenant: str
    at: datetime
    by: str | None


@dataclass(frozen=True)
class PoolInfo:
    name: str
    total: Amounts
    reserved: Amounts
    created_at: datetime
    # Each GPU id and the reservation holding it (filled by `pool show`).
    devices: tuple[tuple[int, str | None], ...] = ()
    # Policies (README "Pool policies"): None is unlimited / no TTL.
    per_tenant: int | None = 1
    default_ttl: int | None = None
    max_ttl: int | None = None
    # The tenant of each reservation in `devices`: (reservation id, tenant name).
    holders: tuple[tuple[str, str], ...] = ()
    # Planned truncations (filled by `pool show`, README "Booking ahead").
    truncations: tuple[Truncation, ...] = ()

    @property
    def available(self) -> Amounts:
        return self.total - self.reserved

    @property
    def utilization(self) -> dict[str, float]:
        return {
            res: percent(getattr(self.reserved, res), getattr(self.total, res)) for res in RESOURCES
        }

    @property
    def health(self) -> str:
        return health(self.utilization)


@dataclass(frozen=True)
class Caller:
    """Who runs the command, for the permission checks of README "Sharing one
    machine": the OS user (never RESGATE_ACTOR), and whether the system file names
    them an admin."""

    user: str
    admin: bool = False


@dataclass(frozen=True)
class TenantInfo:
    name: str
    priority: int
    active_reservations: int
    created_at: datetime
    max: Limits
    held: Amounts
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class FreeInfo:
    """What is free in one pool at an instant (`resgate free`)."""

    pool: str
    at: datetime
    free: Amounts
    gpu_ids: tuple[int, ...]
    until: datetime | None  # when a booking next takes some of it; None: nothing does


@dataclass(frozen=True)
class Slot:
    """A window in which a request fits (`resgate slots`)."""

    start: datetime
    free_until: datetime | None  # None: it stays free for ever
    gpu_ids: tuple[int, ...]
    # The reservation (id, tenant) whose end makes the room; None: free at the
    # start asked for.
    freed_by: tuple[str, str] | None


@dataclass(frozen=True)
class Slots:
    tenant: str
    pool: str
    duration: int
    slots: list[Slot]


@dataclass(frozen=True)
class Pardon:
    """A truncated reservation whose preemptor ended before its start (README
    "Booking ahead"): the end it had, the end it has now (None: open) and, when
    that is not its whole planned end, why (what has since been booked there)."""

    id: str
    truncated_at: datetime
    until: datetime | None
    why: str | None = None

    @property
    def whole(self) -> bool:
        return self.why is None


@dataclass(frozen=True)
class ReservationInfo:
    id: str
    tenant: str
    pool: str
    amounts: Amounts
    ttl: int | None
    status: str  # effective: an unswept past-due row shows "expired"
    created_at: datetime
    expires_at: datetime | None
    ended_at: datetime | None
    preempted_by: str | None
    preempted_for: str | None = None
    request_id: str | None = None
    gpu_ids: tuple[int, ...] = ()  # the GPU devices it holds (or held), README "GPU devices"
    # The actor who made it (README "Who is acting"); None when no one is on record.
    created_by: str | None = None
    # The window (README "Booking ahead"); starts_at None only for records built
    # before one is known.
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    preempt_at: datetime | None = None
    lease: bool = False


@dataclass(frozen=True)
class Held:
    """A reservation and the span it holds: until it ended, else until its
    planned end (None: open-ended)."""

    reservation: ReservationInfo
    start: datetime
    end: datetime | None


@dataclass(frozen=True)
class Timeline:
    """A pool's reservations over [start, end) (`resgate timeline`)."""

    pool: str
    start: datetime
    end: datetime
    now: datetime
    total: Amounts
    device_ids: tuple[int, ...]
    held: tuple[Held, ...]


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    pools: list[PoolInfo]
    tenants: list[TenantInfo]
    counts: dict[str, int]  # active now; the others: ended within the window
    window_hours: int


@dataclass(frozen=True)
class Victim:
    """A reservation evicted by `reserve --preempt`, with its tenant's priority."""

    reservation: ReservationInfo
    priority: int


@dataclass(frozen=True)
class ReserveResult:
    reservation: ReservationInfo
    preempted: list[Victim]
    # The transaction's moment: for a replay, later than the reservation's creation.
    now: datetime
    # Victims of the bookings this one cancelled, given their time back.
    pardons: list[Pardon] = field(default_factory=list)


@dataclass(frozen=True)
class Removal(Generic[Removed]):
    """A deleted pool or removed tenant, and the reservations --force released."""

    removed: Removed
    released: list[ReservationInfo]


@dataclass(frozen=True)
class PreemptResult:
    target: str
    preempted: list[ReservationInfo]
    pardons: list[Pardon] = field(default_factory=list)


@dataclass(frozen=True)
class Released:
    """What `unreserve` gave back, and the pardons that followed."""

    reservations: list[ReservationInfo]
    pardons: list[Pardon] = field(default_factory=list)


@dataclass(frozen=True)
class CheckReport:
    problems: list[str]
    pools_checked: int
    integrity: str


@dataclass
class ImportSummary:
    """What `resgate import-state` did (README "Coming from the Go version"), counted as
    the import proceeds."""

    # The created reservations by final status: active, expired, released.
    statuses: dict[str, int]
    created_pools: int = 0
    created_tenants: int = 0
    created_reservations: int = 0
    reused_pools: int = 0
    reused_tenants: int = 0
    skipped: int = 0  # reservations an earlier import already made
    released: int = 0  # of those, left active then and ended in the file since
    deleted_pools: int = 0  # of the created pools, how many as deleted rows
    deleted_tenants: int = 0
    ended_at_import_time: int = 0  # released without a release time in the file


@dataclass(frozen=True)
class StoredEvent:
    """One row of `events` as read back. What resgate wrote is a datetime `at` and
    str columns; a row edited with `sqlite3` may hold anything: then `at` is the
    stored text, and text that is not UTF-8 has its bytes as surrogate escapes."""

    seq: int
    at: datetime | str | None
    actor: str | None
    action: str | None
    subject: str | None
    data: str | None
    prev_hash: str | None
    hash: str | None


def ranges(ids: Iterable[int]) -> str:
    """GPU ids as ranges: `0-1,4-7`."""
    runs: list[list[int]] = []
    for device in sorted(ids):
        if runs and device == runs[-1][1] + 1:
            runs[-1][1] = device
        else:
            runs.append([device, device])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


@dataclass(frozen=True)
class Ticket:
    """A request in the line (README "Waiting in line"), as `queue` shows it."""

    id: str
    pool: str
    tenant: str
    created_by: str
    priority: int
    amounts: Amounts
    gpu_ids: tuple[int, ...] | None
    duration: int | None  # seconds; None: open-ended
    enqueued_at: datetime
    deadline: datetime | None
    status: str  # waiting, admitted, cancelled, timed_out, abandoned
    reservation_id: str | None = None
    ended_at: datetime | None = None
    reason: str | None = None
    position: int | None = None  # 1-based among the pool's waiting tickets
    waiting: int | None = None  # how many wait in the pool
    eta: datetime | None = None  # when it is expected in (None: unknown)
    # Who holds what it waits for now: (tenant, reservation id, planned end or None).
    held_by: tuple[tuple[str, str, datetime | None], ...] = ()
