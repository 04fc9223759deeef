"""Every rule for a request's values, in one place. The engine checks them for every
caller; the CLI calls the same functions before it opens any database (exit 2).

Messages name a request's fields through `spelled`, a map from field name to what the
caller calls it: the engine's callers see the field names (`gpu_ids`), the CLI passes
its option names (`--gpu-ids`, resgate/cli/options.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from resgate.clock import iso
from resgate.errors import InvalidInput
from resgate.limits import MAX_AMOUNT, MAX_DEVICES, PRIORITY_RANGE, RESOURCES, SHOWN_STATUSES

if TYPE_CHECKING:  # annotations only: the CLI imports this module for every command
    from resgate.engine.records import Amounts, Limits

# The width of events.actor (String(128) in resgate/store/models.py and migration
# 0003): PostgreSQL refuses longer, SQLite would store anything, so it is checked
# here for both.
MAX_ACTOR = 128
# C0, DEL and C1: a newline would forge a line of `audit log`, ESC a terminal command.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ID_PATTERN = re.compile(r"[0-9a-f]{16}")
PREFIX_PATTERN = re.compile(r"[0-9a-fA-F]{4,16}")
USER_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")


def check_name(kind: str, name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}: 1-64 characters, letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def check_members(names: Sequence[str]) -> tuple[str, ...]:
    """A tenant's members: OS user names, sorted, each once. `none` is the word
    that clears them on the command line, never a name."""
    for name in names:
        if name == "none" or not USER_PATTERN.fullmatch(name):
            raise InvalidInput(
                f"invalid member name {name!r}: 1-64 characters, letters, digits, "
                "'.', '_', '@' or '-' (and not 'none')"
            )
    return tuple(sorted(set(names)))


def check_actor(value: str, source: str = "RESGATE_ACTOR") -> str:
    """The actor the audit log records (README "The audit log"): printable UTF-8, at most
    MAX_ACTOR characters. `source` names where it came from, for the message."""
    if SURROGATE.search(value):
        # How Python shows bytes of the environment that are not UTF-8.
        raw = value.encode("utf-8", "surrogateescape")
        raise InvalidInput(f"{source} is not valid UTF-8: {_shorten(repr(raw))}")
    if CONTROL.search(value):
        raise InvalidInput(
            f"invalid {source} {_shorten(repr(value))}: control characters (newline, tab, "
            "escape, ...) are not allowed"
        )
    if len(value) > MAX_ACTOR:
        raise InvalidInput(f"{source} is too long: {len(value)} characters, at most {MAX_ACTOR}")
    return value


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_amounts(amounts: Amounts) -> Amounts:
    for resource, value in zip(RESOURCES, amounts, strict=True):
        if not 0 <= value <= MAX_AMOUNT:
            raise InvalidInput(f"{resource} must be between 0 and {MAX_AMOUNT}, got {value}")
    return amounts


def check_priority(priority: int) -> int:
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise InvalidInput(f"priority must be between {low} and {high}, got {priority}")
    return priority


def check_ttl(ttl: int | None) -> int | None:
    if ttl is not None and not 0 <= ttl <= MAX_AMOUNT:
        raise InvalidInput(f"ttl must be between 0 and {MAX_AMOUNT} seconds, got {ttl}")
    return ttl or None


def check_reservation_id(value: str) -> str:
    """A reservation id, or a prefix of one (README "Typing less"): 4 to 16 hex
    digits in any case; returned in lowercase, as ids are stored."""
    if not PREFIX_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid reservation id {value!r}: expected 4 to 16 hex digits "
            "(an id, or the start of one)"
        )
    return value.lower()


def check_limits(limits: Limits) -> Limits:
    for resource, value in zip(RESOURCES, limits, strict=True):
        _check_cap(resource, value)
    return limits


def _check_cap(resource: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_AMOUNT:
        raise InvalidInput(f"max {resource} must be between 0 and {MAX_AMOUNT}, got {value}")


Spelling = Mapping[str, str]
FIELD_NAMES: Spelling = {}  # every field called by its own name


def _called(spelled: Spelling, *fields: str) -> str:
    return ", ".join(spelled.get(field, field) for field in fields)


def check_device_ids(ids: Sequence[int]) -> list[int]:
    if len(set(ids)) != len(ids):
        raise InvalidInput("GPU ids must not repeat")
    if len(ids) > MAX_DEVICES:
        raise InvalidInput(f"a pool can have at most {MAX_DEVICES} GPUs")
    return sorted(ids)


def check_gpu_count(
    gpu: int | None, ids: Sequence[int] | None, spelled: Spelling = FIELD_NAMES
) -> int | None:
    """The number of GPUs asked for: `gpu`, or the number of `ids` (which may stand
    alone); given both, they must agree."""
    if ids is None:
        return gpu
    if gpu is not None and gpu != len(ids):
        raise InvalidInput(
            f"{_called(spelled, 'gpu')} {gpu} and {_called(spelled, 'gpu_ids')} name "
            f"{len(ids)} GPU(s)"
        )
    return len(ids)


def check_request_id(value: str | None, spelled: Spelling = FIELD_NAMES) -> str | None:
    """An idempotency key: 1-128 printable ASCII characters."""
    if value is not None and not (1 <= len(value) <= 128 and all(" " <= c <= "~" for c in value)):
        raise InvalidInput(
            f"invalid {_called(spelled, 'request_id')}: 1-128 printable ASCII characters"
        )
    return value


def check_reservation_request(
    amounts: Amounts,
    gpu_ids: Sequence[int] | None,
    ttl: int | None,
    request_id: str | None,
    spelled: Spelling = FIELD_NAMES,
) -> tuple[Amounts, list[int] | None, int | None]:
    """What `reserve` and `run` ask for, checked: the amounts (with the GPU count
    the ids imply), the TTL (0 is none) and the request id."""
    ids = None if gpu_ids is None else check_device_ids(gpu_ids)
    gpu = check_gpu_count(amounts.gpu or None, ids, spelled) or 0
    amounts = check_amounts(amounts._replace(gpu=gpu))
    ttl = check_ttl(ttl)
    check_request_id(request_id, spelled)
    if amounts.is_zero():
        raise InvalidInput(
            f"a reservation needs at least one of {_called(spelled, *RESOURCES)} above 0"
        )
    return amounts, ids, ttl


def check_pool_totals(
    totals: Amounts, gpu_ids: Sequence[int] | None, spelled: Spelling = FIELD_NAMES
) -> tuple[Amounts, list[int] | None]:
    """A new pool's totals, with the GPU count its ids imply."""
    ids = None if gpu_ids is None else check_device_ids(gpu_ids)
    gpu = check_gpu_count(totals.gpu or None, ids, spelled) or 0
    totals = check_amounts(totals._replace(gpu=gpu))
    if totals.gpu > MAX_DEVICES:
        raise InvalidInput(f"a pool can have at most {MAX_DEVICES} GPUs")
    if totals.is_zero():
        raise InvalidInput(f"a pool needs at least one of {_called(spelled, *RESOURCES)} above 0")
    return totals, ids


