"""Moving from the Go tool (README "Coming from the Go version"): `resgate import-state`.

Three steps, each complete before the next, so the first failing check of the order in
README "Coming from the Go version" wins:

1. `read_state` parses the file (exit 1 with line and column) and checks its shape and
   names (exit 1 with the JSON path, e.g. `pools.p.total`). It touches no database.
2. `plan` checks resgate's invariants (negative or huge amounts, priorities, an
   over-committed pool, two active reservations of one tenant in one pool: exit 1
   with the path) and decides every row: final status, times, deleted pools and
   tenants. It is pure, so the command runs it once before opening the database and
   again inside the transaction at the transaction's own `now`.
3. `apply` compares the plan with what the database holds (clashes: exit 4), then
   writes it with its audit events, in the caller's transaction.

Decisions the earlier documents left open are listed in the README ("Coming from the Go
version") and in the docstrings below.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import json
import os
import re
import stat
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import aliased

from resgate.clock import SystemClock
from resgate.engine import audit
from resgate.engine.queries import lock_rows, pool_usage
from resgate.engine.records import Amounts
from resgate.engine.sweep import sweep
from resgate.engine.validation import ID_PATTERN, check_name, check_priority
from resgate.errors import InvalidInput, Refused, ResgateError
from resgate.limits import DEFAULT_PRIORITY, MAX_AMOUNT, RESOURCES
from resgate.store.database import Tx
from resgate.store.models import Pool, Reservation, Tenant

DEFAULT_PATH = "~/.resgate/state.json"
_LOOKUP_CHUNK = 500  # ids per IN (...) when looking up existing reservations
# The largest state file read: 256 MiB. The Go tool rewrote the whole file on every
# change, at some 300 bytes a reservation, so real files are far smaller; the bound
# keeps a wrong PATH (a huge log, /dev/zero's like) from exhausting memory, parsing
# needing several times the file's size.
MAX_STATE_BYTES = 256 * 2**20
_READ_CHUNK = 2**20
# Longer whole numbers are not converted (Python refuses beyond 4,300 digits anyway);
# no amount, ttl or priority needs more than 19.
_MAX_DIGITS = 100
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# RFC 3339 (`T` or `t`, or a space as RFC 3339 §5.6 allows; `Z`/`z` or ±hh:mm).
# Any number of fraction digits is read; beyond microseconds they are truncated.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d is 0-9 only: `٣` is no digit of a timestamp
)


class StateFileError(ResgateError):
    """The state file cannot be read, parsed, or breaks a rule (exit 1)."""

    exit_code = 1


def _fail(path: str, message: str) -> StateFileError:
    return StateFileError(f"{path}: {message}" if path else message)


# ---------------------------------------------------------------- step 1: the file


@dataclass(frozen=True)
class FilePool:
    path: str
    name: str
    total: tuple[int, int, int]
    created_at: datetime | None


@dataclass(frozen=True)
class FileTenant:
    path: str
    name: str
    priority: int | None
    created_at: datetime | None


@dataclass(frozen=True)
class FileReservation:
    path: str
    id: str
    tenant: str
    pool: str
    resources: tuple[int, int, int]
    ttl: int
    created_at: datetime
    expires_at: datetime | None
    released_at: datetime | None
    in_active_map: bool


@dataclass(frozen=True)
class StateFile:
    pools: list[FilePool]
    tenants: list[FileTenant]
    history: list[FileReservation]  # in file order
    active: list[FileReservation]  # the active map, in file order


def read_state(path: Path, display: str) -> StateFile:
    """Read and parse the file, then check its shape and names."""
    return parse_state(_read_file(path.expanduser(), display), display)


def _read_file(path: Path, display: str) -> bytes:
    """The bytes of a regular file of at most MAX_STATE_BYTES.

    Anything else is refused before it is opened: a FIFO would block the open until a
    writer came, a device such as /dev/zero never ends (and opening some devices acts).
    The open itself does not block either (O_NONBLOCK), and what was opened is checked
    again, in case the path changed in between. At most MAX_STATE_BYTES + 1 bytes are
    read, so a file that grows while it is read is caught too."""

    def cannot(reason: str) -> StateFileError:
        return StateFileError(f"cannot read {display}: {reason}")

    try:
        _check_regular(os.stat(path), cannot)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        dangling = path.is_symlink()
        raise cannot("dangling symbolic link" if dangling else exc.strerror or str(exc)) from None
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    try:
        _check_regular(os.fstat(fd), cannot)
        chunks: list[bytes] = []
        total = 0
        while total <= MAX_STATE_BYTES:
            chunk = os.read(fd, min(_READ_CHUNK, MAX_STATE_BYTES + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    raise cannot(f"larger than {_size(MAX_STATE_BYTES)}")


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count % 2**20 == 0 else f"{count} bytes"


def _check_regular(status: os.stat_result, cannot: Callable[[str], StateFileError]) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise cannot(os.strerror(errno.EISDIR))
    if not stat.S_ISREG(status.st_mode):
        raise cannot("not a regular file")
    if status.st_size > MAX_STATE_BYTES:
        raise cannot(f"larger than {_size(MAX_STATE_BYTES)}")


def parse_state(raw: bytes, display: str) -> StateFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise StateFileError(f"{display}: not UTF-8 at line {line}, column {column}") from None
    try:
        # NaN and Infinity: refused as amounts, with their path. So are numbers too long
        # for an int (Python's int-from-text limit would fail here, without a place).
        document = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise StateFileError(
            f"{display}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # the decoder recurses once per level of [ or {
        raise StateFileError(
            f"{display}: invalid JSON: arrays or objects nested too deeply"
        ) from None
    if not isinstance(document, dict):
        raise StateFileError(
            f"{display}: expected a JSON object at the top level, got {_kind(document)}"
        )
    return StateFile(
        pools=[_pool(p, k, v) for k, v, p in _entries(document, "pools")],
        tenants=[_tenant(p, k, v) for k, v, p in _entries(document, "tenants")],
        history=[
            _reservation(f"history[{i}]", None, entry, in_active_map=False)
            for i, entry in enumerate(_array(document.get("history"), "history"))
        ],
        active=[
            _reservation(p, k, v, in_active_map=True)
            for k, v, p in _entries(document, "reservations")
        ],
    )


@dataclass(frozen=True)
class _LongNumber:
    """A whole number of the file with more than _MAX_DIGITS digits: kept as its digit
    count, refused with its path if a field that is read holds it."""

    digits: int


def _parse_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return _LongNumber(digits) if digits > _MAX_DIGITS else int(text)


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    return line, offset - (before.rfind(b"\n") + 1) + 1


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _LongNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _key(base: str, key: str) -> str:
    return f"{base}.{key}" if _SIMPLE_KEY.fullmatch(key) else f"{base}[{json.dumps(key)}]"


def _entries(document: dict[str, Any], name: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """A map of the file: missing or null is empty; each value must be an object."""
    value = document.get(name)
    if value is None:
        return
    if not isinstance(value, dict):
        raise _fail(name, f"expected an object, got {_kind(value)}")
    for key, entry in value.items():
        path = _key(name, key)
        yield key, _object(entry, path), path


def _array(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(path, f"expected an array, got {_kind(value)}")
    return value


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {_kind(value)}")
    return value


def _whole(value: object, path: str) -> int:
    """A whole number; missing or null is 0 (the Go zero value). The range is an
    invariant, checked later."""
    if value is None:
        return 0
    if isinstance(value, _LongNumber):
        raise _fail(path, f"number of {value.digits} digits is out of range")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected a whole number, got {_kind(value)}{_shown(value)}")
    return value


def _shown(value: object) -> str:
    """A scalar as the file wrote it, shortened; nothing for an array or an object
    (which may be huge, or too deeply nested for json.dumps)."""
    if isinstance(value, list | dict):
        return ""
    text = json.dumps(value)
    return f" ({text if len(text) <= 40 else text[:37] + '...'})"


def _file_amounts(entry: dict[str, Any], key: str, path: str) -> tuple[int, int, int]:
    where = f"{path}.{key}"
    value = entry.get(key)
    if value is None:
        return (0, 0, 0)
    amounts = _object(value, where)
    cpu, memory, gpu = (_whole(amounts.get(r), f"{where}.{r}") for r in RESOURCES)
    return (cpu, memory, gpu)


def _text(entry: dict[str, Any], key: str, path: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", f"expected a string, got {_kind(value)}")
    return value


def _name(kind: str, value: str, path: str) -> str:
    try:
        return check_name(kind, value)
    except InvalidInput as exc:
        raise _fail(path, exc.message) from None


def _keyed_name(kind: str, key: str, entry: dict[str, Any], path: str) -> str:
    """The map key is the name; a `name` field, if there, must agree."""
    _name(kind, key, path)
    stated = _text(entry, "name", path)
    if stated is not None and stated != key:
        raise _fail(f"{path}.name", f"{kind} name {stated!r} differs from its key {key!r}")
    return key


def _time(entry: dict[str, Any], key: str, path: str) -> datetime | None:
    value = _text(entry, key, path)
    return None if value is None else parse_timestamp(value, f"{path}.{key}")


def parse_timestamp(value: str, path: str = "") -> datetime:
    """RFC 3339 with any offset and up to nanoseconds (more digits are accepted
    too), as a naive UTC datetime truncated to microseconds."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise _fail(path, f"invalid timestamp {value!r} (RFC 3339 expected)")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zulu, sign, off_hours, off_minutes = match.groups()[6:]
    micro = int((fraction or "").ljust(6, "0")[:6])
    try:
        local = datetime(year, month, day, hour, minute, second, micro)
        if zulu:
            return local
        if int(off_hours) > 23 or int(off_minutes) > 59:
            raise ValueError("offset out of range")
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
        return local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):
        raise _fail(path, f"invalid timestamp {value!r} (RFC 3339 expected)") from None


