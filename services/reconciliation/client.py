"""The reconciler's side of the engine API: report a pass's findings, as a command.

The engine is the log's one writer (ADR 0151): findings travel as ``ReportReconciliation`` on
``corridor.api.v1.recon.report.<node>``, which only this node's reconciler credential may
publish (ADR 0060), and the engine replies after commit.
"""

from __future__ import annotations

from typing import Final

import msgspec

from schemas.codec import encode
from schemas.reconciliation_messages import ReconciliationCommandAccepted, ReportReconciliation
from schemas.replies import CommandRejected
from services.bus import subjects
from services.bus.port import Bus

# A report commits in one batch; an engine that has not answered by then is retried next pass.
REPORT_TIMEOUT_S: Final = 10.0

_reply = msgspec.json.Decoder(ReconciliationCommandAccepted | CommandRejected)


class ReportRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class EngineReporter:
    def __init__(self, bus: Bus, *, node: str, timeout_s: float = REPORT_TIMEOUT_S) -> None:
        self._bus = bus
        self._subject = f"{subjects.RECON_API_PREFIX}.report.{node}"
        self._timeout_s = timeout_s

    async def __call__(self, report: ReportReconciliation) -> ReconciliationCommandAccepted:
        """Commit ``report``; raises ``ReportRefused``, ``TimeoutError`` or ``NoResponders``."""
        msg = await self._bus.request(self._subject, encode(report), timeout_s=self._timeout_s)
        reply = _reply.decode(msg.data)
        if isinstance(reply, CommandRejected):
            raise ReportRefused(reply.error.code, reply.error.message)
        return reply
