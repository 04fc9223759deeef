"""Human output's parts: colour policy (colorama), the terminal's size, encodings, bars,
and how amounts, ids, devices, times and durations read. The tables are in
render/tables.py, the views made of several parts in render/views.py."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import datetime
from typing import IO

from resgate import clock
from resgate.clock import span
from resgate.engine.records import (
    PoolInfo,
    ReservationInfo,
    ranges,
)
from resgate.render.fit import Column, clip, table

BAR_WIDTH = 20
HEALTH_COLOURS = {"healthy": "green", "warning": "yellow", "exhausted": "red"}
# README "Seeing it at a glance"; `released` keeps the terminal's own colour.
STATUS_COLOURS = {"active": "green", "upcoming": "cyan", "expired": "dim", "preempted": "red"}
LABELS = {"cpu": "CPU", "memory": "MEMORY", "gpu": "GPU"}
FALLBACK_WIDTH, FALLBACK_HEIGHT = 80, 24


def colour_wanted(setting: str, stream: IO[str]) -> bool:
    """--color always|never wins; in auto, FORCE_COLOR forces, NO_COLOR disables,
    otherwise colour only on a terminal."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    if forced_colour():
        return True
    if "NO_COLOR" in os.environ:
        return False
    return stream.isatty()


def forced_colour() -> bool:
    """FORCE_COLOR as everyone reads it: set to anything but "", "0" or "false"."""
    value = os.environ.get("FORCE_COLOR")
    return value is not None and value.strip().lower() not in ("", "0", "false")


def terminal_size(stream: IO[str]) -> tuple[int, int] | None:
    """(columns, lines) when `stream` is a terminal: COLUMNS and LINES, else the
    terminal's size, else 80 by 24. None for anything else: nothing is cut."""
    try:
        if not stream.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        columns = lines = 0
    return (
        _positive(os.environ.get("COLUMNS")) or columns or FALLBACK_WIDTH,
        _positive(os.environ.get("LINES")) or lines or FALLBACK_HEIGHT,
    )


def _positive(value: str | None) -> int:
    try:
        number = int(value or "")
    except ValueError:
        return 0
    return max(0, number)


@dataclass(frozen=True)
class Style:
    colour: bool
    full: str = "█"
    empty: str = "░"
    dash: str = "—"
    ellipsis: str = "…"
    dot: str = "·"
    # A terminal's columns and lines: tables fit in them. None: a pipe or a file,
    # where nothing is ever cut.
    width: int | None = None
    height: int | None = None

    @classmethod
    def for_stream(cls, setting: str, stream: IO[str]) -> Style:
        colour = colour_wanted(setting, stream)
        width, height = terminal_size(stream) or (None, None)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            "█░—…·".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            return cls(colour, "#", ".", "-", "...", "-", width, height)
        return cls(colour, width=width, height=height)

    def widened(self, wide: bool = True) -> Style:
        """`--wide`: every column, however wide the terminal."""
        return replace(self, width=None) if wide else self

    def paint(self, text: str, colour: str) -> str:
        if not self.colour:
            return text
        from colorama import Fore
        from colorama import Style as Reset

        code = {
            "green": Fore.GREEN,
            "yellow": Fore.YELLOW,
            "red": Fore.RED,
            "cyan": Fore.CYAN,
            "dim": Reset.DIM,
        }[colour]
        return f"{code}{text}{Reset.RESET_ALL}"

    def health(self, value: str) -> str:
        return self.paint(value, HEALTH_COLOURS[value])

    def short(self, reservation_id: str) -> str:
        """A reservation id in human output: 8 hex digits and an ellipsis."""
        return reservation_id[:8] + self.ellipsis

    def table(self, columns: list[Column], indent: int = 0) -> str:
        """`columns` fitted to the terminal (less `indent` columns)."""
        width = None if self.width is None else max(1, self.width - indent)
        return table(columns, width, self.ellipsis, self.paint)

    def clip(self, line: str) -> str:
        return clip(line, self.width, self.ellipsis)


PLAIN = Style(colour=False)


def local(value: datetime | None) -> str:
    """Stored UTC shown as local time."""
    return "-" if value is None else clock.local(value)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, encoding: str | None = None) -> str:
    """`text` safe to put on a terminal: every character that is not printable (C0,
    DEL, C1, line and paragraph separators, bidi and other format characters,
    surrogates) shown as an escape (`\\n`, `\\x1b`, `\\u202e`), and, given the
    stream's `encoding`, whatever it cannot encode as well, so stored text can
    neither forge a line of a table nor drive the terminal."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    if encoding is not None and not text.isascii():
        try:
            text.encode(encoding)
        except UnicodeEncodeError:
            text = text.encode(encoding, "backslashreplace").decode(encoding)
        except LookupError:
            pass
    return text


def _escape(char: str) -> str:
    if char in _ESCAPES:
        return _ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def expires(info: ReservationInfo, now: datetime) -> str:
    """`list`'s EXPIRES: the time left (and whether a preemption ends it), or for a
    booking not yet started, when it starts."""
    if info.status == "upcoming" and info.starts_at is not None:
        return "starts in " + span(int((info.starts_at - now).total_seconds()), countdown=True)
    if info.status != "active":
        return "-"
    if info.expires_at is None:
        return "never"
    left = span(int((info.expires_at - now).total_seconds()), countdown=True)
    truncated = info.preempt_at is not None and info.preempt_at <= info.expires_at
    return f"{left} (preempted)" if truncated else left


def memory(mb: int) -> str:
    """Memory as human tables read it: `8G` for 8192, `1.5G` for 1536, `512M` for
    512 — the largest unit the value is exact in to one decimal, else MB."""
    if mb == 0:
        return "0"
    for unit, size in (("T", 1024 * 1024), ("G", 1024)):
        if mb >= size and mb * 10 % size == 0:
            tenths = mb * 10 // size
            whole, tenth = divmod(tenths, 10)
            return f"{whole}{unit}" if tenth == 0 else f"{whole}.{tenth}{unit}"
    return f"{mb}M"


def amount(resource: str, value: int) -> str:
    return memory(value) if resource == "memory" else str(value)


def device_holders(pool: PoolInfo, style: Style) -> list[str]:
    """`0-1 nlp (ea38a837…)`, `2-7 free`: the pool's devices in order, each run of
    one holder as ranges, with the holder's tenant and short id."""
    tenants = dict(pool.holders)
    runs: list[tuple[str | None, list[int]]] = []
    for device, rid in pool.devices:
        if runs and runs[-1][0] == rid:
            runs[-1][1].append(device)
        else:
            runs.append((rid, [device]))
    items = []
    for rid, devices in runs:
        if rid is None:
            holder = "free"
        elif rid in tenants:
            holder = f"{tenants[rid]} ({style.short(rid)})"
        else:
            holder = style.short(rid)
        items.append(f"{ranges(devices)} {holder}")
    return items


def whole_percent(used: int, total: int) -> int:
    if total <= 0:
        return 0
    return int(100 * used / total + 0.5)


def usage_cell(used: int, total: int, resource: str = "cpu") -> str:
    """`12 / 32 (38%)`; memory as `8G / 64G (13%)`."""
    shown = f"{amount(resource, used)} / {amount(resource, total)}"
    return f"{shown} ({whole_percent(used, total)}%)"


def bar(percent_used: float, style: Style, cells: int = BAR_WIDTH) -> str:
    filled = min(cells, max(0, round(percent_used / 100 * cells)))
    return style.full * filled + style.empty * (cells - filled)
