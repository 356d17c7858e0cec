"""The settlement follower of one node (ADR 0221): every invoice the node settles, in pay order,
reported to the engine as paid if its preimage is one of ours (``receive_preimage.intent_of``).

It resumes after the highest ``pay_index`` the log has for this node (``GetInvoiceCursor``):
each settlement is reported and committed before the next is read, so the log is the
checkpoint, and a restart or a second executor of the node reports nothing twice that the
engine would record twice. A node that goes away, or an engine that does not answer, costs a
pause and a resume from the log's cursor, never a settlement.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from services.cancellation import stop_if_cancelled
from services.executor.errors import EngineUnavailable, OutcomeRefused
from services.executor.invoice_reports import NodeInvoices, paid_report
from services.executor.receive_preimage import intent_of
from services.lightning.port import InvoiceStatus, NodeError

log = structlog.get_logger("corridor.executor")

# Pauses after the node or the engine failed the follower, doubling up to the max.
FOLLOW_RETRY_S_FIRST: Final = 0.5
FOLLOW_RETRY_S_MAX: Final = 30.0


class InvoiceFollower(NodeInvoices):
    # Settlements committed (duplicates included), for tests.
    reported = 0

    async def run(self) -> None:
        """Until cancelled."""
        pause_s = FOLLOW_RETRY_S_FIRST
        while True:
            try:
                await self._follow()
            except (NodeError, EngineUnavailable, OutcomeRefused) as exc:
                stop_if_cancelled()  # the error may be a cancel a client turned into one
                log.info("invoice_follow_paused", error=type(exc).__name__, detail=str(exc)[:200],
                         pause_s=pause_s)  # fmt: skip
            await asyncio.sleep(pause_s)
            pause_s = min(pause_s * 2, FOLLOW_RETRY_S_MAX)

    async def _follow(self) -> None:
        cursor = await self._engine().invoice_cursor()
        log.info("invoice_follow_from", after_pay_index=cursor)
        async for update in self._node.invoice_updates(after_pay_index=cursor):
            await self._settled(update)

    async def _settled(self, update: InvoiceStatus) -> None:
        if update.state != "paid" or update.preimage is None:
            return
        intent_id = intent_of(self._secret, update.preimage)
        if intent_id is None:
            return  # an invoice of the node's that is not one of our receives
        report = paid_report(intent_id, self._node_name, self._region, update)
        try:
            await self._engine().record_invoice(
                report, causation_id=f"settle-{self._node_name}-{update.pay_index}",
                correlation_id=intent_id,
            )  # fmt: skip
        except OutcomeRefused as exc:
            if exc.error_code != "invalid_transition":
                raise
            # The receive ended otherwise (failed): a person must see this settlement.
            log.error("invoice_settlement_refused", intent_id=intent_id,
                      payment_hash=update.payment_hash, code=exc.error_code)  # fmt: skip
        self.reported += 1
