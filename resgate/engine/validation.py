"""Rules for values that the engine also enforces for callers other than the CLI."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from resgate.errors import InvalidInput
from resgate.limits import MAX_AMOUNT, PRIORITY_RANGE, RESOURCES

if TYPE_CHECKING:  # annotations only: the CLI imports this module for every command
    from resgate.engine.records import Amounts, Limits

# The width of events.actor (String(128) in resgate/store/models.py and migration
# 0003): PostgreSQL refuses longer, SQLite would store anything, so it is checked
# here for both.
MAX_ACTOR = 128
# C0, DEL and C1: a newline would forge a line of `audit log`, ESC a terminal command.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ID_PATTERN = re.compile(r"[0-9a-f]{16}")


def check_name(kind: str, name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidInput(
            f"invalid {kind} name {name!r}: 1-64 characters, letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return name


def check_actor(value: str, source: str = "RESGATE_ACTOR") -> str:
    """The actor the audit log records (README "The audit log"): printable UTF-8, at most
    MAX_ACTOR characters. `source` names where it came from, for the message."""
    if SURROGATE.search(value):
        # How Python shows bytes of the environment that are not UTF-8.
        raw = value.encode("utf-8", "surrogateescape")
        raise InvalidInput(f"{source} is not valid UTF-8: {_shorten(repr(raw))}")
    if CONTROL.search(value):
        raise InvalidInput(
            f"invalid {source} {_shorten(repr(value))}: control characters (newline, tab, "
            "escape, ...) are not allowed"
        )
    if len(value) > MAX_ACTOR:
        raise InvalidInput(f"{source} is too long: {len(value)} characters, at most {MAX_ACTOR}")
    return value


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_amounts(amounts: Amounts) -> Amounts:
    for resource, value in zip(RESOURCES, amounts, strict=True):
        if not 0 <= value <= MAX_AMOUNT:
            raise InvalidInput(f"{resource} must be between 0 and {MAX_AMOUNT}, got {value}")
    return amounts


def check_priority(priority: int) -> int:
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise InvalidInput(f"priority must be between {low} and {high}, got {priority}")
    return priority


def check_ttl(ttl: int | None) -> int | None:
    if ttl is not None and not 0 <= ttl <= MAX_AMOUNT:
        raise InvalidInput(f"ttl must be between 0 and {MAX_AMOUNT} seconds, got {ttl}")
    return ttl or None


def check_reservation_id(value: str) -> str:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid reservation id {value!r}: expected 16 lowercase hex characters"
        )
    return value


def check_limits(limits: Limits) -> Limits:
    for resource, value in zip(RESOURCES, limits, strict=True):
        if value is not None and not 0 <= value <= MAX_AMOUNT:
            raise InvalidInput(f"max {resource} must be between 0 and {MAX_AMOUNT}, got {value}")
    return limits
