"""Errors a user sees as one line (``corridor: error: ...``) and the exit code each means."""

from __future__ import annotations

from services.cli import exit_codes


class CliError(Exception):
    """Root of the CLI's user-facing errors; ``exit_code`` says how the process ends."""

    exit_code: int = exit_codes.USAGE


class UsageError(CliError):
    """A mistake in the command line: a missing flag, a value out of range."""


class Unreachable(CliError):
    """The stack is named but does not answer (NATS down, no engine listening)."""


class Refused(CliError):
    """Corridor answered with ``CommandRejected`` where the command needed an answer."""

    exit_code = exit_codes.REFUSED
