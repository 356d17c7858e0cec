"""The expiry watch of one node (ADR 0221): the node's open invoices that the log says are past
their expiry are asked of the node, and ended on its word only. Paid is reported paid (the
follower usually did so first); expired or cancelled is reported expired; an invoice the node
still holds open (an HTLC it accepted just before the expiry may still settle) is asked again
next round, whatever our clock says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from services.cancellation import stop_if_cancelled
from services.executor.engine_client import EngineClient
from services.executor.errors import EngineUnavailable, OutcomeRefused
from services.executor.invoice_reports import ended_report
from services.lightning.port import NodeError, NodePort

log = structlog.get_logger("corridor.executor")

# How often the watch asks. An expired invoice costs nothing while it waits: it cannot be paid,
# and its receive shows ``issued`` until the next round.
EXPIRY_SCAN_S: Final = 10.0
# Nodes mark an invoice expired moments after its expiry (lnd's invoice registry expiry
# watcher); asked earlier, it is only asked again.
EXPIRY_MARGIN_S: Final = 2


class ExpiryWatch:
    def __init__(
        self,
        node: NodePort,
        *,
        region: str,
        node_name: str,
        engine: Callable[[], EngineClient],
        now_s: Callable[[], float] = time.time,
        scan_s: float = EXPIRY_SCAN_S,
    ) -> None:
        self._node = node
        self._region = region
        self._node_name = node_name
        self._engine = engine
        self._now_s = now_s
        self._scan_s = scan_s

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            try:
                await self.scan_once()
            except (NodeError, EngineUnavailable, OutcomeRefused) as exc:
                stop_if_cancelled()  # the error may be a cancel a client turned into one
                log.info("expiry_watch_paused", error=type(exc).__name__, detail=str(exc)[:200])
            await asyncio.sleep(self._scan_s)

    async def scan_once(self) -> int:
        """Ends what the node says ended; returns how many were reported."""
        engine = self._engine()
        due = await engine.expired_invoices(before_s=int(self._now_s()) - EXPIRY_MARGIN_S)
        reported = 0
        for invoice in due:
            record = await self._node.lookup_invoice(invoice.payment_hash)
            if record is None:
                log.error("expiry_watch_invoice_missing", intent_id=invoice.intent_id,
                          payment_hash=invoice.payment_hash)  # fmt: skip
                continue
            report = ended_report(invoice.intent_id, self._node_name, self._region, record)
            if report is None:
                continue  # the node holds it open: asked again next round
            await engine.record_invoice(
                report, causation_id=f"expiry-{invoice.payment_hash[:16]}",
                correlation_id=invoice.intent_id,
            )  # fmt: skip
            reported += 1
        return reported
