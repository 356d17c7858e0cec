"""``evolve``: apply one event to an LSP order. Pure, total over ``TRANSITIONS``."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas import lsp_messages as lm
from schemas.events import EventData
from services.domain.lsp_orders.state import TRANSITIONS, LspOrder


class TransitionRefused(AssertionError):
    """An event the transition table does not allow: decide emitted it, or the log is corrupt."""


def evolve(state: LspOrder | None, event: EventData) -> LspOrder:
    target = TRANSITIONS.get((state.status if state else None, type(event).__name__))
    if target is None:
        raise TransitionRefused(
            f"{type(event).__name__} not allowed in state {state.status if state else 'none'}"
        )
    match event:
        case lm.LspOrderRequested():
            assert state is None
            return LspOrder(
                lsp_order_id=event.lsp_order_id, status=target, version=1, caller=event.caller,
                idempotency_key=event.idempotency_key,
                request_fingerprint=event.request_fingerprint, region=event.region,
                node=event.node, lsp_pubkey=event.lsp_pubkey,
                lsp_balance_msat=event.lsp_balance_msat,
                client_balance_msat=event.client_balance_msat, max_fee_msat=event.max_fee_msat,
                max_routing_fee_msat=event.max_routing_fee_msat,
                answer_deadline_ms=event.answer_deadline_ms, corridor=event.corridor,
            )  # fmt: skip
        case lm.LspOrderRejected():
            assert state is None
            return LspOrder(
                lsp_order_id=event.lsp_order_id, status=target, version=1, caller=event.caller,
                idempotency_key=event.idempotency_key,
                request_fingerprint=event.request_fingerprint, outcome=event.reason,
            )  # fmt: skip
    assert state is not None and event.lsp_order_id == state.lsp_order_id  # type: ignore[attr-defined]
    changes: dict[str, object] = {}
    match event:
        case lm.LspOrderCreated():
            assert state.remote_order_id is None, "an order is created once"
            changes = {
                "remote_order_id": event.remote_order_id, "invoice": event.invoice,
                "fee_total_msat": event.fee_total_msat, "order_total_msat": event.order_total_msat,
                "expires_at_s": event.expires_at_s,
            }  # fmt: skip
        case lm.LspOrderPaymentRequested():
            assert state.remote_order_id is not None and event.invoice == state.invoice
            changes = {"payment_key": event.payment_key}
        case lm.LspOrderAbandoned(reason=reason) | lm.LspOrderFailed(reason=reason):
            changes = {"outcome": reason}
        case lm.LspOrderRefused(code=code):
            changes = {"outcome": str(code)}
        case lm.LspOrderPaid(payment_intent_id=intent_id):
            changes = {"payment_intent_id": intent_id}
        case lm.LspOrderCompleted(funding_outpoint=outpoint):
            assert state.payment_key is not None, "completed without a payment"
            changes = {"funding_outpoint": outpoint}
    return msgspec.structs.replace(state, status=target, version=state.version + 1, **changes)


def replay(events: Iterable[EventData]) -> LspOrder | None:
    state: LspOrder | None = None
    for event in events:
        state = evolve(state, event)
    return state