def _pool(path: str, key: str, entry: dict[str, Any]) -> FilePool:
    name = _keyed_name("pool", key, entry, path)
    total = _file_amounts(entry, "total", path)
    return FilePool(path, name, total, _time(entry, "created_at", path))


def _tenant(path: str, key: str, entry: dict[str, Any]) -> FileTenant:
    name = _keyed_name("tenant", key, entry, path)
    priority = entry.get("priority")
    return FileTenant(
        path,
        name,
        None if priority is None else _whole(priority, f"{path}.priority"),
        _time(entry, "created_at", path),
    )


def _reservation(
    path: str, key: str | None, value: object, *, in_active_map: bool
) -> FileReservation:
    entry = _object(value, path)
    stated = _text(entry, "id", path)
    if key is not None and stated is not None and stated != key:
        raise _fail(f"{path}.id", f"id {stated!r} differs from its key {key!r}")
    rid = key if key is not None else stated
    if rid is None:
        raise _fail(f"{path}.id", "missing")
    if not ID_PATTERN.fullmatch(rid):
        raise _fail(
            path if key is not None else f"{path}.id",
            f"invalid reservation id {rid!r}: expected 16 lowercase hex characters",
        )
    names = {}
    for field_, kind in (("tenant_name", "tenant"), ("pool_name", "pool")):
        text = _text(entry, field_, path)
        if text is None:
            raise _fail(f"{path}.{field_}", "missing")
        names[kind] = _name(kind, text, f"{path}.{field_}")
    created_at = _time(entry, "created_at", path)
    if created_at is None:
        raise _fail(f"{path}.created_at", "missing")
    return FileReservation(
        path=path,
        id=rid,
        tenant=names["tenant"],
        pool=names["pool"],
        resources=_file_amounts(entry, "resources", path),
        ttl=_whole(entry.get("ttl"), f"{path}.ttl"),
        created_at=created_at,
        expires_at=_time(entry, "expires_at", path),
        released_at=_time(entry, "released_at", path),
        in_active_map=in_active_map,
    )


