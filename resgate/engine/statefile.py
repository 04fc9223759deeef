"""Step 1 of `resgate import-state` (README "Coming from the Go version"): reading the
Go tool's state file.

`read_state` parses the file (exit 1 with line and column) and checks its shape and
names (exit 1 with the JSON path, e.g. `pools.p.total`). Ranges (amounts,
priorities) and the order of times are resgate's invariants, which the plan checks
(resgate/engine/import_plan.py). This module touches no database: the command runs it
before opening one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from resgate.engine.validation import ID_PATTERN, check_name
from resgate.errors import InvalidInput, StateFileError
from resgate.limits import RESOURCES

DEFAULT_PATH = "~/.resgate/state.json"
# The largest state file read: 256 MiB. The Go tool rewrote the whole file on every
# change, at some 300 bytes a reservation, so real files are far smaller; the bound
# keeps a wrong PATH (a huge log, /dev/zero's like) from exhausting memory, parsing
# needing several times the file's size.
MAX_STATE_BYTES = 256 * 2**20
_READ_CHUNK = 2**20
# Longer whole numbers are not converted (Python refuses beyond 4,300 digits anyway);
# no amount, ttl or priority needs more than 19.
_MAX_DIGITS = 100
_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")
# RFC 3339 (`T` or `t`, or a space as RFC 3339 §5.6 allows; `Z`/`z` or ±hh:mm).
# Any number of fraction digits is read; beyond microseconds they are truncated.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # \d is 0-9 only: `٣` is no digit of a timestamp
)


def fail(path: str, message: str) -> StateFileError:
    """The error for the part of the file at `path` (a JSON path such as
    `pools.p.total`), or for the whole file when `path` is empty."""
    return StateFileError(f"{path}: {message}" if path else message)


@dataclass(frozen=True)
class FilePool:
    path: str
    name: str
    total: tuple[int, int, int]
    created_at: datetime | None


@dataclass(frozen=True)
class FileTenant:
    path: str
    name: str
    priority: int | None
    created_at: datetime | None


@dataclass(frozen=True)
class FileReservation:
    path: str
    id: str
    tenant: str
    pool: str
    resources: tuple[int, int, int]
    ttl: int
    created_at: datetime
    expires_at: datetime | None
    released_at: datetime | None
    in_active_map: bool


@dataclass(frozen=True)
class StateFile:
    pools: list[FilePool]
    tenants: list[FileTenant]
    history: list[FileReservation]  # in file order
    active: list[FileReservation]  # the active map, in file order


def read_state(path: Path, display: str, max_bytes: int = MAX_STATE_BYTES) -> StateFile:
    """Read and parse the file, then check its shape and names."""
    return parse_state(_read_file(path.expanduser(), display, max_bytes), display)


def _read_file(path: Path, display: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Anything else is refused before it is opened: a FIFO would block the open until a
    writer came, a device such as /dev/zero never ends (and opening some devices acts).
    The open itself does not block either (O_NONBLOCK), and what was opened is checked
    again, in case the path changed in between. At most `limit` + 1 bytes are read, so
    a file that grows while it is read is caught too."""

    def cannot(reason: str) -> StateFileError:
        return StateFileError(f"cannot read {display}: {reason}")

    try:
        _check_regular(os.stat(path), cannot, limit)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        dangling = path.is_symlink()
        raise cannot("dangling symbolic link" if dangling else exc.strerror or str(exc)) from None
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    try:
        _check_regular(os.fstat(fd), cannot, limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise cannot(exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    raise cannot(f"larger than {_size(limit)}")


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count % 2**20 == 0 else f"{count} bytes"


def _check_regular(
    status: os.stat_result, cannot: Callable[[str], StateFileError], limit: int
) -> None:
    if stat.S_ISDIR(status.st_mode):
        raise cannot(os.strerror(errno.EISDIR))
    if not stat.S_ISREG(status.st_mode):
        raise cannot("not a regular file")
    if status.st_size > limit:
        raise cannot(f"larger than {_size(limit)}")


def parse_state(raw: bytes, display: str) -> StateFile:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise StateFileError(f"{display}: not UTF-8 at line {line}, column {column}") from None
    try:
        # NaN and Infinity: refused as amounts, with their path. So are numbers too long
        # for an int (Python's int-from-text limit would fail here, without a place).
        document = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise StateFileError(
            f"{display}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:  # the decoder recurses once per level of [ or {
        raise StateFileError(
            f"{display}: invalid JSON: arrays or objects nested too deeply"
        ) from None
    if not isinstance(document, dict):
        raise StateFileError(
            f"{display}: expected a JSON object at the top level, got {_kind(document)}"
        )
    for key in document:
        if key not in TOP_LEVEL:
            raise StateFileError(f"{display}: unknown key {_shown_key(key)} ({_hint(key)})")
    return StateFile(
        pools=[_pool(p, k, v) for k, v, p in _entries(document, "pools")],
        tenants=[_tenant(p, k, v) for k, v, p in _entries(document, "tenants")],
        history=[
            _reservation(f"history[{i}]", None, entry, in_active_map=False)
            for i, entry in enumerate(_array(document.get("history"), "history"))
        ],
        active=[
            _reservation(p, k, v, in_active_map=True)
            for k, v, p in _entries(document, "reservations")
        ],
    )


# The file's top-level keys: a misspelt one would otherwise import nothing of what
# it holds, silently (README "Coming from the Go version").
TOP_LEVEL = ("pools", "tenants", "reservations", "history")
# What people call the maps, as they read the Go tool's code and files.
_CALLED = {"active": "reservations", "active_reservations": "reservations", "ended": "history"}
_MAPS = {"reservations": "the active map", "history": "the ended reservations"}


def _hint(key: str) -> str:
    import difflib

    meant = _CALLED.get(key.lower())
    if meant is not None:
        return f"{_MAPS[meant]} is '{meant}'"
    close = difflib.get_close_matches(key, TOP_LEVEL, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "known: " + ", ".join(TOP_LEVEL)


def _shown_key(key: str) -> str:
    text = repr(key)
    return text if len(text) <= 60 else f"{text[:56]}...'"


@dataclass(frozen=True)
class _LongNumber:
    """A whole number of the file with more than _MAX_DIGITS digits: kept as its digit
    count, refused with its path if a field that is read holds it."""

    digits: int


def _parse_int(text: str) -> int | _LongNumber:
    digits = len(text.lstrip("-"))
    return _LongNumber(digits) if digits > _MAX_DIGITS else int(text)


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    return line, offset - (before.rfind(b"\n") + 1) + 1


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _LongNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _key(base: str, key: str) -> str:
    return f"{base}.{key}" if _SIMPLE_KEY.fullmatch(key) else f"{base}[{json.dumps(key)}]"


def _entries(document: dict[str, Any], name: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """A map of the file: missing or null is empty; each value must be an object."""
    value = document.get(name)
    if value is None:
        return
    if not isinstance(value, dict):
        raise fail(name, f"expected an object, got {_kind(value)}")
    for key, entry in value.items():
        path = _key(name, key)
        yield key, _object(entry, path), path


def _array(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(path, f"expected an array, got {_kind(value)}")
    return value


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, f"expected an object, got {_kind(value)}")
    return value


def _whole(value: object, path: str) -> int:
    """A whole number; missing or null is 0 (the Go zero value). The range is an
    invariant, checked later."""
    if value is None:
        return 0
    if isinstance(value, _LongNumber):
        raise fail(path, f"number of {value.digits} digits is out of range")
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, f"expected a whole number, got {_kind(value)}{_shown(value)}")
    return value


def _shown(value: object) -> str:
    """A scalar as the file wrote it, shortened; nothing for an array or an object
    (which may be huge, or too deeply nested for json.dumps)."""
    if isinstance(value, list | dict):
        return ""
    text = json.dumps(value)
    return f" ({text if len(text) <= 40 else text[:37] + '...'})"


def _file_amounts(entry: dict[str, Any], key: str, path: str) -> tuple[int, int, int]:
    where = f"{path}.{key}"
    value = entry.get(key)
    if value is None:
        return (0, 0, 0)
    amounts = _object(value, where)
    cpu, memory, gpu = (_whole(amounts.get(r), f"{where}.{r}") for r in RESOURCES)
    return (cpu, memory, gpu)


def _text(entry: dict[str, Any], key: str, path: str) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"{path}.{key}", f"expected a string, got {_kind(value)}")
    return value


def _name(kind: str, value: str, path: str) -> str:
    try:
        return check_name(kind, value)
    except InvalidInput as exc:
        raise fail(path, exc.message) from None


def _keyed_name(kind: str, key: str, entry: dict[str, Any], path: str) -> str:
    """The map key is the name; a `name` field, if there, must agree."""
    _name(kind, key, path)
    stated = _text(entry, "name", path)
    if stated is not None and stated != key:
        raise fail(f"{path}.name", f"{kind} name {stated!r} differs from its key {key!r}")
    return key


def _time(entry: dict[str, Any], key: str, path: str) -> datetime | None:
    value = _text(entry, key, path)
    return None if value is None else parse_timestamp(value, f"{path}.{key}")


def parse_timestamp(value: str, path: str = "") -> datetime:
    """RFC 3339 with any offset and up to nanoseconds (more digits are accepted
    too), as a naive UTC datetime truncated to microseconds."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise fail(path, f"invalid timestamp {value!r} (RFC 3339 expected)")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, zulu, sign, off_hours, off_minutes = match.groups()[6:]
    micro = int((fraction or "").ljust(6, "0")[:6])
    try:
        local = datetime(year, month, day, hour, minute, second, micro)
        if zulu:
            return local
        if int(off_hours) > 23 or int(off_minutes) > 59:
            raise ValueError("offset out of range")
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
        return local - offset if sign == "+" else local + offset
    except (ValueError, OverflowError):
        raise fail(path, f"invalid timestamp {value!r} (RFC 3339 expected)") from None


def _pool(path: str, key: str, entry: dict[str, Any]) -> FilePool:
    name = _keyed_name("pool", key, entry, path)
    total = _file_amounts(entry, "total", path)
    return FilePool(path, name, total, _time(entry, "created_at", path))


def _tenant(path: str, key: str, entry: dict[str, Any]) -> FileTenant:
    name = _keyed_name("tenant", key, entry, path)
    priority = entry.get("priority")
    return FileTenant(
        path,
        name,
        None if priority is None else _whole(priority, f"{path}.priority"),
        _time(entry, "created_at", path),
    )


def _reservation(
    path: str, key: str | None, value: object, *, in_active_map: bool
) -> FileReservation:
    entry = _object(value, path)
    stated = _text(entry, "id", path)
    if key is not None and stated is not None and stated != key:
        raise fail(f"{path}.id", f"id {stated!r} differs from its key {key!r}")
    rid = key if key is not None else stated
    if rid is None:
        raise fail(f"{path}.id", "missing")
    if not ID_PATTERN.fullmatch(rid):
        raise fail(
            path if key is not None else f"{path}.id",
            f"invalid reservation id {rid!r}: expected 16 lowercase hex characters",
        )
    names = {}
    for field_, kind in (("tenant_name", "tenant"), ("pool_name", "pool")):
        text = _text(entry, field_, path)
        if text is None:
            raise fail(f"{path}.{field_}", "missing")
        names[kind] = _name(kind, text, f"{path}.{field_}")
    created_at = _time(entry, "created_at", path)
    if created_at is None:
        raise fail(f"{path}.created_at", "missing")
    return FileReservation(
        path=path,
        id=rid,
        tenant=names["tenant"],
        pool=names["pool"],
        resources=_file_amounts(entry, "resources", path),
        ttl=_whole(entry.get("ttl"), f"{path}.ttl"),
        created_at=created_at,
        expires_at=_time(entry, "expires_at", path),
        released_at=_time(entry, "released_at", path),
        in_active_map=in_active_map,
    )
