"""Domain errors. Each carries the exit code of README "Exit codes"; the CLI maps them to
`Error: <message>` on stderr. This module imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    """What the command line may add to a message to say what to do next (README
    "Being told what to do"; resgate/cli/hints.py words it): `missing` a pool or
    tenant (with a close live name, if any), one that `exists` already, or a
    requester that `outranks` holders of what is missing."""

    what: str  # missing | exists | outranks
    kind: str = ""  # pool | tenant
    name: str = ""  # the name given, or the requesting tenant
    close: str | None = None


class ResgateError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: Hint | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InvalidInput(ResgateError):
    """Visible without opening the database (exit 2)."""

    exit_code = 2


class NotFound(ResgateError):
    exit_code = 1


class DatabaseProblem(ResgateError):
    """An unusable, read-only, newer or unreachable database (exit 1)."""

    exit_code = 1

    @classmethod
    def cannot_open(cls, where: str, reason: str) -> DatabaseProblem:
        return cls(f"cannot open database {where}: {reason}")

    @classmethod
    def not_resgate(cls, where: str, reason: str) -> DatabaseProblem:
        """A file that is not resgate's database, refused and left untouched."""
        return cls(f"not a resgate database: {where} ({reason})")

    @classmethod
    def read_only(cls, display: str) -> DatabaseProblem:
        return cls(f"database is read-only: {display}")

    @classmethod
    def read_only_for_you(cls, where: str, described: str) -> DatabaseProblem:
        """A write the caller's permissions forbid; `described`: owner, group and mode
        of what forbids it."""
        return cls(f"database is read-only for you: {where} ({described})")

    @classmethod
    def permission_denied(cls, where: str, described: str) -> DatabaseProblem:
        """A read the caller's permissions forbid: never called a foreign file."""
        return cls(f"cannot open {where}: permission denied ({described})")

    @classmethod
    def no_such_group(cls, name: str) -> DatabaseProblem:
        return cls(f"no such group: {name}")

    @classmethod
    def needs_upgrade(cls, display: str, found: str, head: str) -> DatabaseProblem:
        """An older schema, which only a write command or `resgate db upgrade` changes."""
        return cls(
            f"database {display} is at schema revision {found}, this resgate needs "
            f"{head}: run `resgate db upgrade`"
        )

    @classmethod
    def ask_an_admin(cls) -> DatabaseProblem:
        """A missing or older database met by someone who may not create or upgrade
        it (README "Sharing one machine", Admins)."""
        return cls("the database needs an upgrade: ask an admin to run resgate db upgrade")

    @classmethod
    def unknown_revision(cls, display: str, found: str, head: str) -> DatabaseProblem:
        """A newer or foreign schema: this resgate does not touch it."""
        return cls(
            f"database {display} is at schema revision {found}, unknown to this resgate "
            f"(head {head}): upgrade resgate"
        )


class InsufficientResources(ResgateError):
    exit_code = 3


class Refused(ResgateError):
    """Conflict or refusal: duplicates, not active, priority too low (exit 4)."""

    exit_code = 4


class Busy(ResgateError):
    """The lock could not be had in time, or retries ran out (exit 5)."""

    exit_code = 5

    @classmethod
    def write_lock_timeout(cls, seconds: float) -> Busy:
        """SQLite: the write lock, waited for up to the busy timeout."""
        return cls._retry(f"the write lock was not free within {seconds:g}s")

    @classmethod
    def lock_timeout(cls, seconds: float) -> Busy:
        """PostgreSQL: a row lock, waited for up to lock_timeout."""
        return cls._retry(f"a lock was not free within {seconds:g}s")

    @classmethod
    def conflicts(cls) -> Busy:
        """PostgreSQL: serialization failures or deadlocks on every retry."""
        return cls._retry("too many conflicting transactions")

    @classmethod
    def _retry(cls, reason: str) -> Busy:
        return cls(f"database is busy: {reason}; the command changed nothing and may be retried")


class StateFileError(ResgateError):
    """The state file cannot be read, parsed, or breaks a rule (exit 1)."""

    exit_code = 1
