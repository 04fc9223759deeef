"""Human output: tables fitted to the terminal (render/fit.py), bars, colour policy
(colorama), encodings, and how amounts, ids, devices and durations read."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any

from resgate.clock import span
from resgate.engine.records import (
    ImportSummary,
    PoolInfo,
    PreemptResult,
    ReservationInfo,
    StatusReport,
    TenantInfo,
    Victim,
)
from resgate.limits import RESOURCES
from resgate.render.fit import Column, clip, cut, table, text_width

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
    if value is None:
        return "-"
    # isoformat, not strftime: %Y gives year 1 as `1`, not `0001`.
    try:
        shown = value.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)
    except (OverflowError, ValueError):  # year 1 or 9999, beyond local time
        return value.isoformat(" ", "seconds") + " UTC"
    return shown.isoformat(" ", "seconds")


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
    if info.status != "active":
        return "-"
    if info.expires_at is None:
        return "never"
    return span(int((info.expires_at - now).total_seconds()), countdown=True)


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


def ranges(ids: Iterable[int]) -> str:
    """GPU ids as ranges: `0-1,4-7`."""
    runs: list[list[int]] = []
    for device in sorted(ids):
        if runs and device == runs[-1][1] + 1:
            runs[-1][1] = device
        else:
            runs.append([device, device])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


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


def _table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain table, every column whole and left-aligned."""
    columns = [Column(h, [str(row[i]) for row in rows]) for i, h in enumerate(headers)]
    return table(columns)


def whole_percent(used: int, total: int) -> int:
    if total <= 0:
        return 0
    return int(100 * used / total + 0.5)


def usage_cell(used: int, total: int, resource: str = "cpu") -> str:
    """`12 / 32 (38%)`; memory as `8G / 64G (13%)`."""
    shown = f"{amount(resource, used)} / {amount(resource, total)}"
    return f"{shown} ({whole_percent(used, total)}%)"


def pools_table(pools: list[PoolInfo], style: Style) -> str:
    """`pool list`: on a narrow terminal the headers say CPU, MEMORY, GPU, and
    CREATED goes first, then STATUS, GPU, MEMORY, CPU; never NAME."""
    columns = [Column("NAME", [p.name for p in pools])]
    for res, drop in (("cpu", 5), ("memory", 4), ("gpu", 3)):
        cells = [usage_cell(getattr(p.reserved, res), getattr(p.total, res), res) for p in pools]
        label = LABELS[res]
        columns.append(
            Column(f"{label} (USED/TOTAL)", cells, right=True, drop=drop, short_header=label)
        )
    health = [p.health for p in pools]
    columns += [
        Column("STATUS", health, drop=2, colours=[HEALTH_COLOURS[h] for h in health]),
        Column("CREATED", [local(p.created_at) for p in pools], drop=1),
    ]
    return style.table(columns)


def pool_detail(pool: PoolInfo, style: Style) -> str:
    """`pool show`: what the pool has, and which tenant holds each range of GPUs."""
    columns = [
        Column("RESOURCE", [LABELS[res] for res in RESOURCES]),
        Column("TOTAL", [amount(r, getattr(pool.total, r)) for r in RESOURCES], True, 2),
        Column(
            "RESERVED",
            [
                f"{amount(r, getattr(pool.reserved, r))} ({pool.utilization[r]:.2f}%)"
                for r in RESOURCES
            ],
            right=True,
            drop=1,
        ),
        Column("AVAILABLE", [amount(r, getattr(pool.available, r)) for r in RESOURCES], True, 3),
    ]
    head = [
        style.clip(f"Pool: {pool.name}"),
        f"Health: {style.health(pool.health)}",
        style.clip(f"Created: {local(pool.created_at)}"),
        style.clip(f"Policies: {policies(pool)}"),
        "",
        style.table(columns),
    ]
    if pool.devices:
        head += ["", *listed("GPU devices: ", device_holders(pool, style), style)]
    return "\n".join(head)


