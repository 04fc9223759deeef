"""The options several commands share, declared once, and what each request field
is called on the command line (for the messages of resgate/engine/validation.py)."""

from __future__ import annotations

from typing import Annotated

import typer

# A request field → its option, so a refusal names what the user typed.
FLAGS = {
    "cpu": "--cpu",
    "memory": "--memory",
    "gpu": "--gpu",
    "gpu_ids": "--gpu-ids",
    "ttl": "--ttl",
    "request_id": "--request-id",
    "priority": "--priority",
    "max_cpu": "--max-cpu",
    "max_memory": "--max-memory",
    "max_gpu": "--max-gpu",
    "status": "--status",
    "force": "--force",
    "tenant": "--tenant",
    "pool": "--pool",
    "members": "--members",
    "until": "--until",
    "by": "--by",
    "start": "--start",
    "end": "--end",
    "duration": "--duration",
    "earliest": "--earliest",
    "after": "--after",
    "preempt": "--preempt",
    "count": "--count",
    "hours": "--hours",
}

Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print only the reservation id (run: only errors)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DryRun = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would happen; change nothing.")
]
Force = Annotated[bool, typer.Option("--force", help="Release active reservations first.")]
Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.", show_default=False)]
Pool = Annotated[str, typer.Option("--pool", "-p", help="Pool name.", show_default=False)]
OptionalTenant = Annotated[
    str | None,
    typer.Option("--tenant", "-t", help="Tenant name [default: yours].", show_default=False),
]
OptionalPool = Annotated[
    str | None,
    typer.Option("--pool", "-p", help="Pool name [default: the only one].", show_default=False),
]
Cpu = Annotated[str | None, typer.Option("--cpu", help="CPU cores.", show_default=False)]
Memory = Annotated[
    str | None,
    typer.Option("--memory", help="Memory: MB, or a size like 512M, 8G.", show_default=False),
]
Gpu = Annotated[str | None, typer.Option("--gpu", help="GPUs.", show_default=False)]
Start = Annotated[
    str | None,
    typer.Option(
        "--start",
        metavar="WHEN",
        help="Book ahead: start at WHEN (18:00, 'tomorrow 09:00', +2h, ISO 8601).",
        show_default=False,
    ),
]
End = Annotated[
    str | None,
    typer.Option("--end", metavar="WHEN", help="End at WHEN.", show_default=False),
]
Duration = Annotated[
    str | None,
    typer.Option(
        "--duration",
        metavar="DURATION",
        help="Length of the window (with --start, --ttl means this).",
        show_default=False,
    ),
]
Earliest = Annotated[
    bool,
    typer.Option("--earliest", help="Book the earliest window that fits (see: resgate slots)."),
]
After = Annotated[
    str | None,
    typer.Option(
        "--after",
        metavar="WHEN",
        help="With --earliest or slots: start no earlier than WHEN (default: now).",
        show_default=False,
    ),
]
Wait = Annotated[
    bool,
    typer.Option("--wait", help="When it does not fit, wait in line for it (see: resgate queue)."),
]
Timeout = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="With --wait: give up after this long (exit 3).",
        show_default=False,
    ),
]
Preempt = Annotated[
    bool, typer.Option("--preempt", help="Evict lower-priority reservations if needed.")
]
GpuIds = Annotated[
    str | None,
    typer.Option("--gpu-ids", help="GPU device ids, like 0,1,4-7.", show_default=False),
]
Ttl = Annotated[
    str | None,
    typer.Option(
        "--ttl", help="Seconds or a duration (90s, 5m, 1h30m); 0: no expiry.", show_default=False
    ),
]
Id = Annotated[
    str | None,
    typer.Option(
        "--id", help="Reservation id, or its first 4 or more hex digits.", show_default=False
    ),
]
IdArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="ID", help="Reservation id, or its first 4 or more hex digits.", show_default=False
    ),
]
IdArguments = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="ID...",
        help="Reservation ids, or their first 4 or more hex digits.",
        show_default=False,
    ),
]
NameArgument = Annotated[str | None, typer.Argument(metavar="NAME", show_default=False)]
Wide = Annotated[
    bool, typer.Option("--wide", help="Show every column whole, however wide the terminal.")
]