def check_resize(
    cpu: int | None,
    memory: int | None,
    gpu: int | None,
    gpu_ids: Sequence[int] | None,
    spelled: Spelling = FIELD_NAMES,
) -> tuple[int | None, list[int] | None]:
    """A pool resize: at least one change, not everything at 0. Returns the GPU
    count (None: unchanged) and the ids."""
    ids = None if gpu_ids is None else check_device_ids(gpu_ids)
    gpu = check_gpu_count(gpu, ids, spelled)
    if cpu is None and memory is None and gpu is None:
        raise InvalidInput(f"give at least one of {_called(spelled, *RESOURCES, 'gpu_ids')}")
    if cpu == 0 and memory == 0 and gpu == 0:
        raise InvalidInput("a pool cannot have all of cpu, memory and gpu at 0")
    return gpu, ids


def check_tenant_change(
    priority: int | None,
    caps: Mapping[str, int | None],
    spelled: Spelling = FIELD_NAMES,
    *,
    has_members: bool = False,
) -> None:
    """A tenant update: a new priority, new caps (None removes one), new members,
    or several of them."""
    if priority is None and not caps and not has_members:
        fields = ("priority", *(f"max_{resource}" for resource in RESOURCES), "members")
        raise InvalidInput(f"give at least one of {_called(spelled, *fields)}")
    unknown = set(caps) - set(RESOURCES)
    if unknown:
        raise InvalidInput(f"unknown resource(s): {', '.join(sorted(unknown))}")
    for resource, cap in caps.items():
        _check_cap(resource, cap)
    if priority is not None:
        check_priority(priority)


def check_status(status: str | None, spelled: Spelling = FIELD_NAMES) -> str | None:
    if status is not None and status not in SHOWN_STATUSES:
        shown = ", ".join(SHOWN_STATUSES)
        raise InvalidInput(f"invalid value for {_called(spelled, 'status')}: {status!r} ({shown})")
    return status


# How far ahead a booking may start (README "Booking ahead").
HORIZON = timedelta(days=366)
# A start this far in the past is taken as now (a command typed a moment ago).
START_SLACK = timedelta(seconds=60)


def check_window(
    now: datetime,
    start: datetime | None,
    end: datetime | None,
    duration: int | None,
    spelled: Spelling = FIELD_NAMES,
) -> tuple[datetime, datetime | None]:
    """A reservation's window (README "Booking ahead"), against the transaction's
    now: a start within the last minute is now; one before that, beyond a year
    ahead, an end not after the start, or a duration beside an end is refused
    (exit 2). Without an end or a duration the window is open."""
    if duration is not None and end is not None:
        raise InvalidInput(
            f"{_called(spelled, 'duration')} and {_called(spelled, 'end')} cannot be used together"
        )
    begins = now if start is None or start <= now else start
    if start is not None and start < now - START_SLACK:
        raise InvalidInput(
            f"the start {iso(start)} is in the past ({_called(spelled, 'start')} needs a "
            "future instant)"
        )
    if begins > now + HORIZON:
        raise InvalidInput(f"the start {iso(begins)} is more than 366 days ahead")
    if duration is not None:
        duration = check_ttl(duration)
        if not duration:
            raise InvalidInput(f"{_called(spelled, 'duration')} must be above 0")
        end = begins + timedelta(seconds=duration)
    if end is not None and end <= begins:
        raise InvalidInput(f"the end {iso(end)} is not after the start {iso(begins)}")
    return begins, end