def listed(label: str, items: list[str], style: Style) -> list[str]:
    """`label` and the items separated by commas: one line, or on a terminal as
    many as it takes, broken between items (an item too long for one is cut)."""
    pieces = [item + ("," if n < len(items) - 1 else "") for n, item in enumerate(items)]
    if style.width is None:
        return [label + " ".join(pieces)]
    indent = text_width(label) if 2 * text_width(label) <= style.width else 0
    room = max(1, style.width - indent)
    lines = [""]
    for piece in (cut(piece, room, style.ellipsis) for piece in pieces):
        if lines[-1] and text_width(lines[-1]) + 1 + text_width(piece) > room:
            lines.append(piece)
        else:
            lines[-1] = f"{lines[-1]} {piece}" if lines[-1] else piece
    if not indent:
        return [style.clip(label.rstrip()), *lines]
    return [label + lines[0], *(" " * indent + line for line in lines[1:])]


def policies(pool: PoolInfo) -> str:
    """per tenant 1, default TTL none, max TTL 1d"""
    per_tenant = "unlimited" if pool.per_tenant is None else str(pool.per_tenant)

    def ttl(value: int | None) -> str:
        return "none" if value is None else span(value)

    return (
        f"per tenant {per_tenant}, default TTL {ttl(pool.default_ttl)}, max TTL {ttl(pool.max_ttl)}"
    )


def holdings(tenant: TenantInfo) -> list[str]:
    """CPU, memory and GPU held, each against its cap: `6/8`, `8G/16G`, `2`."""
    cells = []
    for res in RESOURCES:
        cap = getattr(tenant.max, res)
        held = amount(res, getattr(tenant.held, res))
        cells.append(held if cap is None else f"{held}/{amount(res, cap)}")
    return cells


def quota_summary(tenant: TenantInfo) -> str:
    caps = [
        f"max {res} {getattr(tenant.max, res)}"
        for res in RESOURCES
        if getattr(tenant.max, res) is not None
    ]
    return ", ".join(caps) if caps else "no quotas"


def _holding_columns(tenants: list[TenantInfo], drops: tuple[int, int, int]) -> list[Column]:
    held = [holdings(t) for t in tenants]
    return [
        Column(LABELS[res], [cells[n] for cells in held], right=True, drop=drop)
        for n, (res, drop) in enumerate(zip(RESOURCES, drops, strict=True))
    ]


def tenants_table(tenants: list[TenantInfo], style: Style = PLAIN) -> str:
    """MEMBERS appears once some tenant has members ("-": anyone may act for it).
    On a narrow terminal REGISTERED goes first, then MEMBERS, GPU, MEMORY, CPU,
    ACTIVE, PRIORITY; never NAME."""
    columns = [
        Column("NAME", [t.name for t in tenants]),
        Column("PRIORITY", [str(t.priority) for t in tenants], right=True, drop=7),
        Column("ACTIVE", [str(t.active_reservations) for t in tenants], right=True, drop=6),
        *_holding_columns(tenants, (5, 4, 3)),
        Column("REGISTERED", [local(t.created_at) for t in tenants], drop=1),
    ]
    if any(t.members for t in tenants):
        members = [",".join(t.members) or "-" for t in tenants]
        columns.append(Column("MEMBERS", members, drop=2, least=10))
    return style.table(columns)


def gpu_cell(info: ReservationInfo) -> str:
    """`2 [0-1]`: the count and, when it holds devices, which."""
    if not info.gpu_ids:
        return str(info.amounts.gpu)
    return f"{info.amounts.gpu} [{ranges(info.gpu_ids)}]"


