"""Parsing shared by commands: amounts, names, durations, timestamps, ids.
Everything here is checked before any database is opened (exit 2)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from resgate.engine.errors import InvalidInput
from resgate.engine.validation import (
    MAX_AMOUNT,
    check_name,
    check_reservation_id,
)

if TYPE_CHECKING:
    from resgate.engine.records import Amounts

DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
DIGITS = re.compile(r"[0-9]+")


def amount(option: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or int(value) > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for {option}: {value!r} (a whole number from 0 to {MAX_AMOUNT})"
        )
    return int(value)


def cap(option: str, value: str) -> int | None:
    """A quota cap: an amount, or `none` for no cap."""
    if value == "none":
        return None
    return amount(option, value)


def amount_or_zero(option: str, value: str | None) -> int:
    return amount(option, value) or 0


def priority(value: str | None) -> int | None:
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or not 1 <= int(value) <= 10:
        raise InvalidInput(f"invalid value for --priority: {value!r} (a whole number from 1 to 10)")
    return int(value)


def name(kind: str, value: str) -> str:
    return check_name(kind, value)


def reservation_id(value: str) -> str:
    return check_reservation_id(value)


def seconds(option: str, value: str | None) -> int | None:
    """Seconds (`300`) or a duration (`90s`, `5m`, `1h30m`, `1d`)."""
    if value is None:
        return None
    total: int | None = None
    if DIGITS.fullmatch(value):
        total = int(value)
    else:
        match = DURATION.fullmatch(value)
        if match and value:
            days, hours, minutes, secs = (int(part or 0) for part in match.groups())
            total = days * 86400 + hours * 3600 + minutes * 60 + secs
    if total is None or total > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid duration for {option}: {value!r} (seconds, or like 90s, 5m, 1h30m, 1d; "
            f"at most {MAX_AMOUNT}s)"
        )
    return total


def interval(value: str) -> float:
    try:
        parsed = float(value)
    except ValueError:
        parsed = math.nan
    if not math.isfinite(parsed) or parsed <= 0:
        raise InvalidInput(f"invalid value for --interval: {value!r} (seconds, above 0)")
    return parsed


def count(value: str | None) -> int | None:
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or int(value) < 1:
        raise InvalidInput(f"invalid value for --count: {value!r} (a whole number, at least 1)")
    return int(value)


def when(value: str, now: datetime) -> datetime:
    """An ISO 8601 timestamp (offset honoured, else local time; a date alone is local
    midnight) or a duration meaning that long ago. Returns naive UTC."""
    if not DIGITS.fullmatch(value) and DURATION.fullmatch(value) and value:
        ago = seconds("--since", value)
        assert ago is not None
        return now - timedelta(seconds=ago)
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"invalid value for --since: {value!r} (an ISO 8601 time like 2026-11-24T13:05:00Z, "
            "a date, or a duration like 24h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time
    return parsed.astimezone(UTC).replace(tzinfo=None)


def color(value: str) -> str:
    if value not in ("auto", "always", "never"):
        raise InvalidInput(f"invalid value for --color: {value!r} (auto, always or never)")
    return value


def sequence(option: str, value: str | None) -> int | None:
    """An audit sequence number (0 or more)."""
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or int(value) > MAX_AMOUNT:
        raise InvalidInput(f"invalid value for {option}: {value!r} (a whole number, 0 or more)")
    return int(value)


EXPECTED_HEAD = re.compile(r"([0-9]+):([0-9a-f]{64})")


def expected_head(value: str | None) -> tuple[int, str] | None:
    """`--expect SEQ:HASH`, as printed by `audit verify` and `export`."""
    if value is None:
        return None
    match = EXPECTED_HEAD.fullmatch(value)
    if not match or int(match.group(1)) < 1:
        raise InvalidInput(
            f"invalid value for --expect: {value!r} (SEQ:HASH, the hash 64 lowercase hex digits)"
        )
    return int(match.group(1)), match.group(2)


GPU_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def gpu_ids(value: str | None) -> list[int] | None:
    """`--gpu-ids 0,1,4-7`: GPU device ids, with ranges."""
    if value is None:
        return None
    ids: list[int] = []
    for part in value.split(","):
        match = GPU_RANGE.fullmatch(part.strip())
        low = int(match.group(1)) if match else -1
        high = int(match.group(2) or low) if match else -1
        if not match or high < low or high > MAX_AMOUNT or high - low >= 65_536:
            raise InvalidInput(
                f"invalid value for --gpu-ids: {value!r} (ids and ranges like 0,1,4-7)"
            )
        ids.extend(range(low, high + 1))
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"invalid value for --gpu-ids: {value!r} (an id is repeated)")
    return ids


def gpu_count(gpu: str | None, ids: list[int] | None) -> int | None:
    """--gpu, or the number of --gpu-ids (which may stand alone); given both, the
    counts must match."""
    count = amount("--gpu", gpu)
    if ids is None:
        return count
    if count is not None and count != len(ids):
        raise InvalidInput(f"--gpu {count} and --gpu-ids name {len(ids)} GPU(s)")
    return len(ids)


def request(
    cpu: str | None, memory: str | None, gpu: str | None, ids: str | None
) -> tuple[Amounts, list[int] | None]:
    """What `reserve` and `run` ask for: amounts, and the GPU ids if named."""
    from resgate.engine.records import Amounts

    devices = gpu_ids(ids)
    amounts = Amounts(
        amount_or_zero("--cpu", cpu),
        amount_or_zero("--memory", memory),
        gpu_count(gpu, devices) or 0,
    )
    return amounts, devices
