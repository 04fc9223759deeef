"""How `resgate --help` lists the commands (README "Help and completion"): in groups,
each summary whole, never cut with `...`."""

from __future__ import annotations

import typer.core
from typer import _click

# The order of the groups, and of the commands in each, on the help page.
GROUPS: dict[str, tuple[str, ...]] = {
    "Reservations": (
        "reserve",
        "run",
        "list",
        "extend",
        "unreserve",
        "preempt",
        "free",
        "status",
        "watch",
    ),
    "Pools and tenants": ("pool", "tenant"),
    "Time and queue": ("slots", "timeline", "queue"),
    "Reports and export": ("report", "export", "import-state"),
    "Maintenance": ("sweep", "db", "audit", "config", "completion", "version"),
}


class GroupedCommands(typer.core.TyperGroup):
    """A command group whose help lists its commands whole: resgate's under GROUPS'
    headings (one no group names last, under "Other commands"), a sub-group's
    (`pool`, `db`, …) in one list."""

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        commands = {
            name: command
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        }
        for title, names in self._sections(ctx, list(commands)):
            rows = [
                (name, commands[name].get_short_help_str(limit=1000))
                for name in names
                if name in commands
            ]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    @staticmethod
    def _sections(ctx: _click.Context, names: list[str]) -> list[tuple[str, tuple[str, ...]]]:
        if ctx.parent is not None:  # `resgate pool --help`: one list, in order
            return [("Commands", tuple(names))]
        grouped = {name for group in GROUPS.values() for name in group}
        others = tuple(name for name in names if name not in grouped)
        return [*GROUPS.items(), ("Other commands", others)]


# Two or three examples at the end of every command's help (README "Help and
# completion"); a test checks that every command has them.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "version": ("resgate version", "resgate version && resgate db current"),
    "reserve": (
        "resgate reserve --gpu 1 --ttl 2h",
        "ID=$(resgate reserve -q --gpu 2 --request-id job-42)",
        "resgate reserve --gpu 4 --duration 2h --wait --timeout 1h",
    ),
    "run": (
        "resgate run --gpu 1 -- python train.py",
        "resgate run --reservation 3f2a -- ./train.sh",
        "resgate run --gpu 4 --preempt --grace 1m -- torchrun train.py",
    ),
    "list": ("resgate list", "resgate list --mine", "resgate list --all --status preempted --json"),
    "extend": (
        "resgate extend 3f2a --ttl 2h",
        "resgate extend 3f2a --by 30min",
        "resgate extend 3f2a --until 'tomorrow 09:00' --partial",
    ),
    "unreserve": ("resgate unreserve 3f2a", "resgate unreserve 3f2a 9b71 --json"),
    "preempt": (
        "resgate preempt -t prod --target batch",
        "resgate preempt -t prod --target batch -p gpu-box --dry-run",
        "resgate preempt -t prod --target batch --upcoming",
    ),
    "free": (
        "resgate free",
        "resgate free --at 'tomorrow 09:00'",
        "resgate free -p gpu-box --json",
    ),
    "queue": (
        "resgate queue",
        "resgate queue -p gpu-box --json",
        "resgate queue cancel 0a7d",
    ),
    "queue cancel": ("resgate queue cancel 0a7d", "resgate queue cancel 0a7d3e9f12345678 --json"),
    "slots": (
        "resgate slots --gpu 4 --duration 3h",
        "resgate slots -p gpu-box --gpu 2 --duration 8h --after 'tomorrow 09:00' --count 5",
        "resgate slots --gpu-ids 0,1 --duration 1h --json",
    ),
    "timeline": (
        "resgate timeline",
        "resgate timeline -p gpu-box --from 'tomorrow 08:00' --hours 12",
        "resgate timeline --hours 168 --json",
    ),
    "status": ("resgate status", "resgate status --json"),
    "watch": ("resgate watch", "resgate watch --interval 5", "resgate watch --json > draws.ndjson"),
    "sweep": ("resgate sweep", "resgate sweep --json"),
    "export": (
        "resgate export --output report.csv --since 24h",
        "resgate export --format json --since 2026-11-01",
    ),
    "import-state": (
        "resgate import-state --dry-run",
        "resgate import-state ~/.resgate/state.json --json",
    ),
    "config": ("resgate config", "resgate config --json"),
    "completion": (
        "resgate completion bash > ~/.local/share/bash-completion/completions/resgate",
        "resgate completion zsh > ~/.zfunc/_resgate",
        "resgate completion fish > ~/.config/fish/completions/resgate.fish",
    ),
    "pool create": (
        "resgate pool create --name gpu-box --cpu 64 --memory 256G --gpu 8",
        "resgate pool create --name lab --gpu 4 --gpu-ids 0,1,4-5 --per-tenant 2",
    ),
    "pool list": ("resgate pool list", "resgate pool list --json"),
    "pool show": ("resgate pool show gpu-box", "resgate pool show gpu-box --json"),
    "pool resize": ("resgate pool resize gpu-box --gpu 16", "resgate pool resize gpu-box --cpu 32"),
    "pool update": (
        "resgate pool update gpu-box --per-tenant 2 --max-ttl 1d",
        "resgate pool update gpu-box --default-ttl none",
    ),
    "pool delete": ("resgate pool delete old-box", "resgate pool delete old-box --force --dry-run"),
    "tenant add": (
        "resgate tenant add nlp --priority 7",
        "resgate tenant add vision --members alice,bob --max-gpu 4",
    ),
    "tenant list": ("resgate tenant list", "resgate tenant list --json"),
    "tenant update": (
        "resgate tenant update nlp --priority 8",
        "resgate tenant update nlp --members none --max-gpu none",
    ),
    "tenant remove": ("resgate tenant remove nlp", "resgate tenant remove nlp --force --dry-run"),
    "db init": (
        "resgate db init",
        "resgate --db /srv/resgate/resgate.db db init --shared --group lab",
    ),
    "db upgrade": ("resgate db upgrade", "resgate --db postgres://resgate@db/resgate db upgrade"),
    "db current": ("resgate db current", "resgate db current --json"),
    "db check": ("resgate db check", "resgate db check --json"),
    "audit log": (
        "resgate audit log --since 24h",
        "resgate audit log --action pool.resize --json",
    ),
    "audit verify": ("resgate audit verify", "resgate audit verify --expect 21:<hash>"),
}


