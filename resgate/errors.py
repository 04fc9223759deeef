"""Domain errors. Each carries the exit code of README "Exit codes"; the CLI maps them to
`Error: <message>` on stderr. This module imports nothing heavy."""

from __future__ import annotations


class ResgateError(Exception):
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ResgateError):
    """Visible without opening the database (exit 2)."""

    exit_code = 2


class NotFound(ResgateError):
    exit_code = 1


class DatabaseProblem(ResgateError):
    """An unusable, read-only, newer or unreachable database (exit 1)."""

    exit_code = 1


class InsufficientResources(ResgateError):
    exit_code = 3


class Refused(ResgateError):
    """Conflict or refusal: duplicates, not active, priority too low (exit 4)."""

    exit_code = 4


class Busy(ResgateError):
    """The lock could not be had in time, or retries ran out (exit 5)."""

    exit_code = 5