# ---------------------------------------------------------------- step 2: the plan


@dataclass
class PlannedPool:
    name: str
    total: Amounts
    created_at: datetime | None  # None: the import time
    deleted: bool


@dataclass
class PlannedTenant:
    name: str
    priority: int
    created_at: datetime | None
    deleted: bool


@dataclass
class PlannedReservation:
    path: str
    id: str
    tenant: str
    pool: str
    amounts: Amounts
    ttl: int | None
    created_at: datetime
    expires_at: datetime | None
    status: str  # active, expired or released
    ended_at: datetime | None  # for released: None means the import time
    in_active_map: bool


@dataclass
class Plan:
    pools: list[PlannedPool]
    tenants: list[PlannedTenant]
    reservations: list[PlannedReservation]  # creation order


def plan(state: StateFile, now: datetime) -> Plan:
    """Check resgate's invariants and decide every row, as of `now`."""
    pools = {p.name: _planned_pool(p) for p in state.pools}
    tenants = {t.name: _planned_tenant(t) for t in state.tenants}
    merged = _merge(state)
    reservations = [_planned_reservation(r, now) for r in merged]
    _check_live_names(reservations, pools, tenants)
    _check_capacity(reservations, pools)
    # History naming a pool or tenant the maps no longer have (the Go tool kept the
    # history of deleted ones): a deleted row; a pool's totals are the largest
    # amounts one of its reservations held, per resource.
    for r in reservations:
        if r.pool not in pools:
            pools[r.pool] = PlannedPool(r.pool, r.amounts, r.created_at, True)
        elif pools[r.pool].deleted:
            held = zip(pools[r.pool].total, r.amounts, strict=True)
            pools[r.pool].total = Amounts(*(max(a, b) for a, b in held))
        if r.tenant not in tenants:
            tenants[r.tenant] = PlannedTenant(r.tenant, DEFAULT_PRIORITY, r.created_at, True)
    return Plan(list(pools.values()), list(tenants.values()), reservations)