# What each option's value is, in its help line (README "Help and completion"):
# one table, so that an option reads the same in every command that takes it.
METAVARS: dict[str, str] = {
    "--action": "ACTION",
    "--by": "DURATION",
    "--color": "[auto|always|never]",
    "--count": "N",
    "--cpu": "N",
    "--db": "PATH|URL",
    "--default-ttl": "DURATION|none",
    "--expect": "SEQ:HASH",
    "--format": "[json|csv]",
    "--gpu": "N",
    "--gpu-ids": "IDS",
    "--grace": "DURATION",
    "--group": "GROUP",
    "--id": "ID",
    "--interval": "SECONDS",
    "--max-cpu": "N|none",
    "--max-gpu": "N|none",
    "--max-memory": "MB|SIZE|none",
    "--max-ttl": "DURATION|none",
    "--members": "USERS|none",
    "--memory": "MB|SIZE",
    "--name": "NAME",
    "--output": "PATH",
    "--per-tenant": "N|unlimited",
    "--pool": "NAME",
    "--priority": "1-10",
    "--request-id": "KEY",
    "--since": "WHEN",
    "--since-seq": "SEQ",
    "--status": "STATUS",
    "--target": "NAME",
    "--tenant": "NAME",
    "--time-limit": "DURATION",
    "--ttl": "DURATION",
    "--until": "WHEN",
}


def finish_help(group: typer.core.TyperGroup) -> None:
    """Metavars on every option, examples on every command."""
    _metavars(group)
    add_examples(group)


def _metavars(command: _click.Command) -> None:
    for param in command.params:
        opts = getattr(param, "opts", [])
        if opts and opts[0] in METAVARS and not getattr(param, "is_flag", False):
            param.metavar = METAVARS[opts[0]]
    for sub in getattr(command, "commands", {}).values():
        _metavars(sub)


def add_examples(group: typer.core.TyperGroup, prefix: str = "") -> None:
    """Give every command of `group` (and of its sub-groups) its examples."""
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if isinstance(command, typer.core.TyperGroup):
            add_examples(command, path + " ")
        elif path in EXAMPLES:
            # \b: Click keeps the block's lines as they are.
            lines = "\n".join(f"  {example}" for example in EXAMPLES[path])
            command.epilog = f"\b\nExamples:\n{lines}"
