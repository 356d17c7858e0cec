"""Stopping tasks that may have lost a cancellation.

On Python 3.11, ``asyncio.wait_for`` can swallow a cancellation that arrives just as the
awaited call finishes (CPython gh-86296, fixed in 3.12), and some client libraries turn a
cancellation that closes their connection into an ordinary error. A retry loop that catches
that error then runs on, and a shutdown that cancels once and awaits for ever hangs. This was
seen as an executor that never stopped in a test's teardown under load.

The task still counts the cancellation (``Task.cancelling()``), so retry loops ask
``cancel_requested()`` before trying again, and shutdowns use ``cancel_and_wait``, which
cancels again whatever is still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

# How long a shutdown waits for cancelled tasks before cancelling the stragglers again.
RECANCEL_AFTER_S = 1.0


def cancel_requested() -> bool:
    """Whether the running task has been asked to stop, even if the cancellation was lost."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` in a retry loop whose task was asked to stop."""
    if cancel_requested():
        raise asyncio.CancelledError


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[Any]], *, recancel_after_s: float = RECANCEL_AFTER_S
) -> int:
    """Cancel ``tasks`` and wait until every one has ended; returns how many needed another
    cancel. A task that keeps ignoring cancellation keeps its caller waiting, as before."""
    pending = {task for task in tasks if not task.done()}
    recancelled = 0
    first = True
    while pending:
        for task in pending:
            task.cancel()
        if not first:
            recancelled += len(pending)
        first = False
        _, pending = await asyncio.wait(pending, timeout=recancel_after_s)
    return recancelled
