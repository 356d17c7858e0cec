"""``evolve``: apply one event to a JIT channel sale. Pure, total over ``TRANSITIONS``."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from schemas import jit_messages as jm
from schemas.events import EventData
from services.domain.jit_channels.state import TRANSITIONS, JitChannel


class TransitionRefused(AssertionError):
    """An event the transition table does not allow: decide emitted it, or the log is corrupt."""


def evolve(state: JitChannel | None, event: EventData) -> JitChannel:
    target = TRANSITIONS.get((state.status if state else None, type(event).__name__))
    if target is None:
        raise TransitionRefused(
            f"{type(event).__name__} not allowed in state {state.status if state else 'none'}"
        )
    match event:
        case jm.JitChannelSold():
            assert state is None
            return JitChannel(
                sale_id=event.sale_id, status=target, version=1, region=event.region,
                node=event.node, client_pubkey=event.client_pubkey, jit_scid=event.jit_scid,
                params=event.params, payment_size_msat=event.payment_size_msat,
            )  # fmt: skip
        case jm.JitSaleRefused():
            assert state is None
            return JitChannel(
                sale_id=event.sale_id, status=target, version=1, region=event.region,
                node=event.node, client_pubkey=event.client_pubkey, refusal=event.reason,
            )  # fmt: skip
    assert state is not None and event.sale_id == state.sale_id  # type: ignore[attr-defined]
    changes: dict[str, object] = {}
    match event:
        case jm.JitHtlcIntercepted():
            # The fee never exceeds the HTLC, and fee + forward is the HTLC exactly.
            assert event.opening_fee_msat + event.forward_msat == event.amount_msat
            assert event.channel_size_msat >= event.forward_msat
            changes = {
                "htlc_key": event.htlc_key, "payment_hash": event.payment_hash,
                "amount_msat": event.amount_msat, "opening_fee_msat": event.opening_fee_msat,
                "forward_msat": event.forward_msat, "channel_size_msat": event.channel_size_msat,
            }  # fmt: skip
        case jm.JitChannelOpened():
            changes = {"channel_point": event.channel_point, "alias_scid": event.alias_scid}
        case jm.JitPaymentForwarded():
            assert event.forward_msat == state.forward_msat
            assert event.opening_fee_msat == state.opening_fee_msat
        case jm.JitFailed():
            changes = {"failure": event.failure}
    return msgspec.structs.replace(state, status=target, version=state.version + 1, **changes)


def replay(events: Iterable[EventData]) -> JitChannel | None:
    state: JitChannel | None = None
    for event in events:
        state = evolve(state, event)
    return state
