"""The engine's notion of "now": naive UTC datetimes, injectable for tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)


class FixedClock:
    """A clock that only moves when told to (tests, model checking)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, 0)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


def ends(now: datetime, ttl: int | None) -> datetime | None:
    """The end of a TTL of `ttl` seconds from `now`; None (no end) for 0 or None."""
    return now + timedelta(seconds=ttl) if ttl else None


def local(value: datetime) -> str:
    """Stored UTC as local time, `2026-12-24 09:00:00`: how messages and tables
    show an instant to a person."""
    # isoformat, not strftime: %Y gives year 1 as `1`, not `0001`.
    try:
        shown = value.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    except (OverflowError, ValueError):  # year 1 or 9999, beyond local time
        return value.isoformat(" ", "seconds") + " UTC"
    return shown.isoformat(" ", "seconds")


def beside(value: datetime, now: datetime) -> str:
    """An instant as a message shows it beside `now`: `16:00` on the same local
    day, else `2026-12-24 16:00`."""
    shown, today = local(value), local(now)
    return shown[11:16] if shown[:10] == today[:10] else shown[:16]


def iso(value: datetime) -> str:
    """2026-11-24T13:05:00.123456Z: the one way resgate writes a time as text (the
    audit log, JSON, CSV). isoformat() is several times faster than strftime()."""
    return value.isoformat("T", "microseconds") + "Z"


def span(seconds: int, *, countdown: bool = False) -> str:
    """The one way resgate writes a duration (README "Sizes, durations and times").

    A length (a TTL, a policy, how far an end moved): whole weeks or days as `1w`,
    `2d`, else hours, minutes and seconds without zero parts (`90s` is `1m30s`,
    `2h`, `1h30m`, `26h`), so it reads back as the same length.
    A countdown (`list`'s EXPIRES, "in …"): `45s`, `4m59s`, `5m0s`, `25h1m`, never
    days (a time left is not meant as whole days), no seconds past the hour."""
    seconds = max(0, seconds)
    if countdown:
        if seconds < 60:
            return f"{seconds}s"
        if seconds < 3600:
            return f"{seconds // 60}m{seconds % 60}s"
        return f"{seconds // 3600}h{seconds % 3600 // 60}m"
    for unit, size in (("w", 604800), ("d", 86400)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