def _in_range(value: int, path: str, what: str = "amount") -> int:
    if value < 0:
        raise _fail(path, f"negative {what} {value}")
    if value > MAX_AMOUNT:
        raise _fail(path, f"{what} {value} is above {MAX_AMOUNT}")
    return value


def _checked(values: tuple[int, int, int], path: str) -> Amounts:
    return Amounts(*(_in_range(v, f"{path}.{r}") for v, r in zip(values, RESOURCES, strict=True)))


def _planned_pool(pool: FilePool) -> PlannedPool:
    total = _checked(pool.total, f"{pool.path}.total")
    return PlannedPool(pool.name, total, pool.created_at, False)


def _planned_tenant(tenant: FileTenant) -> PlannedTenant:
    priority = DEFAULT_PRIORITY if tenant.priority is None else tenant.priority
    try:
        check_priority(priority)
    except InvalidInput as e:
        raise _fail(f"{tenant.path}.priority", e.message) from None
    return PlannedTenant(tenant.name, priority, tenant.created_at, False)


def _identity(r: FileReservation) -> tuple[object, ...]:
    return (r.tenant, r.pool, r.resources, r.created_at)


def _merge(state: StateFile) -> list[FileReservation]:
    """One entry per id, in creation order (ties: order of first appearance,
    history first). The same id twice must be the same reservation; the active
    map's entry, else the last one, gives the expiry and release time."""
    by_id: dict[str, FileReservation] = {}
    first_seen: dict[str, int] = {}
    for entry in [*state.history, *state.active]:
        earlier = by_id.get(entry.id)
        if earlier is None:
            first_seen[entry.id] = len(first_seen)
            by_id[entry.id] = entry
            continue
        if _identity(earlier) != _identity(entry):
            raise _fail(
                entry.path,
                f"reservation '{entry.id}' differs from {earlier.path} (same id, different "
                "tenant, pool, resources or created_at)",
            )
        keep = entry if entry.in_active_map or not earlier.in_active_map else earlier
        by_id[entry.id] = replace(keep, in_active_map=earlier.in_active_map or entry.in_active_map)
    return sorted(by_id.values(), key=lambda r: (r.created_at, first_seen[r.id]))


def _planned_reservation(r: FileReservation, now: datetime) -> PlannedReservation:
    amounts = _checked(r.resources, f"{r.path}.resources")
    if r.ttl > MAX_AMOUNT:
        raise _fail(f"{r.path}.ttl", f"ttl {r.ttl} is above {MAX_AMOUNT} seconds")
    ttl = r.ttl if r.ttl > 0 else None  # 0 or negative: no expiry, whatever expires_at says
    expires_at: datetime | None = None
    if ttl is not None:
        try:
            expires_at = r.expires_at or r.created_at + timedelta(seconds=ttl)
        except OverflowError:
            raise _fail(f"{r.path}.ttl", "created_at + ttl is out of range") from None
    if r.released_at is not None and r.released_at < r.created_at:
        raise _fail(f"{r.path}.released_at", "released before it was created")
    status, ended_at = "released", r.released_at
    if r.in_active_map:
        expired = expires_at is not None and expires_at <= now
        status, ended_at = ("expired", expires_at) if expired else ("active", None)
    return PlannedReservation(
        path=r.path,
        id=r.id,
        tenant=r.tenant,
        pool=r.pool,
        amounts=amounts,
        ttl=ttl,
        created_at=r.created_at,
        expires_at=expires_at,
        status=status,
        ended_at=ended_at,
        in_active_map=r.in_active_map,
    )