def reservations_table(
    reservations: list[ReservationInfo], now: datetime, style: Style = PLAIN
) -> str:
    """`list`. On a narrow terminal ids are shortened (`ea38a837…`) first, then
    names, and USER goes first, then DEVICES, EXPIRES, STATUS, MEMORY, CPU, GPU,
    POOL, TENANT; never ID."""
    rs = reservations
    columns = [
        Column("ID", [r.id for r in rs], short=[style.short(r.id) for r in rs]),
        Column("TENANT", [r.tenant for r in rs], drop=9, least=12),
        # Free text (RESGATE_ACTOR, or written with `sqlite3`); "-": no one on record.
        Column("USER", [printable(r.created_by or "-") for r in rs], drop=1, least=8),
        Column("POOL", [r.pool for r in rs], drop=8, least=12),
        Column("CPU", [str(r.amounts.cpu) for r in rs], right=True, drop=6),
        Column("MEMORY", [memory(r.amounts.memory) for r in rs], right=True, drop=5),
        Column("GPU", [str(r.amounts.gpu) for r in rs], right=True, drop=7),
        Column("DEVICES", [ranges(r.gpu_ids) or "-" for r in rs], drop=2, least=7),
        Column(
            "STATUS",
            [r.status for r in rs],
            drop=4,
            colours=[STATUS_COLOURS.get(r.status) for r in rs],
        ),
        Column("EXPIRES", [expires(r, now) for r in rs], drop=3),
    ]
    return style.table(columns)


def reservation_detail(info: ReservationInfo, now: datetime) -> str:
    lines = [
        f"  Tenant:   {info.tenant}",
        f"  Pool:     {info.pool}",
        f"  CPU:      {info.amounts.cpu}",
        f"  Memory:   {info.amounts.memory} MB",
        f"  GPU:      {gpu_cell(info)}",
        f"  Status:   {info.status}",
        f"  Created:  {local(info.created_at)}",
        f"  Expires:  {'never' if info.expires_at is None else local(info.expires_at)}"
        + (f" (in {expires(info, now)})" if info.expires_at and info.status == "active" else ""),
    ]
    return "\n".join(lines)


def preempt_summary(result: PreemptResult) -> str:
    lines = [f"Preempted {len(result.preempted)} reservation(s) from '{result.target}'"]
    for r in result.preempted:
        lines.append(
            f"  {r.id}  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
            f"  pool={r.pool}"
        )
    return "\n".join(lines)


def victims_summary(victims: list[Victim]) -> str:
    lines = [f"Preempted {len(victims)} reservation(s)"]
    for victim in victims:
        r = victim.reservation
        lines.append(
            f"  {r.id}  tenant={r.tenant} (priority {victim.priority})"
            f"  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
        )
    return "\n".join(lines)


def events_table(
    events: list[dict[str, Any]], encoding: str | None = None, style: Style = PLAIN
) -> str:
    """`audit log`: every text shown through printable(), in the stream's
    `encoding`; what cannot be parsed (an `at` or `data` edited with `sqlite3`)
    is shown as stored. On a narrow terminal AT loses its year and a subject
    that is a reservation id is shortened, then DATA, ACTOR and SUBJECT are cut;
    DATA goes first, then ACTOR, AT, ACTION, SUBJECT; never SEQ."""
    at = [_event_time(e["at"], encoding) for e in events]
    subjects = [_cell_text(e["subject"], encoding) for e in events]
    columns = [
        Column("SEQ", [str(e["seq"]) for e in events], right=True),
        Column("AT", at, drop=3, short=[_short_time(t) for t in at]),
        Column("ACTOR", [_cell_text(e["actor"], encoding) for e in events], drop=2, least=8),
        Column("ACTION", [_cell_text(e["action"], encoding) for e in events], drop=4),
        Column(
            "SUBJECT",
            subjects,
            drop=5,
            least=12,
            short=[_short_subject(t, style) for t in subjects],
        ),
        Column("DATA", [_event_data(e["data"], encoding) for e in events], drop=1, least=12),
    ]
    return style.table(columns)


def _short_time(text: str) -> str:
    """`11-24 12:00:00` for `2026-11-24 12:00:00` (a local time resgate wrote)."""
    if len(text) == 19 and text[4] == "-" and text[10] == " ":
        return text[5:]
    return text


def _short_subject(text: str, style: Style) -> str:
    if len(text) == 16 and all(c in "0123456789abcdef" for c in text):
        return style.short(text)
    return text


def _cell_text(value: object, encoding: str | None) -> str:
    return "" if value is None else printable(str(value), encoding)


