"""One delivery of one receive work order (ADR 0220, 0221), without JetStream.

1. The preimage is derived from the intent id and the executor's secret (``receive_preimage``):
   every delivery asks the node for the same payment hash, so the node's record of that hash
   is the idempotency key. The record is asked first; only without one is the invoice created,
   with that preimage. A creation that fails is looked up again before anything is reported:
   the node may have created it before the error reached us.
2. ``InvoiceIssued`` is reported from the node's record (the engine records it once); if the
   node already holds it paid or expired (a redelivery after a crash), that is reported too.
   Then the order is done: the settlement follower credits the payment, and the expiry watch
   (``expiry_watch.py``) ends an invoice the node holds expired. An order is never held open
   until its invoice's expiry: it would take a JetStream ack slot of the node for hours.
"""

from __future__ import annotations

from typing import Final

import structlog

from schemas.receive_messages import RecordInvoiceState
from services.executor.errors import NodeUnreachable, OutcomeRefused
from services.executor.invoice_reports import NodeInvoices, ended_report
from services.executor.payer import Disposition
from services.executor.receive_order import ReceiveOrder
from services.executor.receive_preimage import payment_hash_of, preimage_for
from services.lightning.port import FailureReason, InvoiceStatus, NodeError

log = structlog.get_logger("corridor.executor")

# Refusals that say the report can never be recorded (the receive ended otherwise): the order
# is done; anything else is retried.
FINAL_REFUSALS: Final = frozenset({"invalid_transition", "not_found", "wrong_node"})


class Receiver(NodeInvoices):
    async def process(self, order: ReceiveOrder) -> Disposition:
        preimage = preimage_for(self._secret, order.intent_id)
        payment_hash = payment_hash_of(preimage)
        try:
            record: InvoiceStatus | str | None = await self._lookup(payment_hash)
            if record is None:
                record = await self._create(order, preimage, payment_hash)
        except NodeUnreachable as exc:
            log.warning("receive_node_unreachable", detail=str(exc)[:200])
            return Disposition.RETRY
        if isinstance(record, str):  # the node refused the invoice for good
            return await self._report(order, self._failed(order, record)) or _DONE
        refused = await self._report(order, self._issued(order, record))
        if refused is not None:  # the engine will never take this receive's reports
            return refused
        ended = ended_report(order.intent_id, self._node_name, self._region, record)
        if ended is not None:
            return await self._report(order, ended) or _DONE
        return _DONE  # open: the follower or the expiry watch takes it from here

    async def _create(
        self, order: ReceiveOrder, preimage: str, payment_hash: str
    ) -> InvoiceStatus | str:
        d = order.dispatched
        try:
            await self._node.create_invoice(d.amount_msat, d.memo, d.expiry_s, preimage=preimage)
        except NodeError as exc:
            # Created before the error reached us? The node's record says.
            again = await self._lookup(payment_hash)
            if again is not None:
                return again
            if exc.reason in (FailureReason.NODE_UNAVAILABLE, FailureReason.TIMEOUT):
                raise NodeUnreachable(str(exc)) from None
            log.warning("receive_invoice_refused", reason=str(exc.reason))
            return str(exc.reason)
        record = await self._lookup(payment_hash)
        if record is None:
            raise NodeUnreachable("the node created the invoice but has no record of it")
        return record

    async def _lookup(self, payment_hash: str) -> InvoiceStatus | None:
        try:
            return await self._node.lookup_invoice(payment_hash)
        except NodeError as exc:
            raise NodeUnreachable(str(exc)) from None

    async def _report(self, order: ReceiveOrder, report: RecordInvoiceState) -> Disposition | None:
        """``None`` once committed; a decision when the engine refused it."""
        try:
            await self._engine().record_invoice(
                report, causation_id=order.event_id, correlation_id=order.correlation_id
            )
        except OutcomeRefused as exc:
            if exc.error_code in FINAL_REFUSALS:
                log.error("receive_report_refused", code=exc.error_code, detail=str(exc)[:300])
                return _DONE
            raise
        return None

    def _issued(self, order: ReceiveOrder, record: InvoiceStatus) -> RecordInvoiceState:
        return RecordInvoiceState(
            intent_id=order.intent_id, node=self._node_name, region=self._region,
            state="issued", payment_hash=record.payment_hash,
            payment_request=record.payment_request, expires_at_s=record.expires_at_s,
        )  # fmt: skip

    def _failed(self, order: ReceiveOrder, reason: str) -> RecordInvoiceState:
        return RecordInvoiceState(
            intent_id=order.intent_id, node=self._node_name, region=self._region,
            state="failed", detail=reason,
        )  # fmt: skip


_DONE: Final = Disposition.DONE