def _check_live_names(
    reservations: list[PlannedReservation],
    pools: dict[str, PlannedPool],
    tenants: dict[str, PlannedTenant],
) -> None:
    """A reservation still held must name a pool and a tenant that still exist."""
    for r in reservations:
        if r.in_active_map and r.pool not in pools:
            raise _fail(
                f"{r.path}.pool_name",
                f"active reservation in pool '{r.pool}', which is not in pools",
            )
        if r.in_active_map and r.tenant not in tenants:
            raise _fail(
                f"{r.path}.tenant_name",
                f"active reservation of tenant '{r.tenant}', which is not in tenants",
            )


def _check_capacity(reservations: list[PlannedReservation], pools: dict[str, PlannedPool]) -> None:
    used: dict[str, Amounts] = defaultdict(Amounts)
    holder: dict[tuple[str, str], str] = {}
    for r in reservations:
        if r.status != "active":
            continue
        other = holder.setdefault((r.tenant, r.pool), r.id)
        if other != r.id:
            raise _fail(
                r.path,
                f"tenant '{r.tenant}' already has active reservation '{other}' in pool '{r.pool}'",
            )
        used[r.pool] = used[r.pool] + r.amounts
        total = pools[r.pool].total
        for i, resource in enumerate(RESOURCES):
            if used[r.pool][i] > total[i]:
                raise _fail(
                    f"{r.path}.resources.{resource}",
                    f"pool '{r.pool}' over-committed: its active reservations hold "
                    f"{resource} {used[r.pool][i]}, its total is {total[i]}",
                )


# ---------------------------------------------------------------- step 3: the database


@dataclass
class Summary:
    created_pools: int = 0
    created_tenants: int = 0
    created_reservations: int = 0
    reused_pools: int = 0
    reused_tenants: int = 0
    skipped: int = 0
    released: int = 0
    deleted_pools: int = 0  # of the created pools, how many as deleted rows
    deleted_tenants: int = 0
    statuses: dict[str, int] = field(
        default_factory=lambda: {"active": 0, "expired": 0, "released": 0}
    )
    ended_at_import_time: int = 0
    gpu_devices_assigned: bool = False

    def as_dict(self, dry_run: bool) -> dict[str, Any]:
        return {
            "created": {
                "pools": self.created_pools,
                "tenants": self.created_tenants,
                "reservations": self.created_reservations,
            },
            "reused": {"pools": self.reused_pools, "tenants": self.reused_tenants},
            "skipped": self.skipped,
            "released": self.released,
            "created_deleted": {"pools": self.deleted_pools, "tenants": self.deleted_tenants},
            "statuses": dict(self.statuses),
            "ended_at_import_time": self.ended_at_import_time,
            "dry_run": dry_run,
        }


@dataclass(frozen=True)
class _Existing:
    id: str
    tenant: str
    pool: str
    tenant_id: int
    pool_id: int
    amounts: Amounts
    created_at: datetime
    status: str


