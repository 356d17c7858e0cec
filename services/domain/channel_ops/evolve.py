"""``evolve``: apply one event to a channel operation. Pure, total over ``TRANSITIONS``."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas import channel_messages as cm
from schemas.events import EventData
from services.domain.channel_ops.state import TRANSITIONS, ChannelOp


class TransitionRefused(AssertionError):
    """An event the transition table does not allow: decide emitted it, or the log is corrupt."""


def evolve(state: ChannelOp | None, event: EventData) -> ChannelOp:
    target = TRANSITIONS.get((state.status if state else None, type(event).__name__))
    if target is None:
        raise TransitionRefused(
            f"{type(event).__name__} not allowed in state {state.status if state else 'none'}"
        )
    match event:
        case cm.ChannelOpenApproved(approved_by=approver):
            assert state is not None and state.tier == "approval" and state.approved_by is None
            return msgspec.structs.replace(
                state, status=target, version=state.version + 1, approved_by=approver,
                budget_stream=event.budget_stream,
            )  # fmt: skip
        case cm.ChannelOpenRequested():
            assert state is None
            return ChannelOp(
                op_id=event.op_id, kind="open", status=target, version=1, caller=event.caller,
                idempotency_key=event.idempotency_key,
                request_fingerprint=event.request_fingerprint, region=event.region,
                node=event.node, tier=event.tier, peer_pubkey=event.peer_pubkey,
                local_amount_msat=event.local_amount_msat,
                onchain_fee_msat=event.onchain_fee_msat, budget_stream=event.budget_stream,
                open_request=event if event.tier == "approval" else None,
            )  # fmt: skip
        case cm.ChannelCloseRequested():
            assert state is None
            return ChannelOp(
                op_id=event.op_id, kind="close", status=target, version=1, caller=event.caller,
                idempotency_key=event.idempotency_key,
                request_fingerprint=event.request_fingerprint, region=event.region,
                node=event.node, tier=event.tier, channel_point=event.channel_point,
                onchain_fee_msat=event.onchain_fee_msat, budget_stream=event.budget_stream,
            )  # fmt: skip
        case cm.ChannelOpRejected():
            assert state is None
            return ChannelOp(
                op_id=event.op_id, kind=event.kind, status=target, version=1,
                caller=event.caller, idempotency_key=event.idempotency_key,
                request_fingerprint=event.request_fingerprint, rejection=event.reason,
            )  # fmt: skip
    assert state is not None and event.op_id == state.op_id  # type: ignore[attr-defined]
    changes: dict[str, object] = {}
    match event:
        case cm.ChannelOpening(funding_txid=txid, channel_point=point):
            assert state.kind == "open", "an opening belongs to an open"
            changes = {"txid": txid, "channel_point": point}
        case cm.ChannelClosing(closing_txid=txid):
            assert state.kind == "close", "a closing belongs to a close"
            changes = {"txid": txid}
        case cm.ChannelOpened(channel_id=channel_id):
            assert state.kind == "open"
            changes = {"channel_id": channel_id}
        case cm.ChannelClosed():
            assert state.kind == "close"
        case cm.ChannelOpDeclined():
            assert state.tier == "approval" and state.approved_by is None
            changes = {"rejection": "declined"}
    return msgspec.structs.replace(state, status=target, version=state.version + 1, **changes)


def replay(events: Iterable[EventData]) -> ChannelOp | None:
    state: ChannelOp | None = None
    for event in events:
        state = evolve(state, event)
    return state
