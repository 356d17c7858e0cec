"""``evolve``: the state after one event. Pure; refuses anything the machine does not list."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas.events import EventData
from schemas.receive_messages import (
    InvoiceExpired,
    InvoiceIssued,
    InvoicePaid,
    ReceiveDispatched,
    ReceiveFailed,
    ReceiveRequested,
)
from services.domain.receive.state import ReceiveIntent
from services.domain.receive.status import ReceiveStatus
from services.domain.receive.transitions import TRANSITIONS


class ReceiveTransitionError(ValueError):
    pass


def evolve(state: ReceiveIntent | None, event: EventData) -> ReceiveIntent:
    before = state.status if state is not None else None
    after = TRANSITIONS.get((before, type(event).__name__))
    if after is None:
        raise ReceiveTransitionError(f"{type(event).__name__} is not allowed in status {before}")
    if isinstance(event, ReceiveRequested):
        return ReceiveIntent(
            intent_id=event.intent_id, caller=event.caller, idempotency_key=event.idempotency_key,
            request_fingerprint=event.request_fingerprint, amount_msat=event.amount_msat,
            memo=event.memo, expiry_s=event.expiry_s, region=event.region,
            corridor=event.corridor, status=ReceiveStatus.REQUESTED, version=1,
            received_at_ms=event.received_at_ms,
        )  # fmt: skip
    assert state is not None
    changes: dict[str, object] = {"status": after, "version": state.version + 1}
    match event:
        case ReceiveDispatched():
            changes |= {"node": event.node, "node_region": event.region}
        case InvoiceIssued():
            changes |= {
                "payment_hash": event.payment_hash,
                "payment_request": event.payment_request,
                "expires_at_s": event.expires_at_s,
            }
        case InvoicePaid():
            changes |= {
                "amount_received_msat": event.amount_received_msat,
                "preimage": event.preimage,
                "pay_index": event.pay_index,
                "paid_late": event.late,
            }
        case InvoiceExpired():
            pass
        case ReceiveFailed():
            changes |= {"reason": event.reason}
    return msgspec.structs.replace(state, **changes)


def fold(events: Iterable[EventData]) -> ReceiveIntent | None:
    state: ReceiveIntent | None = None
    for event in events:
        state = evolve(state, event)
    return state
