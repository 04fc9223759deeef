"""The command line before Click sees it (README "Typing less"): the global options
`--db` and `--color` may come after the command too, but never after a `--` (what
follows it is a job's own command line)."""

from __future__ import annotations

from resgate.errors import InvalidInput

GLOBAL_OPTIONS = ("--db", "--color")


def hoist_global_options(argv: list[str]) -> list[str]:
    """`resgate status --db x.db` as `resgate --db x.db status`. One given twice
    with different values: exit 2."""
    front: list[str] = []
    rest: list[str] = []
    values: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        option, value, used = _global(argv, i)
        if option is None:
            rest.append(arg)
            i += 1
            continue
        if option in values and values[option] != value:
            raise InvalidInput(
                f"{option} given twice with different values: {values[option]!r} and {value!r}"
            )
        if option not in values:
            values[option] = value
            front += [option, value]
        i += used
    return front + rest


def _global(argv: list[str], i: int) -> tuple[str | None, str, int]:
    """(option, value, tokens used) if argv[i] is a global option with its value."""
    arg = argv[i]
    for option in GLOBAL_OPTIONS:
        if arg == option and i + 1 < len(argv):
            return option, argv[i + 1], 2
        if arg.startswith(option + "="):
            return option, arg[len(option) + 1 :], 1
    return None, "", 1