def _event_time(value: object, encoding: str | None) -> str:
    try:
        return local(datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%fZ"))
    except ValueError:
        return _cell_text(value, encoding)


def _event_data(value: object, encoding: str | None) -> str:
    if isinstance(value, str):  # not JSON: as stored
        return printable(value, encoding)
    import json

    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return printable(text, encoding)


def bar(percent_used: float, style: Style, cells: int = BAR_WIDTH) -> str:
    filled = min(cells, max(0, round(percent_used / 100 * cells)))
    return style.full * filled + style.empty * (cells - filled)


def counts_line(report: StatusReport, style: Style) -> str:
    counts = report.counts
    return style.clip(
        f"Reservations: {counts['active']} active {style.dash} last {report.window_hours}h: "
        f"{counts['released']} released, {counts['expired']} expired, "
        f"{counts['preempted']} preempted"
    )


def status_view(report: StatusReport, style: Style) -> str:
    """`status`: on a terminal the bars narrow (from 20 cells) and what still does
    not fit is cut rather than let a line run past its width."""
    lines = [counts_line(report, style), "", "Pools:"]
    if not report.pools:
        lines.append("  (none)")
    figures = {
        (pool.name, res): f"{pool.utilization[res]:6.2f}%  "
        + f"{amount(res, getattr(pool.reserved, res))} / {amount(res, getattr(pool.total, res))}"
        for pool in report.pools
        for res in RESOURCES
    }
    cells = BAR_WIDTH
    if style.width is not None:
        widest = max(map(len, figures.values()), default=0)
        cells = max(1, min(BAR_WIDTH, style.width - len("    CPU        ") - 1 - widest))
    for pool in report.pools:
        lines.append(_pool_heading(pool, style))
        for res in RESOURCES:
            bars = bar(pool.utilization[res], style, cells)
            lines.append(style.clip(f"    {LABELS[res]:<10} {bars} {figures[pool.name, res]}"))
    lines += ["", "Tenants:"]
    if not report.tenants:
        lines.append("  (none)")
    else:
        lines += ["  " + line for line in tenants_ranked(report, style, indent=2).splitlines()]
    return "\n".join(lines)


def _pool_heading(pool: PoolInfo, style: Style) -> str:
    """`  gpu-box  [healthy]`, the name cut to the width (the health is painted)."""
    name = pool.name
    if style.width is not None:
        name = cut(name, max(1, style.width - len(f"    [{pool.health}]")), style.ellipsis)
    return f"  {name}  [{style.health(pool.health)}]"


def tenants_ranked(report: StatusReport, style: Style, indent: int = 0) -> str:
    tenants = report.tenants
    columns = [
        Column("#", [str(n) for n in range(1, len(tenants) + 1)], right=True),
        Column("NAME", [t.name for t in tenants], least=12),
        Column("PRIORITY", [str(t.priority) for t in tenants], right=True, drop=5),
        Column("ACTIVE", [str(t.active_reservations) for t in tenants], right=True, drop=4),
        *_holding_columns(tenants, (3, 2, 1)),
    ]
    return style.table(columns, indent)


def watch_title(every: float, at: datetime, where: str, style: Style) -> str:
    """`Every 2s · 14:05:03 · /srv/gpu/resgate.db`: `watch`'s first line on a terminal."""
    seconds = span(int(every)) if every == int(every) else f"{every:g}s"
    dot = style.dot
    return style.clip(f"Every {seconds} {dot} {at:%H:%M:%S} {dot} {printable(where)}")


def watch_view(
    report: StatusReport, active: list[ReservationInfo], style: Style, title: str
) -> str:
    """`watch` on a terminal: the title, the counts, a line per pool with its
    holders, then the tenants, in the terminal's height (what does not fit is
    counted, not scrolled)."""
    budget = max(1, (style.height or FALLBACK_HEIGHT) - 1)  # the cursor keeps the last line
    lines = [title, counts_line(report, style), ""]
    if report.pools:
        lines += _elided(pools_glance(report, active, style), budget - len(lines), "pools", style)
    else:
        lines.append("No pools.")
    room = budget - len(lines)
    if report.tenants and room >= 4:
        lines += ["", *_elided(tenants_ranked(report, style), room - 1, "tenants", style)]
    return "\n".join(lines[:budget])


def _elided(text: str, room: int, noun: str, style: Style) -> list[str]:
    """A table's lines in `room` lines: the rows that fit, then `… 12 more pools`."""
    lines = text.splitlines()
    if len(lines) <= room or room < 4:
        return lines[: max(0, room)]
    hidden = len(lines) - (room - 1)
    return [*lines[: room - 1], style.clip(f"{style.ellipsis} {hidden} more {noun}")]


def pools_glance(report: StatusReport, active: list[ReservationInfo], style: Style) -> str:
    """One line per pool: health, each resource's use, and who holds it (by
    priority), elided with a count (`nlp, vision +3`)."""
    rank = {t.name: n for n, t in enumerate(report.tenants)}
    holders: dict[str, set[str]] = {}
    for r in active:
        holders.setdefault(r.pool, set()).add(r.tenant)
    pools = report.pools
    names = [
        sorted(holders.get(p.name, ()), key=lambda t: (rank.get(t, len(rank)), t)) for p in pools
    ]
    columns = [
        Column("POOL", [p.name for p in pools], least=12),
        Column(
            "HEALTH",
            [p.health for p in pools],
            drop=1,
            colours=[HEALTH_COLOURS[p.health] for p in pools],
        ),
    ]
    for res, drop in (("cpu", 3), ("memory", 2), ("gpu", 5)):
        used = [getattr(p.reserved, res) for p in pools]
        totals = [getattr(p.total, res) for p in pools]
        pct = [f"{whole_percent(u, t)}%" for u, t in zip(used, totals, strict=True)]
        cells = [
            f"{amount(res, u)}/{amount(res, t)} ({c})"
            for u, t, c in zip(used, totals, pct, strict=True)
        ]
        columns.append(Column(LABELS[res], cells, right=True, drop=drop, short=pct))
    columns.append(
        Column(
            "HOLDERS",
            [", ".join(n) or "-" for n in names],
            drop=4,
            least=6,
            elide=lambda row, width: elided(names[row], width),
        )
    )
    return style.table(columns)


def elided(names: list[str], width: int) -> str:
    """As many names as fit in `width`, and a count of the rest: `nlp, vision +3`."""
    for shown in range(len(names), -1, -1):
        rest = len(names) - shown
        text = ", ".join(names[:shown]) + (f" +{rest}" if rest else "")
        if text_width(text.strip()) <= width:
            return text.strip()
    return f"+{len(names)}"


def free_table(pools: list[PoolInfo], style: Style) -> str:
    """`free`: what each pool has free now, and its free GPU ids as ranges."""
    columns = [
        Column("POOL", [p.name for p in pools]),
        *(
            Column(LABELS[res], [amount(res, getattr(p.available, res)) for p in pools], True, drop)
            for res, drop in (("cpu", 3), ("memory", 2), ("gpu", 4))
        ),
        Column("DEVICES", [ranges(free_ids(p)) or "-" for p in pools], drop=1, least=7),
    ]
    return style.table(columns)


def free_ids(pool: PoolInfo) -> list[int]:
    """The pool's GPU ids no reservation holds."""
    return [device for device, rid in pool.devices if rid is None]


def import_summary(summary: ImportSummary, source: str) -> str:
    """`resgate import-state`: what `--json` says, in words."""

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


def released_summary(line: str, released: list[ReservationInfo], holder: str) -> str:
    """`Pool 'p' deleted`, then what --force released with it; `holder` is the
    column that tells them apart (`tenant` for a pool's, `pool` for a tenant's)."""
    if not released:
        return line
    lines = [f"{line}; released {len(released)} reservation(s):"]
    for r in released:
        lines.append(
            f"  {r.id}  {holder}={getattr(r, holder)}"
            f"  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
        )
    return "\n".join(lines)