def apply(tx: Tx, state: StateFile) -> Summary:
    """Import `state` in the caller's transaction (README "Coming from the Go version")."""
    sweep(tx)  # as every write does: due rows are expired before anything is compared
    the_plan = plan(state, tx.now)
    summary = Summary()
    live_pools = _existing_live(tx, Pool, [p.name for p in the_plan.pools if not p.deleted])
    live_tenants = _existing_live(tx, Tenant, [t.name for t in the_plan.tenants if not t.deleted])
    for p in the_plan.pools:
        row = live_pools.get(p.name) if not p.deleted else None
        if row is not None and Amounts(row.cpu, row.memory, row.gpu) != p.total:
            raise Refused(
                f"pool '{p.name}' already exists with {_fmt(Amounts(row.cpu, row.memory, row.gpu))}"
                f"; the state file has {_fmt(p.total)}"
            )
    for t in the_plan.tenants:
        row = live_tenants.get(t.name) if not t.deleted else None
        if row is not None and row.priority != t.priority:
            raise Refused(
                f"tenant '{t.name}' already exists with priority {row.priority}; "
                f"the state file has priority {t.priority}"
            )
    existing = _existing_reservations(tx, [r.id for r in the_plan.reservations])
    new: list[PlannedReservation] = []
    to_release: list[tuple[PlannedReservation, _Existing]] = []
    for r in the_plan.reservations:
        old = existing.get(r.id)
        if old is None:
            new.append(r)
            continue
        differs = [
            what
            for what, mine, theirs in (
                ("tenant", r.tenant, old.tenant),
                ("pool", r.pool, old.pool),
                ("amounts", r.amounts, old.amounts),
                ("created_at", r.created_at, old.created_at),
            )
            if mine != theirs
        ]
        if differs:
            raise Refused(
                f"reservation '{r.id}' already exists with a different {', '.join(differs)}"
            )
        summary.skipped += 1
        if old.status == "active" and not r.in_active_map:
            to_release.append((r, old))

    # Rows for the pools and tenants: reused, found through skipped reservations
    # (a deleted one an earlier import made), or new.
    deleted_pools = {p.name for p in the_plan.pools if p.deleted}
    deleted_tenants = {t.name for t in the_plan.tenants if t.deleted}
    pool_ids: dict[str, int] = {}
    tenant_ids: dict[str, int] = {}
    for old in existing.values():
        if old.pool in deleted_pools:
            pool_ids.setdefault(old.pool, old.pool_id)
        if old.tenant in deleted_tenants:
            tenant_ids.setdefault(old.tenant, old.tenant_id)
    for name, row in live_pools.items():
        pool_ids[name] = row.id
    for name, row in live_tenants.items():
        tenant_ids[name] = row.id
    lock_rows(tx, Pool, sorted(pool_ids.values()))
    lock_rows(tx, Tenant, sorted(tenant_ids.values()))
    _check_against_existing(tx, new, to_release, pool_ids, tenant_ids, the_plan)

    changes: list[audit.Change] = []
    ends: list[audit.Change] = []
    new_pools: list[tuple[PlannedPool, Pool]] = []
    for p in the_plan.pools:
        if p.name in pool_ids:
            summary.reused_pools += 1
            continue
        pool = Pool(
            name=p.name,
            cpu=p.total.cpu,
            memory=p.total.memory,
            gpu=p.total.gpu,
            created_at=p.created_at or tx.now,
            deleted_at=tx.now if p.deleted else None,
        )
        tx.session.add(pool)
        new_pools.append((p, pool))
    new_tenants: list[tuple[PlannedTenant, Tenant]] = []
    for t in the_plan.tenants:
        if t.name in tenant_ids:
            summary.reused_tenants += 1
            continue
        tenant = Tenant(
            name=t.name,
            priority=t.priority,
            created_at=t.created_at or tx.now,
            deleted_at=tx.now if t.deleted else None,
        )
        tx.session.add(tenant)
        new_tenants.append((t, tenant))
    tx.session.flush()
    for p, pool in new_pools:
        pool_ids[p.name] = pool.id
        summary.created_pools += 1
        summary.deleted_pools += p.deleted
        changes.append(
            audit.Change(
                "pool.create",
                p.name,
                {**_amounts(p.total), "imported": True, "created_at": audit.iso(pool.created_at)},
            )
        )
        if p.deleted:
            ends.append(audit.Change("pool.delete", p.name, _deleted_data()))
    for t, tenant in new_tenants:
        tenant_ids[t.name] = tenant.id
        summary.created_tenants += 1
        summary.deleted_tenants += t.deleted
        changes.append(
            audit.Change(
                "tenant.add",
                t.name,
                {
                    "priority": t.priority,
                    "max": dict.fromkeys(RESOURCES),
                    "imported": True,
                    "created_at": audit.iso(tenant.created_at),
                },
            )
        )
        if t.deleted:
            ends.append(audit.Change("tenant.remove", t.name, _deleted_data()))
    _pool_devices(tx, [pool for p, pool in new_pools])

    # Reservations an earlier import left active that the Go tool has since ended.
    if to_release:
        _release(tx, to_release)
        summary.released = len(to_release)
        for r, _ in to_release:
            ended = r.ended_at or tx.now
            changes.append(
                audit.Change(
                    "reservation.release",
                    r.id,
                    {"imported": True, "reason": "import-state", "ended_at": audit.iso(ended)},
                )
            )

    rows = []
    for r in new:
        ended_at = r.ended_at
        if r.status == "released" and ended_at is None:
            ended_at = tx.now
            summary.ended_at_import_time += 1
        summary.statuses[r.status] += 1
        rows.append(
            {
                "id": r.id,
                "tenant_id": tenant_ids[r.tenant],
                "pool_id": pool_ids[r.pool],
                "cpu": r.amounts.cpu,
                "memory": r.amounts.memory,
                "gpu": r.amounts.gpu,
                "ttl": r.ttl,
                "status": r.status,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "ended_at": ended_at,
            }
        )
        changes.append(
            audit.Change(
                "reservation.create",
                r.id,
                {
                    "tenant": r.tenant,
                    "pool": r.pool,
                    **_amounts(r.amounts),
                    "ttl": r.ttl,
                    "created_at": audit.iso(r.created_at),
                    "imported": True,
                },
            )
        )
        if r.status == "expired":
            assert r.expires_at is not None
            changes.append(
                audit.Change(
                    "reservation.expire",
                    r.id,
                    {"expires_at": audit.iso(r.expires_at), "imported": True},
                )
            )
        elif r.status == "released":
            changes.append(
                audit.Change(
                    "reservation.release",
                    r.id,
                    {"imported": True, "ended_at": audit.iso(ended_at or tx.now)},
                )
            )
    if rows:
        tx.session.execute(insert(Reservation), rows)
    summary.created_reservations = len(rows)
    summary.gpu_devices_assigned = _assign_devices(
        tx, [r for r in new if r.status == "active" and r.amounts.gpu > 0], pool_ids
    )
    audit.record(tx, [*changes, *ends])
    return summary


