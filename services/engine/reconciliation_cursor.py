"""The reconciler's cursors, stored by the engine once the pass's report is committed (ADR 0163).

A reconciler reads the log and its checkpoints as the read-only auditor role; where its next
pass resumes travels on its last report (``ReportReconciliation.cursor``) and is written here,
under the node the credential names (the report's ``node`` is bound to it, ADR 0151). Stored
only after the report's findings are committed: a crash between the two repeats a pass, which
finds nothing new (one item per key), and a cursor never moves past an unreported finding.
"""

from __future__ import annotations

from typing import Any

import structlog

from schemas.reconciliation_messages import ReconciliationCommandAccepted, ReportReconciliation
from services.eventstore.port import EventStore

log = structlog.get_logger("corridor.reconciliation")
# A database error's text copied into the log line is bounded.
ERROR_CHARS_MAX = 200


def index_checkpoint(node: str) -> str:
    return f"recon-index-{node}"


def log_checkpoint(node: str) -> str:
    return f"recon-log-{node}"


class ReconciliationCursors:
    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def after(self, command: Any, reply: Any) -> None:
        """Store ``command``'s cursor if it is a report the engine accepted."""
        if not isinstance(command, ReportReconciliation) or command.cursor is None:
            return
        if not isinstance(reply, ReconciliationCommandAccepted):
            return  # refused: nothing was committed, so the pass is repeated from the old cursor
        node = command.node
        try:
            await self._store.set_checkpoints(
                {
                    index_checkpoint(node): command.cursor.index_after,
                    log_checkpoint(node): command.cursor.log_after,
                }
            )
        except Exception as exc:
            # The findings are committed; an unmoved cursor only repeats the pass, which finds
            # nothing new. The report's reply stays what the commit said.
            log.warning("reconciliation_cursor_not_stored", node=node,
                        detail=f"{type(exc).__name__}: {exc}"[:ERROR_CHARS_MAX])  # fmt: skip
