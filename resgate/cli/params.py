"""Parsing shared by commands: amounts, names, durations, timestamps, ids.
Everything here is checked before any database is opened (exit 2)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from resgate.cli.options import FLAGS
from resgate.engine.validation import check_gpu_count, check_reservation_id
from resgate.errors import InvalidInput
from resgate.limits import MAX_AMOUNT, MAX_DEVICES, PRIORITY_RANGE

if TYPE_CHECKING:
    from resgate.engine.records import Amounts

# ASCII digits only: \d and int() would also take `٣` or `３`. Units in descending
# order, each at most once: 1w2d, 1h30min, 2days, 90sec.
DURATION = re.compile(
    r"(?:([0-9]+)(?:weeks|week|w))?(?:([0-9]+)(?:days|day|d))?(?:([0-9]+)(?:hours|hour|h))?"
    r"(?:([0-9]+)(?:min|m))?(?:([0-9]+)(?:sec|s))?"
)
DURATION_UNITS = (604800, 86400, 3600, 60, 1)
# A memory size: MB as a whole number, or a number with a binary unit (1G = 1024 MB).
SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|mb|mib|g|gb|gib|t|tb|tib)", re.IGNORECASE)
SIZE_FACTORS = {"m": 1, "g": 1024, "t": 1024 * 1024}
MEMORY_OPTIONS = ("--memory", "--max-memory")
DIGITS = re.compile(r"[0-9]+")
# What float() reads, in ASCII and without `_`, spaces, inf or nan.
DECIMAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
MAX_INTERVAL = 86_400  # seconds: one day between draws is plenty, and time stays finite


def whole(text: str) -> int:
    """ASCII digits as an int; anything above MAX_AMOUNT as MAX_AMOUNT + 1, without
    converting thousands of digits (int() refuses over 4,300, and is slow)."""
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= 10 else MAX_AMOUNT + 1


def shown(value: str, limit: int = 80) -> str:
    """A value quoted for a message, cut short when long (a --gpu-ids of 1,000
    ranges is no use on one line)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...' ({len(value)} characters)"


def amount(option: str, value: str | None) -> int | None:
    if value is None:
        return None
    if option in MEMORY_OPTIONS:
        return megabytes(option, value)
    if not DIGITS.fullmatch(value) or whole(value) > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for {option}: {shown(value)} (a whole number from 0 to {MAX_AMOUNT})"
        )
    return whole(value)


def megabytes(option: str, value: str) -> int:
    """`--memory`: MB (`512`), or a size with a binary unit (`512M`, `8G`, `1.5G`,
    `2T`, also MB/GB/TB/MiB/GiB/TiB, any case) that comes to a whole number of MB."""
    from fractions import Fraction

    total: int | None = None
    if DIGITS.fullmatch(value):
        total = whole(value)
    else:
        match = SIZE.fullmatch(value)
        if match and len(match.group(1)) <= 12:
            exact = Fraction(match.group(1)) * SIZE_FACTORS[match.group(2)[0].lower()]
            total = int(exact) if exact.denominator == 1 else None
    if total is None or total > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for {option}: {shown(value)} (MB, or a size like 512M, 8G, 1.5T; "
            f"at most {MAX_AMOUNT} MB)"
        )
    return total


def cap(option: str, value: str) -> int | None:
    """A quota cap: an amount, or `none` for no cap."""
    if value == "none":
        return None
    return amount(option, value)


def amount_or_zero(option: str, value: str | None) -> int:
    return amount(option, value) or 0


def policy(option: str, value: str) -> int | None:
    """A pool policy: `--per-tenant N|unlimited`, `--default-ttl D|none`, `--max-ttl D|none`."""
    if option == "--per-tenant":
        if value == "unlimited":
            return None
        if not DIGITS.fullmatch(value) or not 1 <= whole(value) <= MAX_AMOUNT:
            raise InvalidInput(
                f"invalid value for {option}: {shown(value)} "
                f"(a whole number from 1 to {MAX_AMOUNT}, or unlimited)"
            )
        return whole(value)
    if value == "none":
        return None
    length = seconds(option, value)
    if not length:
        raise InvalidInput(f"invalid value for {option}: {shown(value)} (a duration, or none)")
    return length


def priority(value: str | None) -> int | None:
    if value is None:
        return None
    low, high = PRIORITY_RANGE
    if not DIGITS.fullmatch(value) or not low <= whole(value) <= high:
        raise InvalidInput(
            f"invalid value for --priority: {shown(value)} (a whole number from {low} to {high})"
        )
    return whole(value)


def reservation_id(value: str) -> str:
    return check_reservation_id(value)


def seconds(option: str, value: str | None) -> int | None:
    """Seconds (`300`) or a duration (`90s`, `5m`, `1h30min`, `2days`, `1w`)."""
    if value is None:
        return None
    total: int | None = None
    if DIGITS.fullmatch(value):
        total = whole(value)
    else:
        match = DURATION.fullmatch(value)
        if match and value:
            parts = (whole(part or "0") for part in match.groups())
            total = sum(count * unit for count, unit in zip(parts, DURATION_UNITS, strict=True))
    if total is None or total > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid duration for {option}: {shown(value)} (seconds, or like 90s, 5m, "
            f"1h30min, 2days, 1w; at most {MAX_AMOUNT}s)"
        )
    return total


