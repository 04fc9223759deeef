"""Human views made of several parts: `status`, `watch`, `free`, and the summaries
of preempt, import-state and releases."""

from __future__ import annotations

from datetime import datetime

from resgate import clock
from resgate.clock import span
from resgate.engine.records import (
    FreeInfo,
    ImportSummary,
    PoolInfo,
    ReservationInfo,
    Slot,
    Slots,
    StatusReport,
    Ticket,
    ranges,
)
from resgate.limits import RESOURCES
from resgate.render.fit import Column, cut, text_width
from resgate.render.tables import holding_columns
from resgate.render.text import (
    BAR_WIDTH,
    FALLBACK_HEIGHT,
    HEALTH_COLOURS,
    LABELS,
    Style,
    amount,
    bar,
    local,
    printable,
    whole_percent,
)


def counts_line(report: StatusReport, style: Style) -> str:
    counts = report.counts
    return style.clip(
        f"Reservations: {counts['active']} active"
        + (f", {counts['upcoming']} upcoming" if counts.get("upcoming") else "")
        + f" {style.dash} last {report.window_hours}h: "
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
        *holding_columns(tenants, (3, 2, 1)),
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


def free_table(pools: list[FreeInfo], style: Style) -> str:
    """`free`: what each pool has free, its free GPU ids as ranges, and until when."""
    columns = [
        Column("POOL", [p.pool for p in pools]),
        *(
            Column(LABELS[res], [amount(res, getattr(p.free, res)) for p in pools], True, drop)
            for res, drop in (("cpu", 3), ("memory", 2), ("gpu", 5))
        ),
        Column("DEVICES", [ranges(p.gpu_ids) or "-" for p in pools], drop=1, least=7),
        Column("UNTIL", [beside(p.until, p.at) for p in pools], drop=4),
    ]
    return style.table(columns)


def beside(end: datetime | None, at: datetime) -> str:
    """An instant as a person reads it beside `at` (resgate.clock.beside); None is `open`."""
    return "open" if end is None else clock.beside(end, at)


def slots_table(found: Slots, now: datetime, style: Style) -> str:
    """`slots`: each window's start, until when it stays free, its GPUs and what
    frees it."""
    rows = found.slots

    def because(slot: Slot) -> str:
        if slot.freed_by is None:
            return "free now" if slot.start == now else "free then"
        rid, tenant = slot.freed_by
        # It ends where the slot starts: the START beside it gives the day.
        return f"reservation {rid[:8]}… ({tenant}) ends {local(slot.start)[11:16]}"

    columns = [
        Column("START", [local(slot.start)[:16] for slot in rows]),
        Column("FREE UNTIL", [beside(slot.free_until, slot.start) for slot in rows]),
        Column("GPUS", [ranges(slot.gpu_ids) or "-" for slot in rows], drop=2, least=5),
        Column("FREED BY", [because(slot) for slot in rows], drop=1, least=12),
    ]
    return style.table(columns)


def queue_table(tickets: list[Ticket], now: datetime, style: Style) -> str:
    """`queue`: the waiting tickets in admission order, per pool."""

    def request(t: Ticket) -> str:
        wanted = [f"{r}={amount(r, getattr(t.amounts, r))}" for r in RESOURCES
                  if getattr(t.amounts, r)]  # fmt: skip
        length = "open" if t.duration is None else span(t.duration)
        return " ".join(wanted).replace("memory=", "mem=") + f" for {length}"

    columns = [
        Column("POS", [f"{t.position}/{t.waiting}" for t in tickets], right=True),
        Column("TICKET", [t.id[:8] for t in tickets]),
        Column("POOL", [t.pool for t in tickets], drop=4),
        Column("TENANT", [t.tenant for t in tickets]),
        Column("USER", [t.created_by for t in tickets], drop=3),
        Column("PRIORITY", [str(t.priority) for t in tickets], right=True, drop=5),
        Column("REQUEST", [request(t) for t in tickets]),
        Column(
            "WAITED",
            [span(int((now - t.enqueued_at).total_seconds())) for t in tickets],
            right=True,
            drop=2,
        ),
        Column("ETA", ["unknown" if t.eta is None else beside(t.eta, now) for t in tickets]),
        Column("REASON", [t.reason or "-" for t in tickets], drop=1),
    ]
    return style.table(columns)


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
