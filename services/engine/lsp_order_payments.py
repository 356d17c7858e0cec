"""The payment of an LSP order's invoice, submitted by the engine on the order's behalf (ADR
0252): an ordinary ``SubmitPaymentIntent`` of the order's caller (the identity its order's
credential had), its corridor, the key ``lsp-order:<order id>``, and the engine as actor.

It runs whenever the order's executor reports on an order that is paying (the executor keeps
reporting ``get_order`` while it follows the order), and before that report is decided. The
submit is idempotent by key (the same request every time), so a restart of the executor or of
the engine resubmits the same intent and finds it: at most one payment per order. Once the
intent is final, the engine records ``paid`` or ``unpaid`` itself; a report of COMPLETED that
arrives before our intent's success waits (``payment_pending``), so the log always links the
order to the intent that paid it before the order completes.
"""

from __future__ import annotations

from typing import Final

import structlog

from schemas import errors
from schemas import lsp_messages as lm
from schemas.commands import SubmitPaymentIntent
from schemas.replies import CommandAccepted, CommandRejected, PaymentIntentStatus
from services.domain.intent import TERMINAL_STATUSES
from services.domain.intent.status import IntentStatus
from services.domain.lsp_orders import LspOrder, LspOrderStatus, replay
from services.domain.principal import Principal
from services.engine.commands import CommandEnvelope
from services.engine.event_codec import to_domain
from services.engine.ids import intent_id_for
from services.engine.processor import CommandProcessor

log = structlog.get_logger("corridor.lsp")

PAYMENT_PENDING: Final = errors.CorridorError(
    "the LSP completed the order before our payment's success is recorded; report again",
    field="order_state",
    code="payment_pending",
)


async def order_state(processor: CommandProcessor, lsp_order_id: str) -> LspOrder | None:
    return replay(to_domain(e) for e in await processor.store.read_stream(lsp_order_id))


def payment_of(order: LspOrder) -> SubmitPaymentIntent:
    """The intent that pays ``order``'s invoice: the same request every time it is built."""
    assert order.payment_key is not None and order.invoice is not None
    assert order.order_total_msat is not None
    return SubmitPaymentIntent(
        idempotency_key=order.payment_key, caller=order.caller, corridor=order.corridor,
        amount_msat=order.order_total_msat, max_fee_msat=order.max_routing_fee_msat,
        payment_request=order.invoice, metadata={"purpose": "lsp-order"},
    )  # fmt: skip


async def drive_payment(
    processor: CommandProcessor, order: LspOrder, *, record_unpaid: bool = True
) -> LspOrder:
    """For a paying order: submit (or find) its intent, and record its end once it has one.
    ``record_unpaid`` false: an intent that ended unpaid is left for the report at hand (the
    LSP failed the order: ``expired_unpaid`` says more than ``payment_failed``)."""
    if order.status is not LspOrderStatus.PAYING:
        return order
    order_id = order.lsp_order_id
    submit = payment_of(order)
    reply = await processor.execute(
        CommandEnvelope(command=submit, correlation_id=order_id, causation_id=order_id)
    )
    intent_id = intent_id_for(order.caller.id, submit.idempotency_key)
    if isinstance(reply, CommandRejected):
        if reply.error.code == errors.Unavailable.code or not record_unpaid:
            return order  # asked again at the executor's next report, or the report decides
        # Refused before it became an intent (limits, schema): nothing was paid, nor will it
        # be under this key; the order ends unpaid.
        log.warning("lsp_order_payment_refused", lsp_order_id=order_id, code=reply.error.code)
        report = lm.RecordLspOrderReport(lsp_order_id=order_id, stage="unpaid")
    else:
        status = await processor.status(intent_id)
        state = status.state if isinstance(status, PaymentIntentStatus) else None
        # Settled is final; succeeded is the node's proof of payment before settlement.
        if state == IntentStatus.SETTLED or state == IntentStatus.SUCCEEDED:
            report = lm.RecordLspOrderReport(
                lsp_order_id=order_id, stage="paid", payment_intent_id=intent_id
            )
        elif state in TERMINAL_STATUSES and record_unpaid:
            report = lm.RecordLspOrderReport(lsp_order_id=order_id, stage="unpaid")
        else:
            return order  # on its way
    recorded = await processor.execute(CommandEnvelope(command=report, correlation_id=order_id))
    log.info("lsp_order_payment", lsp_order_id=order_id, stage=report.stage,
             ok=isinstance(recorded, CommandAccepted))  # fmt: skip
    return await order_state(processor, order_id) or order


async def before_report(
    processor: CommandProcessor, report: lm.RecordLspOrderReport, reporter: Principal | None
) -> errors.CorridorError | None:
    """Drives the order's payment before its executor's report is decided; an error if the
    report must wait (COMPLETED before our intent's success is recorded). Another node's
    executor drives nothing (the planner answers it ``unknown_order``)."""
    order = await order_state(processor, report.lsp_order_id)
    if order is None or order.status is not LspOrderStatus.PAYING:
        return None
    if reporter is not None and (reporter.role != "executor" or reporter.id != order.node):
        return None
    order = await drive_payment(processor, order, record_unpaid=report.order_state != "FAILED")
    if order.status is LspOrderStatus.PAYING and report.order_state == "COMPLETED":
        return PAYMENT_PENDING
    return None
