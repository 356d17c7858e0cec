"""Signed channel orders (ADR 0234): the engine's signature covers what the executor acts on,
and a changed field, another key or an unsigned order is refused before any node call."""

from __future__ import annotations

import msgspec
import pytest

from schemas.channel_messages import ChannelOpenApproved, ChannelOpenRequested
from schemas.common import Caller
from services.engine.ids import event_id_for
from services.executor.channel_worker import awaits_approval
from services.signing.channel_orders import sign_channel_orders, verify_channel_order
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.orders import UnsignedOrder
from services.signing.port import BadSignature, SigningError

OP_ID = "chop-0000"


def _open() -> ChannelOpenRequested:
    return ChannelOpenRequested(
        op_id=OP_ID, caller=Caller(id="ops-1", kind="human"), idempotency_key="k",
        request_fingerprint="f", region="us", node="us-lnd", peer_pubkey="02" + "ab" * 32,
        local_amount_msat=1_000_000_000, push_msat=0, sat_per_vbyte=5,
        max_onchain_fee_msat=10_000_000, onchain_fee_msat=765_000, tier="auto",
    )  # fmt: skip


def test_a_signed_order_verifies_and_a_changed_one_does_not() -> None:
    signer = Ed25519Signer.generate()
    keys = Ed25519Keyring([signer.public_key])
    (signed,) = sign_channel_orders(signer, OP_ID, 1, [_open()])
    assert isinstance(signed, ChannelOpenRequested)
    event_id = event_id_for(OP_ID, 1)
    verify_channel_order(keys, op_id=OP_ID, event_id=event_id, order=signed)
    for changed in (
        msgspec.structs.replace(signed, local_amount_msat=2_000_000_000),
        msgspec.structs.replace(signed, node="eu-lnd"),
        msgspec.structs.replace(signed, peer_pubkey="03" + "ab" * 32),
    ):
        with pytest.raises(BadSignature):
            verify_channel_order(keys, op_id=OP_ID, event_id=event_id, order=changed)
    with pytest.raises(SigningError):  # the same order under another event id
        verify_channel_order(keys, op_id=OP_ID, event_id=event_id_for(OP_ID, 2), order=signed)
    with pytest.raises(UnsignedOrder):
        verify_channel_order(keys, op_id=OP_ID, event_id=event_id, order=_open())


def test_a_request_awaiting_approval_is_no_order_and_its_approval_is() -> None:
    """ADR 0236: tier approval goes unsigned (no executor can act on it); the approval that
    repeats it is signed for its own event id."""
    signer = Ed25519Signer.generate()
    keys = Ed25519Keyring([signer.public_key])
    waiting = msgspec.structs.replace(_open(), tier="approval")
    (request,) = sign_channel_orders(signer, OP_ID, 1, [waiting])
    assert isinstance(request, ChannelOpenRequested) and request.signature is None
    assert awaits_approval(request)
    approval = ChannelOpenApproved(**msgspec.structs.asdict(waiting), approved_by="ops-2")
    (signed,) = sign_channel_orders(signer, OP_ID, 2, [approval])
    assert isinstance(signed, ChannelOpenApproved) and not awaits_approval(signed)
    verify_channel_order(keys, op_id=OP_ID, event_id=event_id_for(OP_ID, 2), order=signed)