def interval(value: str) -> float:
    """`watch --interval`: decimal seconds, above 0 and at most MAX_INTERVAL (a
    sleep of 1e308 s overflows the platform's time_t)."""
    parsed = float(value) if DECIMAL.fullmatch(value) else math.nan
    if math.isnan(parsed) or parsed <= 0:
        raise InvalidInput(f"invalid value for --interval: {shown(value)} (seconds, above 0)")
    if parsed > MAX_INTERVAL:
        raise InvalidInput(
            f"invalid value for --interval: {shown(value)} (seconds, above 0 and at most "
            f"{MAX_INTERVAL}, one day)"
        )
    return parsed


def count(value: str | None) -> int | None:
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or whole(value) < 1:
        raise InvalidInput(
            f"invalid value for --count: {shown(value)} (a whole number, at least 1)"
        )
    if whole(value) > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for --count: {shown(value)} (a whole number from 1 to {MAX_AMOUNT})"
        )
    return whole(value)


@dataclass(frozen=True)
class Since:
    """`--since WHEN`, checked before any database is opened. A duration means that
    long before the transaction's now, so `at(now)` resolves it inside."""

    text: str
    absolute: datetime | None = None
    ago: int = 0

    def at(self, now: datetime) -> datetime:
        if self.absolute is not None:
            return self.absolute
        try:
            return now - timedelta(seconds=self.ago)
        except OverflowError:  # before year 1
            raise _out_of_range(self.text) from None


def since(value: str | None) -> Since | None:
    """An ISO 8601 timestamp (offset honoured, else local time; a date alone is local
    midnight) or a duration meaning that long ago."""
    if value is None:
        return None
    if not DIGITS.fullmatch(value) and DURATION.fullmatch(value) and value:
        return Since(value, ago=seconds("--since", value) or 0)
    return Since(value, absolute=_timestamp(value))


def when(value: str, now: datetime) -> datetime:
    """`--since` resolved at `now`, as naive UTC."""
    parsed = since(value)
    assert parsed is not None
    return parsed.at(now)


def _timestamp(value: str) -> datetime:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    # ASCII only: fromisoformat takes other digits too (`٢٠٢٦-…`).
    try:
        if not text.isascii():
            raise ValueError(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"invalid value for --since: {shown(value)} (an ISO 8601 time like "
            "2026-11-24T13:05:00Z, a date, or a duration like 24h)"
        ) from None
    try:
        if parsed.tzinfo is None:
            parsed = _local(parsed)
        return parsed.astimezone(UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        # 0001-01-01T00:00:00+09:00 is in year 0 in UTC; 9999-12-31T23:59-05:00 in 10000.
        raise _out_of_range(value) from None


def _local(naive: datetime) -> datetime:
    """A wall-clock time in the local zone."""
    try:
        return naive.astimezone()
    except (OverflowError, ValueError):
        # Python asks the C library, which knows no year 1 or 9999: the zone's
        # offset at the same wall time a year inside the range stands in for it.
        near = naive.replace(year=2 if naive.year < 5000 else 9998)
        return naive.replace(tzinfo=near.astimezone().tzinfo)


def _out_of_range(value: str) -> InvalidInput:
    return InvalidInput(
        f"invalid value for --since: {shown(value)} (outside the times resgate can "
        "represent, 0001-01-01 to 9999-12-31 UTC)"
    )


def color(value: str) -> str:
    if value not in ("auto", "always", "never"):
        raise InvalidInput(f"invalid value for --color: {value!r} (auto, always or never)")
    return value


def sequence(option: str, value: str | None) -> int | None:
    """An audit sequence number (0 or more)."""
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or whole(value) > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for {option}: {shown(value)} (a whole number, 0 or more)"
        )
    return whole(value)


EXPECTED_HEAD = re.compile(r"([0-9]+):([0-9a-f]{64})")


def expected_head(value: str | None) -> tuple[int, str] | None:
    """`--expect SEQ:HASH`, as printed by `audit verify` and `export`."""
    if value is None:
        return None
    match = EXPECTED_HEAD.fullmatch(value)
    if not match or not 1 <= whole(match.group(1)) <= MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for --expect: {shown(value)} (SEQ:HASH, the hash 64 lowercase hex "
            "digits)"
        )
    return whole(match.group(1)), match.group(2)


GPU_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")


def gpu_ids(value: str | None) -> list[int] | None:
    """`--gpu-ids 0,1,4-7`: GPU device ids, with ranges. At most MAX_DEVICES ids in
    all (a pool has no more), counted before any range is expanded."""
    if value is None:
        return None
    spans: list[tuple[int, int]] = []
    total = 0
    for part in value.split(","):
        match = GPU_RANGE.fullmatch(part.strip())
        low = whole(match.group(1)) if match else -1
        high = whole(match.group(2) or match.group(1)) if match else -1
        if not match or high < low or high > MAX_AMOUNT:
            raise InvalidInput(
                f"invalid value for --gpu-ids: {shown(value)} (ids and ranges like 0,1,4-7)"
            )
        total += high - low + 1
        if total > MAX_DEVICES:
            raise InvalidInput(
                f"invalid value for --gpu-ids: {shown(value)} (at most {MAX_DEVICES} GPUs in all)"
            )
        spans.append((low, high))
    ids = [device for low, high in spans for device in range(low, high + 1)]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"invalid value for --gpu-ids: {shown(value)} (an id is repeated)")
    return ids


def gpu_count(gpu: str | None, ids: list[int] | None) -> int | None:
    """--gpu, or the number of --gpu-ids (which may stand alone); given both, the
    counts must match."""
    return check_gpu_count(amount("--gpu", gpu), ids, FLAGS)


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
