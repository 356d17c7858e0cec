"""One delivery of one receive work order (ADR 0220, 0221), without JetStream.

1. The preimage is derived from the intent id and the executor's secret (``receive_preimage``):
   every delivery asks the node for the same payment hash, so the node's record of that hash
   is the idempotency key. The record is asked first; only without one is the invoice created,
   with that preimage. A creation that fails is looked up again before anything is reported:
   the node may have created it before the error reached us.
2. ``InvoiceIssued`` is reported from the node's record (the engine records it once).
3. The order then waits, handed back with a delay, until the invoice's expiry: the dispatch
   stream is the durable timer. On each later delivery the node's record decides: paid is
   reported paid (the settlement follower usually did so first; the engine records it once);
   expired or cancelled is reported expired; still open, the order waits again. Expiry is
   never decided from our clock alone: a payment racing the expiry is the node's to settle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from schemas.receive_messages import RecordInvoiceState
from services.executor.engine_client import EngineClient
from services.executor.errors import NodeUnreachable, OutcomeRefused
from services.executor.payer import Disposition
from services.executor.receive_order import ReceiveOrder
from services.executor.receive_preimage import payment_hash_of, preimage_for
from services.lightning.port import FailureReason, InvoiceStatus, NodeError, NodePort

log = structlog.get_logger("corridor.executor")

# After an invoice's expiry the node is asked again after this long, then ever less often: a
# node marks an invoice expired within seconds of its expiry (lnd's expiry watcher, CLN's
# autoclean of expired invoices' state), and an HTLC it accepted just before must settle first.
EXPIRY_CHECK_S_FIRST: Final = 2.0
EXPIRY_CHECK_S_MAX: Final = 300.0
# Refusals that say the report can never be recorded (the receive ended otherwise): the order
# is done; anything else is retried.
FINAL_REFUSALS: Final = frozenset({"invalid_transition", "not_found", "wrong_node"})


@dataclass(frozen=True, slots=True)
class ReceiveDecision:
    disposition: Disposition
    delay_s: float | None = None  # for RETRY: when to look again (None: the usual back-off)


class Receiver:
    def __init__(
        self,
        node: NodePort,
        *,
        secret: bytes,
        region: str,
        node_name: str,
        engine: Callable[[], EngineClient],
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._secret = secret
        self._region = region
        self._node_name = node_name
        self._engine = engine
        self._now_s = now_s

    async def process(self, order: ReceiveOrder, *, delivery: int) -> ReceiveDecision:
        preimage = preimage_for(self._secret, order.intent_id)
        payment_hash = payment_hash_of(preimage)
        try:
            record: InvoiceStatus | str | None = await self._lookup(payment_hash)
            if record is None:
                record = await self._create(order, preimage, payment_hash)
        except NodeUnreachable as exc:
            log.warning("receive_node_unreachable", detail=str(exc)[:200])
            return ReceiveDecision(Disposition.RETRY)
        if isinstance(record, str):  # the node refused the invoice for good
            return await self._report(order, self._failed(order, record)) or _DONE
        refused = await self._report(order, self._issued(order, record))
        if refused is not None:  # the engine will never take this receive's reports
            return refused
        match record.state:
            case "paid":
                return await self._report(order, self._paid(order, record)) or _DONE
            case "expired" | "cancelled":
                return await self._report(order, self._expired(order, record)) or _DONE
        # Open (or a hold invoice's HTLCs accepted): look again after its expiry.
        wait_s = max(record.expires_at_s - self._now_s(), 0.0)
        later = min(EXPIRY_CHECK_S_FIRST * 2 ** max(delivery - 1, 0), EXPIRY_CHECK_S_MAX)
        return ReceiveDecision(Disposition.RETRY, delay_s=wait_s + later)

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

    async def _report(
        self, order: ReceiveOrder, report: RecordInvoiceState
    ) -> ReceiveDecision | None:
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

    def _paid(self, order: ReceiveOrder, record: InvoiceStatus) -> RecordInvoiceState:
        return paid_report(order.intent_id, self._node_name, self._region, record)

    def _expired(self, order: ReceiveOrder, record: InvoiceStatus) -> RecordInvoiceState:
        return RecordInvoiceState(
            intent_id=order.intent_id, node=self._node_name, region=self._region,
            state="expired", payment_hash=record.payment_hash,
        )  # fmt: skip

    def _failed(self, order: ReceiveOrder, reason: str) -> RecordInvoiceState:
        return RecordInvoiceState(
            intent_id=order.intent_id, node=self._node_name, region=self._region,
            state="failed", detail=reason,
        )  # fmt: skip


def paid_report(
    intent_id: str, node_name: str, region: str, record: InvoiceStatus
) -> RecordInvoiceState:
    return RecordInvoiceState(
        intent_id=intent_id, node=node_name, region=region, state="paid",
        payment_hash=record.payment_hash, payment_request=record.payment_request,
        expires_at_s=record.expires_at_s, preimage=record.preimage,
        amount_received_msat=record.amount_received_msat, pay_index=record.pay_index or None,
        paid_at_s=record.paid_at_s,
    )  # fmt: skip


_DONE: Final = ReceiveDecision(Disposition.DONE)
