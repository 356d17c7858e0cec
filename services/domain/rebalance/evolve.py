"""``evolve``: the state after one event. Pure; refuses anything ``TRANSITIONS`` does not list."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas.events import EventData
from schemas.rebalance_messages import (
    RebalanceApproved,
    RebalanceDispatched,
    RebalanceFailed,
    RebalanceInFlight,
    RebalanceProposed,
    RebalanceRejected,
    RebalanceRequested,
    RebalanceSucceeded,
)
from services.domain.rebalance.state import TRANSITIONS, Rebalance


class RebalanceTransitionError(AssertionError):
    """An event the table does not allow: decide emitted it, or the log is corrupt."""


def evolve(state: Rebalance | None, event: EventData) -> Rebalance:
    before = state.status if state is not None else None
    after = TRANSITIONS.get((before, type(event).__name__))
    if after is None:
        raise RebalanceTransitionError(f"{type(event).__name__} not allowed in status {before}")
    if isinstance(event, RebalanceProposed | RebalanceRequested):
        requested = isinstance(event, RebalanceRequested)
        created = Rebalance(
            rebalance_id=event.rebalance_id, caller=event.caller,
            idempotency_key=event.idempotency_key, request_fingerprint=event.request_fingerprint,
            mode=event.mode, source_region=event.source_region, source_node=event.source_node,
            target_region=event.target_region, target_node=event.target_node,
            destination=event.destination, amount_msat=event.amount_msat,
            max_fee_msat=event.max_fee_msat, status=after, version=1,
            tier=event.tier if isinstance(event, RebalanceRequested) else None,
            budget_stream=event.budget_stream if isinstance(event, RebalanceRequested) else None,
            reason=None if requested else "dry_run",
        )  # fmt: skip
        if isinstance(event, RebalanceRequested):
            return msgspec.structs.replace(
                created, outgoing_channel_id=event.outgoing_channel_id,
                last_hop_pubkey=event.last_hop_pubkey, payment_request=event.payment_request,
                invoice_payment_hash=event.payment_hash,
            )  # fmt: skip
        return created
    assert state is not None
    changes: dict[str, object] = {}
    match event:
        case RebalanceRejected():
            changes = {"reason": event.reason}
        case RebalanceApproved():
            assert state.tier == "approval"
            changes = {"budget_stream": event.budget_stream}
        case RebalanceDispatched():
            assert event.region == state.source_region and event.node == state.source_node
            changes = {"node": event.node, "node_region": event.region}
        case RebalanceInFlight():
            changes = {"payment_hash": event.payment_hash}
        case RebalanceSucceeded():
            changes = {"payment_hash": event.payment_hash, "fee_msat": event.fee_msat}
        case RebalanceFailed():
            changes = {"reason": event.reason, "payment_hash": event.payment_hash}
    return msgspec.structs.replace(state, status=after, version=state.version + 1, **changes)


def fold(events: Iterable[EventData]) -> Rebalance | None:
    state: Rebalance | None = None
    for event in events:
        state = evolve(state, event)
    return state
