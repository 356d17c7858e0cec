"""One bad command never fails another: a group commit that fails for good is split.

The writer loop commits many commands in one transaction. If that transaction fails for a
reason a retry cannot fix (``services/failures.py``: a definite failure, such as text the
database refuses, or a bug that one command trips), every command of the batch is decided and
appended again on its own, against fresh state. Only the guilty one is refused, with a code;
every honest one commits, outcomes from executors included. A transient failure is not split:
the whole batch is ``unavailable`` and retried by its senders, as before.

Splitting costs one transaction per command of the failed batch, and only then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
import structlog

from schemas import errors
from services.failures import classify

log = structlog.get_logger("corridor.processor")

Item = TypeVar("Item")
Reply = TypeVar("Reply")


async def one_by_one(
    items: Sequence[Item],
    alone: Callable[[Item], Awaitable[Reply]],
    failed: BaseException,
) -> list[Reply]:
    """Each of ``items`` through ``alone``, in order, after the batch failed with ``failed``."""
    verdict = classify(failed)
    log.warning(
        "batch_refused_split",
        commands=len(items),
        error=type(failed).__name__,
        sqlstate=getattr(failed, "sqlstate", None),
        reason=verdict.reason,
    )
    return [await alone(item) for item in items]


def refusal(failed: BaseException) -> errors.CorridorError:
    """The coded refusal for one command that failed definitely on its own."""
    if isinstance(failed, asyncpg.PostgresError):
        return errors.StoreRefused(
            f"the event store refused this command (SQLSTATE {failed.sqlstate}); not committed"
        )
    log.error("command_crashed", error=type(failed).__name__, exc_info=failed)
    return errors.CorridorError("internal error; not committed", code="internal_error")
