"""What to do next (README "Being told what to do"): the words the command line adds
to an error the engine marked with a Hint. The engine says what is wrong; only the
command line knows the commands and flags that put it right."""

from __future__ import annotations

from resgate.errors import ResgateError


def described(exc: ResgateError) -> str:
    """The error's message, with its hint spelled out for the command line."""
    hint = exc.hint
    if hint is None:
        return exc.message
    if hint.what == "missing":
        if hint.close is not None:
            return f"{exc.message} (did you mean '{hint.close}'?)"
        return f"{exc.message} (see: resgate {hint.kind} list)"
    if hint.what == "exists":
        return f"{exc.message} (to change it: resgate {hint.kind} update {hint.name} …)"
    if hint.what == "outranks":
        return f"{exc.message}; '{hint.name}' outranks holders of it: add --preempt to evict them"
    return exc.message
