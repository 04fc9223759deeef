"""Human tables and details of pools, tenants, reservations and audit events,
fitted to the terminal (render/fit.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from resgate.clock import span
from resgate.engine.records import (
    Pardon,
    PoolInfo,
    PreemptResult,
    ReservationInfo,
    TenantInfo,
    Victim,
    ranges,
)
from resgate.limits import RESOURCES
from resgate.render.fit import Column, cut, text_width
from resgate.render.text import (
    HEALTH_COLOURS,
    LABELS,
    PLAIN,
    STATUS_COLOURS,
    Style,
    amount,
    device_holders,
    expires,
    local,
    memory,
    printable,
    usage_cell,
)


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
    if pool.truncations:
        ending = [
            f"{t.id[:8]}… ({t.tenant}) at {local(t.at)} by '{t.by}'" for t in pool.truncations
        ]
        head += ["", *listed("Preempted ahead: ", ending, style)]
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


def holding_columns(tenants: list[TenantInfo], drops: tuple[int, int, int]) -> list[Column]:
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
        *holding_columns(tenants, (5, 4, 3)),
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
    ]
    if info.starts_at is not None and info.starts_at != info.created_at:
        starts = span(int((info.starts_at - now).total_seconds()), countdown=True)
        lines.append(
            f"  Starts:   {local(info.starts_at)}"
            + (f" (in {starts})" if info.status == "upcoming" else "")
        )
    left = ""
    if info.expires_at and info.status in ("active", "upcoming"):
        left = f" (in {span(int((info.expires_at - now).total_seconds()), countdown=True)})"
    lines.append(
        f"  Expires:  {'never' if info.expires_at is None else local(info.expires_at)}{left}"
    )
    return "\n".join(lines)


def preempt_summary(result: PreemptResult) -> str:
    lines = [f"Preempted {len(result.preempted)} reservation(s) from '{result.target}'"]
    for r in result.preempted:
        lines.append(
            f"  {r.id}  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
            f"  pool={r.pool}"
        )
    if result.pardons:
        lines.append(pardons_summary(result.pardons))
    return "\n".join(lines)


def victims_summary(victims: list[Victim], pardons: Sequence[Pardon] = ()) -> str:
    """The victims of `reserve --preempt`: ended now, or truncated to end at the new
    window's start (README "Booking ahead"); then the pardons that followed."""
    lines = [f"Preempted {len(victims)} reservation(s)"]
    for victim in victims:
        r = victim.reservation
        truncated = r.status in ("active", "upcoming") and r.preempt_at is not None
        lines.append(
            f"  {r.id}  tenant={r.tenant} (priority {victim.priority})"
            f"  cpu={r.amounts.cpu} mem={r.amounts.memory} gpu={r.amounts.gpu}"
            + (f"  now ends at {local(r.preempt_at)}" if truncated and r.preempt_at else "")
        )
    if pardons:
        lines.append(pardons_summary(pardons))
    return "\n".join(lines)


def pardons_summary(pardons: Sequence[Pardon]) -> str:
    """Truncated reservations given their time back: whole, in part, or not at all."""
    lines = []
    for p in pardons:
        until = "open-ended" if p.until is None else f"until {local(p.until)}"
        if p.whole:
            lines.append(f"Reservation '{p.id}' gets its time back: {until}")
        elif p.until == p.truncated_at:
            lines.append(f"Reservation '{p.id}' stays truncated at {local(p.until)}: {p.why}")
        else:
            lines.append(f"Reservation '{p.id}' gets part of its time back: {until} ({p.why})")
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
