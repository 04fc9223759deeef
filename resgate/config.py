"""The configuration files (README "Configuration files"): the system file, then the
user file (or the one RESGATE_CONFIG names), read with tomllib and checked for keys
and types. Standard library only; the CLI reads them when a command first needs a
setting (never for --help, version or completion) and applies the environment and
its options over them."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resgate.errors import InvalidInput

SYSTEM_FILE = Path("/etc/resgate/config.toml")  # tests point it into tmp_path
KEYS = ("db", "tenant", "pool", "busy_timeout", "color", "admins")
COLORS = ("auto", "always", "never")

Value = str | int | float | list[str]


@dataclass(frozen=True)
class Setting:
    """One effective setting and where it came from: a file's path, `env`,
    `option` or `default`."""

    value: Value | None
    source: str


@dataclass(frozen=True)
class Files:
    """What the configuration files set, the user file's keys over the system
    file's: only the keys some file sets."""

    settings: dict[str, Setting] = field(default_factory=dict)

    def get(self, key: str) -> Setting | None:
        return self.settings.get(key)


def user_file(environ: Mapping[str, str] = os.environ) -> Path | None:
    """RESGATE_CONFIG (empty: none), else $XDG_CONFIG_HOME/resgate/config.toml, else
    ~/.config/resgate/config.toml."""
    chosen = environ.get("RESGATE_CONFIG")
    if chosen is not None:
        return Path(chosen).expanduser() if chosen else None
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "resgate" / "config.toml"


def load(system: Path | None = None, environ: Mapping[str, str] = os.environ) -> Files:
    """Read the system file and the user file; a missing file sets nothing. A file
    that cannot be read or parsed, an unknown key, a value of the wrong type, or
    `admins` outside the system file: InvalidInput (exit 2) naming the file."""
    system = SYSTEM_FILE if system is None else system
    merged = read_file(system, system=True)
    user = user_file(environ)
    if user is not None and not _same_file(user, system):
        merged.update(read_file(user, system=False))
    return Files(merged)


def read_file(path: Path, *, system: bool) -> dict[str, Setting]:
    """The settings of one file, each with the file's path as its source."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _problem(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _problem(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise _problem(path, str(exc)) from None
    source = str(path)
    found: dict[str, Setting] = {}
    for key, value in table.items():
        if key not in KEYS:
            raise _problem(path, f"unknown key {key!r} (known: {', '.join(KEYS)})")
        found[key] = Setting(_checked(path, key, value, system=system), source)
    return found


def _checked(path: Path, key: str, value: object, *, system: bool) -> Value:
    if key == "admins":
        if not system:
            raise _problem(path, f"admins may be set only in the system file {SYSTEM_FILE}")
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise _problem(path, f"admins must be a list of user names, got {_shown(value)}")
        return list(value)
    if key == "busy_timeout":
        # bool is an int to Python, not a number of seconds to anyone.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _problem(path, f"busy_timeout must be a number of seconds, got {_shown(value)}")
        return value  # its range is checked where it is used (the CLI)
    if not isinstance(value, str):
        raise _problem(path, f"{key} must be a string, got {_shown(value)}")
    if key == "color" and value not in COLORS:
        raise _problem(path, f"color must be auto, always or never, got {value!r}")
    if key == "db":
        return _database(path, value)
    return value


def _database(path: Path, value: str) -> str:
    """`db` as `--db`, but a relative path is relative to the file's directory; a
    URL, `~` and `:memory:` (refused when used) are left as written."""
    if value.strip() == "":
        raise _problem(path, "db must not be empty")
    if "://" in value or value.startswith(("sqlite:", "~")) or value == ":memory:":
        return value
    return str(path.parent.absolute() / value)


def _same_file(one: Path, other: Path) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False


def _shown(value: object) -> str:
    """What kind of TOML value this is, for a message."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 80 else "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"  # a date or time


def _problem(path: Path, reason: str) -> InvalidInput:
    return InvalidInput(f"{path}: {reason}")


def os_user() -> str:
    """The caller's OS user name (never RESGATE_ACTOR): what permission checks,
    `resgate config` and the audit log use."""
    return os_user_and_source()[0]


def os_user_and_source() -> tuple[str, str]:
    """The OS user name and where it came from, for messages: the passwd name of the
    effective uid; LOGNAME and USER, which anyone can set, only when the uid has no
    passwd entry (containers); else `uid:<n>`."""
    import getpass
    import pwd

    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, "OS user name"
    except KeyError:
        pass
    try:
        return getpass.getuser(), "OS user name (LOGNAME, USER)"
    except (KeyError, OSError):
        return f"uid:{os.getuid()}", "OS user name"
