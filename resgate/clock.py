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


def iso(value: datetime) -> str:
    """2026-11-24T13:05:00.123456Z: the one way resgate writes a time as text (the
    audit log, JSON, CSV). isoformat() is several times faster than strftime()."""
    return value.isoformat("T", "microseconds") + "Z"


def span(seconds: int) -> str:
    """A length as the duration words resgate reads: 90s, 5m, 1h30m, 1d, 2d12h.
    Written without zero parts, so `1d` reads back as one day."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"