def _fmt(amounts: Amounts) -> str:
    return f"cpu={amounts.cpu} memory={amounts.memory} gpu={amounts.gpu}"


def _amounts(amounts: Amounts) -> dict[str, int]:
    return dict(zip(RESOURCES, amounts, strict=True))


def _deleted_data() -> dict[str, Any]:
    return {"force": False, "released": [], "imported": True}


def _existing_live(tx: Tx, model: Any, names: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in _chunks(names):
        rows = tx.session.scalars(
            select(model).where(model.name.in_(chunk), model.deleted_at.is_(None))
        )
        found.update({row.name: row for row in rows})
    return found


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _LOOKUP_CHUNK):
        yield values[start : start + _LOOKUP_CHUNK]


def _existing_reservations(tx: Tx, ids: list[str]) -> dict[str, _Existing]:
    tenant, pool = aliased(Tenant), aliased(Pool)
    found: dict[str, _Existing] = {}
    for chunk in _chunks(ids):
        rows = tx.session.execute(
            select(
                Reservation.id,
                tenant.name,
                pool.name,
                Reservation.tenant_id,
                Reservation.pool_id,
                Reservation.cpu,
                Reservation.memory,
                Reservation.gpu,
                Reservation.created_at,
                Reservation.status,
            )
            .join(tenant, tenant.id == Reservation.tenant_id)
            .join(pool, pool.id == Reservation.pool_id)
            .where(Reservation.id.in_(chunk))
        )
        for rid, t, p, tid, pid, cpu, memory, gpu, created_at, status in rows:
            found[rid] = _Existing(
                rid, t, p, tid, pid, Amounts(cpu, memory, gpu), created_at, status
            )
    return found


