"""Every exit code of the ``corridor`` command, in one place (shown in ``corridor --help``).

Plugin groups return these too; the simulator's group keeps its own copy of ``USAGE`` because
``services.sim`` must not import ``services.cli`` (ADR 0020), and a unit test holds them equal.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
# Corridor answered and said no: a refused command, an invalid policy document.
REFUSED: Final = 1
# A mistake in the command line, or no stack to talk to (not found, not reachable).
USAGE: Final = 2
# The hash chain of the log is broken (`replay --verify`), an audit bundle is (`audit
# verify`), the demo saw a double payment, or a check of `corridor drill` failed.
VERIFICATION_FAILED: Final = 3
# `pilot report` answered and said no-go for some corridor it shows (ADR 0155): an answer, not
# an error, and distinct from both, so a script can gate on it.
NO_GO: Final = 4
# Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED: Final = 130

TABLE: Final = (
    (OK, "ok"),
    (REFUSED, "refused by Corridor (the reply or the policy check says why)"),
    (USAGE, "usage mistake, or the stack is not found or not reachable"),
    (
        VERIFICATION_FAILED,
        "verification failed (replay --verify or audit verify found a broken chain or bundle; "
        "a drill's check failed)",
    ),
    (NO_GO, "pilot report: no-go for at least one corridor shown"),
    (INTERRUPTED, "interrupted (Ctrl-C)"),
)


def epilog() -> str:
    lines = ["exit codes:"] + [f"  {code:<4} {meaning}" for code, meaning in TABLE]
    return "\n".join(lines)
