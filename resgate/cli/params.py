"""Parsing shared by commands: amounts, names, durations, timestamps, ids.
Everything here is checked before any database is opened (exit 2)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from resgate.cli.options import FLAGS
from resgate.cli.when import When, parse_when
from resgate.engine.validation import check_gpu_count, check_name, check_reservation_id
from resgate.errors import InvalidInput
from resgate.limits import MAX_AMOUNT, MAX_DEVICES, PRIORITY_RANGE

if TYPE_CHECKING:
    from datetime import datetime

    from resgate.engine.records import Amounts
    from resgate.engine.reservations import ReserveRequest

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


def given_once(what: str, positional: str | None, option: str | None, form: str) -> str:
    """NAME or --name, ID or --id (README "Typing less"): one of the two forms, not
    both (exit 2). `form` is how it reads: `NAME or --name`."""
    if positional is not None and option is not None:
        raise InvalidInput(f"give the {what} once: as {form}, not both")
    chosen = positional if positional is not None else option
    if chosen is None:
        raise InvalidInput(f"missing {what}: give it as {form}")
    return chosen


def named(kind: str, positional: str | None, option: str | None) -> str:
    """A pool's or tenant's name, given as NAME or with --name, checked (exit 2)."""
    return check_name(kind, given_once(f"{kind} name", positional, option, "NAME or --name"))


def reservation_ids(positional: list[str] | None, option: str | None) -> list[str]:
    """`unreserve ID...` or `--id ID`; each checked (exit 2), the order kept."""
    if positional and option is not None:
        raise InvalidInput("give the reservation ids once: as ID... or with --id, not both")
    chosen = list(positional or ([] if option is None else [option]))
    if not chosen:
        raise InvalidInput("missing reservation id: give it as ID or with --id")
    return [check_reservation_id(value) for value in chosen]


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


def count(value: str | None, option: str = "--count") -> int | None:
    if value is None:
        return None
    if not DIGITS.fullmatch(value) or whole(value) < 1:
        raise InvalidInput(
            f"invalid value for {option}: {shown(value)} (a whole number, at least 1)"
        )
    if whole(value) > MAX_AMOUNT:
        raise InvalidInput(
            f"invalid value for {option}: {shown(value)} (a whole number from 1 to {MAX_AMOUNT})"
        )
    return whole(value)


def since(value: str | None) -> When | None:
    """`--since WHEN` (README "Sizes, durations and times"): a bare duration means
    that long ago."""
    return None if value is None else parse_when("--since", value)


def when(option: str, value: str | None) -> When | None:
    """An instant in the one grammar, resolved later at the transaction's now."""
    return None if value is None else parse_when(option, value)


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


@dataclass(frozen=True)
class WindowOptions:
    """--start, --end and --duration as typed: the instants are resolved against
    the transaction's now (README "Booking ahead")."""

    start: When | None = None
    end: When | None = None
    duration: int | None = None
    earliest: bool = False
    after: When | None = None

    def applied(self, request: ReserveRequest, now: datetime) -> ReserveRequest:
        return replace(
            request,
            start=None if self.start is None else self.start.at(now),
            end=None if self.end is None else self.end.at(now),
            duration=self.duration,
            earliest=self.earliest,
            after=None if self.after is None else self.after.at(now),
        )


def window(
    start: str | None,
    end: str | None,
    duration: int | None,
    ttl: int | None,
    earliest: bool = False,
    after: str | None = None,
) -> WindowOptions:
    """The window options, checked before any database is opened (exit 2)."""
    if duration is not None and end is not None:
        raise InvalidInput("--duration and --end cannot be used together")
    if ttl is not None and (duration is not None or end is not None):
        raise InvalidInput("--ttl cannot be used with --duration or --end")
    if earliest and (start is not None or end is not None):
        raise InvalidInput("--earliest takes a --duration (or --ttl), not --start or --end")
    if after is not None and not earliest:
        raise InvalidInput("--after goes with --earliest")
    return WindowOptions(
        future("--start", start), when("--end", end), duration, earliest, future("--after", after)
    )


def future(option: str, value: str | None) -> When | None:
    """An instant that must not lie in the past: `--start 2h` reads as 2 hours
    ago, as `--since 24h` does, so it gets a hint."""
    begins = when(option, value)
    if begins is not None and begins.offset < -60 and not begins.text.startswith("-"):
        raise InvalidInput(
            f"{option} {begins.text} is {begins.text} ago, in the past: "
            f"did you mean +{begins.text}?"
        )
    return begins