def _check_against_existing(
    tx: Tx,
    new: list[PlannedReservation],
    to_release: list[tuple[PlannedReservation, _Existing]],
    pool_ids: dict[str, int],
    tenant_ids: dict[str, int],
    the_plan: Plan,
) -> None:
    """New active reservations in pools and tenants the database already has:
    no second active reservation of a tenant in a pool, no over-committed pool."""
    arriving = [r for r in new if r.status == "active" and r.pool in pool_ids]
    if not arriving:
        return
    leaving = {old.id for _, old in to_release}
    reused_pools = sorted({pool_ids[r.pool] for r in arriving})
    held = {
        (tid, pid): rid
        for rid, tid, pid in tx.session.execute(
            select(Reservation.id, Reservation.tenant_id, Reservation.pool_id).where(
                Reservation.status == "active", Reservation.pool_id.in_(reused_pools)
            )
        )
        if rid not in leaving
    }
    for r in arriving:
        other = held.get((tenant_ids.get(r.tenant, -1), pool_ids[r.pool]))
        if other is not None:
            raise Refused(
                f"tenant '{r.tenant}' already has active reservation '{other}' in pool "
                f"'{r.pool}'; the state file's '{r.id}' cannot be imported active"
            )
    usage = pool_usage(tx, reused_pools)
    for _, old in to_release:
        if old.pool_id in usage:
            usage[old.pool_id] = usage[old.pool_id] - old.amounts
    totals = {p.name: p.total for p in the_plan.pools}
    for r in arriving:
        pid = pool_ids[r.pool]
        usage[pid] = usage.get(pid, Amounts()) + r.amounts
        for i, resource in enumerate(RESOURCES):
            if usage[pid][i] > totals[r.pool][i]:
                raise Refused(
                    f"importing '{r.id}' would over-commit pool '{r.pool}': {resource} "
                    f"{usage[pid][i]} held, total {totals[r.pool][i]}"
                )


def _release(tx: Tx, to_release: list[tuple[PlannedReservation, _Existing]]) -> None:
    for r, _ in to_release:
        tx.session.execute(
            update(Reservation)
            .where(Reservation.id == r.id, Reservation.status == "active")
            .values(status="released", ended_at=r.ended_at or tx.now)
            .execution_options(synchronize_session=False)
        )
    devices = _devices()
    if devices is not None and hasattr(devices, "free"):
        devices.free(tx, [r.id for r, _ in to_release])


# GPU devices (README "GPU devices") arrive with resgate.engine.devices; until then, or while
# that module cannot be imported, an import gives out no device ids.


def _devices() -> ModuleType | None:
    name = "resgate.engine.devices"
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except ImportError:
        return None


def _pool_devices(tx: Tx, pools: Iterable[Pool]) -> None:
    """New pools get GPU ids 0..n-1, as `pool create --gpu n` names them."""
    devices = _devices()
    if devices is None or not hasattr(devices, "add") or not hasattr(devices, "pool_ids"):
        return
    for pool in pools:
        if pool.gpu > 0 and not devices.pool_ids(tx, pool.id):
            devices.add(tx, pool.id, range(pool.gpu))


def _assign_devices(
    tx: Tx, reservations: list[PlannedReservation], pool_ids: dict[str, int]
) -> bool:
    """The lowest free GPU ids, in creation order."""
    devices = _devices()
    if devices is None:
        return False
    if hasattr(devices, "assign_lowest"):
        for r in reservations:
            devices.assign_lowest(tx, r.id, pool_ids[r.pool], r.amounts.gpu)
        return True
    if hasattr(devices, "assign"):
        for r in reservations:
            devices.assign(tx, r.pool, pool_ids[r.pool], r.id, r.amounts.gpu)
        return True
    return False


def now() -> datetime:
    """The local clock, for checking the file before the database is opened (the
    transaction checks again at its own `now`)."""
    return SystemClock().now()


def describe(summary: Summary, source: str) -> str:
    """The human summary: what `--json` says, in words."""

    def created(count: int, deleted: int) -> str:
        return f"{count} created" + (f" ({deleted} of them deleted)" if deleted else "")

    s = summary
    lines = [
        f"Imported {source}",
        f"Pools: {created(s.created_pools, s.deleted_pools)}, {s.reused_pools} reused",
        f"Tenants: {created(s.created_tenants, s.deleted_tenants)}, {s.reused_tenants} reused",
        f"Reservations: {s.created_reservations} created ({s.statuses['active']} active, "
        f"{s.statuses['expired']} expired, {s.statuses['released']} released), "
        f"{s.skipped} skipped (already imported)",
    ]
    if s.ended_at_import_time:
        lines.append(
            f"{s.ended_at_import_time} released reservation(s) had no release time in the "
            "file: they ended at the import time"
        )
    if s.released:
        lines.append(
            f"{s.released} reservation(s) an earlier import left active, no longer active "
            "in the file: released now"
        )
    return "\n".join(lines)
