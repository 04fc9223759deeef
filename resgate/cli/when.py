"""WHEN, the one grammar for an instant on the command line (README "Sizes, durations
and times"): ISO 8601 (an offset or `Z` honoured, else local time; a date alone is
local midnight), `HH:MM` (today, local), `tomorrow HH:MM`, `now`, `+D` (D from now)
and `D` or `-D` (D ago, as `--since 24h` always meant).

Parsing happens before any database is opened (exit 2); `When.at(now)` resolves
the relative forms against the transaction's now, as naive UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from resgate.errors import InvalidInput

CLOCK = re.compile(r"(tomorrow )?([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True)
class When:
    option: str
    text: str
    absolute: datetime | None = None  # naive UTC
    offset: int = 0  # seconds after now (negative: ago)
    clock: tuple[int, int, int] | None = None  # (days after today, hour, minute), local

    def at(self, now: datetime) -> datetime:
        if self.absolute is not None:
            return self.absolute
        if self.clock is not None:
            return self._on_the_clock(now)
        try:
            return now + timedelta(seconds=self.offset)
        except OverflowError:  # before year 1 or after 9999
            raise out_of_range(self.option, self.text) from None

    def _on_the_clock(self, now: datetime) -> datetime:
        assert self.clock is not None
        days, hour, minute = self.clock
        today = now.replace(tzinfo=UTC).astimezone().date()
        wall = datetime.combine(today + timedelta(days=days), time(hour, minute))
        return to_utc(self.option, self.text, wall)


def parse_when(option: str, value: str) -> When:
    if value == "now":
        return When(option, value)
    clock = CLOCK.fullmatch(value)
    if clock is not None:
        days = 1 if clock.group(1) else 0
        return When(option, value, clock=(days, int(clock.group(2)), int(clock.group(3))))
    from resgate.cli.params import seconds

    relative = value[1:] if value[:1] in "+-" else value
    if relative and _is_duration(relative):
        amount = seconds(option, relative) or 0
        return When(option, value, offset=amount if value.startswith("+") else -amount)
    return When(option, value, absolute=_timestamp(option, value))


def _is_duration(text: str) -> bool:
    """Written as a duration (`24h`, `1h30min`; its range is checked when parsed).
    Bare digits are not: `2026` is a year to fromisoformat."""
    from resgate.cli.params import DURATION

    return not text.isdigit() and bool(DURATION.fullmatch(text))


def _timestamp(option: str, value: str) -> datetime:
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    # ASCII only: fromisoformat takes other digits too (`٢٠٢٦-…`).
    try:
        if not text.isascii():
            raise ValueError(text)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"invalid value for {option}: {_shown(value)} (a time like 2026-11-24T13:05:00Z, "
            "a date, HH:MM, 'tomorrow HH:MM', now, +2h, or a duration ago like 24h)"
        ) from None
    if parsed.tzinfo is not None:
        try:
            return parsed.astimezone(UTC).replace(tzinfo=None)
        except (OverflowError, ValueError):
            # 0001-01-01T00:00:00+09:00 is in year 0 in UTC; 9999-12-31T23:59-05:00 in 10000.
            raise out_of_range(option, value) from None
    return to_utc(option, value, parsed)


def to_utc(option: str, value: str, wall: datetime) -> datetime:
    """A local wall-clock time as naive UTC: one that does not exist (a daylight-
    saving gap) is exit 2; an ambiguous one takes the first (fold 0)."""
    try:
        local = _local(wall.replace(fold=0))
        utc = local.astimezone(UTC).replace(tzinfo=None)
        back = utc.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    except (OverflowError, ValueError):
        raise out_of_range(option, value) from None
    if back != wall and _in_range(wall) and wall.year not in (1, 9999):
        raise InvalidInput(
            f"invalid value for {option}: {_shown(value)} (that local time does not exist: "
            "the clocks skip it)"
        )
    return utc


def _in_range(wall: datetime) -> bool:
    return date(2, 1, 1) <= wall.date() <= date(9998, 12, 31)


def _local(naive: datetime) -> datetime:
    """A wall-clock time in the local zone."""
    try:
        return naive.astimezone()
    except (OverflowError, ValueError):
        # Python asks the C library, which knows no year 1 or 9999: the zone's
        # offset at the same wall time a year inside the range stands in for it.
        near = naive.replace(year=2 if naive.year < 5000 else 9998)
        return naive.replace(tzinfo=near.astimezone().tzinfo)


def out_of_range(option: str, value: str) -> InvalidInput:
    return InvalidInput(
        f"invalid value for {option}: {_shown(value)} (outside the times resgate can "
        "represent, 0001-01-01 to 9999-12-31 UTC)"
    )


def _shown(value: str) -> str:
    from resgate.cli.params import shown

    return shown(value)
