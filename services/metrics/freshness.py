"""Readiness of a process whose work is a loop (the projection runner, a reconciler): ready
while its last finished round is recent. A wedged loop then fails ``/readyz``, which a bare
``/healthz`` (the process answers) cannot show."""

from __future__ import annotations

import time
from collections.abc import Callable

from services.metrics.server import ReadyCheck


def finished_within(
    last_at: Callable[[], float | None], *, max_age_s: float, what: str
) -> ReadyCheck:
    """``last_at`` gives the ``time.monotonic()`` of the last finished round, or None."""

    def ready() -> str | None:
        last = last_at()
        if last is None:
            return f"no {what} finished yet"
        age_s = time.monotonic() - last
        return None if age_s <= max_age_s else f"last {what} {age_s:.0f} s ago"

    return ready
