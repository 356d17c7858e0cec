"""Named failpoints: places in the code a fault drill can arm to kill the process right there.

``failpoint("executor.after_send")`` does nothing unless the process was started with
``CORRIDOR_FAILPOINTS`` arming that name, e.g. ``executor.after_send=kill@3``: the third time
the point is reached, the process appends ``<name> <pid> <hits>`` to the file named by
``CORRIDOR_FAILPOINTS_RECORD`` (written before it dies, so a drill can prove the kill happened
at that point and not at a harmless moment) and sends itself SIGKILL. No cleanup runs, exactly
as when the machine loses the process. See docs/adr/0081-real-process-fault-drills.md.

Disarmed, a call costs one function call and one module-level flag check: the environment is
read once, at import.
"""

from __future__ import annotations

import os
import signal
from typing import Final

ENV: Final = "CORRIDOR_FAILPOINTS"
RECORD_ENV: Final = "CORRIDOR_FAILPOINTS_RECORD"

# Every point the code has; arming any other name is a typo and stops the process at start,
# so a drill cannot wait in vain for a point that does not exist.
KNOWN: Final = frozenset(
    {
        # services/executor/payer.py: the node has not been asked to pay yet.
        "executor.before_send",
        # services/executor/payer.py: the node answered the send; nothing reported yet.
        "executor.after_send",
        # services/executor/payer.py: the final outcome is committed; the order is not acked.
        "executor.after_outcome",
    }
)
# A drill arms a point for one hit among a few; more than this is a mistake in the spec.
HIT_MAX: Final = 1_000_000


def parse(spec: str) -> dict[str, int]:
    """``name=kill@N[,name=kill@N...]`` -> {name: N}. Raises ``ValueError`` on anything else."""
    armed: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = entry.partition("=")
        verb, _, count = action.partition("@")
        if name not in KNOWN:
            raise ValueError(f"{ENV}: unknown failpoint {name!r}; known: {sorted(KNOWN)}")
        if verb != "kill" or not count.isdigit() or not 1 <= int(count) <= HIT_MAX:
            raise ValueError(f"{ENV}: {entry!r} must read {name}=kill@N with 1 <= N <= {HIT_MAX}")
        armed[name] = int(count)
    return armed


_armed: Final = parse(os.environ.get(ENV, ""))
_ARMED: Final = bool(_armed)
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill this process here if a drill armed ``name`` and this is the armed hit."""
    if not _ARMED:
        return
    _reached(name)


def _reached(name: str) -> None:
    assert name in KNOWN, f"failpoint {name!r} is not in failpoints.KNOWN"
    if name not in _armed:
        return
    hits = _hits[name] = _hits.get(name, 0) + 1
    if hits != _armed[name]:
        return
    record = os.environ.get(RECORD_ENV)
    if record:
        # One write on an O_APPEND descriptor: whole lines even with several processes.
        fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{name} {os.getpid()} {hits}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
