"""Signed rebalance orders (ADR 0244): the engine's signature covers what the executor pays
(node, destination, amount, max fee, timeout), under a context of its own; the executor turns
only a verified order into the keysend work order, attempt 1 of the rebalance's id, so its
preimage is derived from the rebalance id (ADR 0202)."""

from __future__ import annotations

import msgspec
import pytest

from schemas.events import IntentDispatched
from schemas.rebalance_messages import RebalanceDispatched
from schemas.records import EventMetadata, RecordedEvent
from services.engine.ids import event_id_for
from services.executor.errors import BadWorkOrder
from services.executor.keysend import keysend_preimage
from services.executor.rebalance_worker import is_rebalance_order, rebalance_work_order
from services.executor.target import pay_target
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.orders import UnsignedOrder, sign_orders
from services.signing.port import BadSignature, SigningError
from services.signing.rebalance_orders import sign_rebalance_orders, verify_rebalance_order

RBL_ID = "rbl-0000"
PUBKEY = "02" + "ab" * 32
SECRET = bytes(range(32))


def _order() -> RebalanceDispatched:
    return RebalanceDispatched(region="eu", node="eu-lnd", destination=PUBKEY,
                               amount_msat=5_000_000, max_fee_msat=20_000,
                               pay_timeout_s=60)  # fmt: skip


def _raw(order: RebalanceDispatched, *, stream_id: str = RBL_ID, version: int = 2) -> bytes:
    record = RecordedEvent(
        type="RebalanceDispatched", version=1, event_id=event_id_for(stream_id, version),
        stream_id=stream_id, stream_version=version, position=7, recorded_at_ms=1,
        metadata=EventMetadata(correlation_id="c", causation_id="d", actor="caller:p"),
        data=msgspec.to_builtins(order), hash="00", prev_hash="00",
    )  # fmt: skip
    return msgspec.json.encode(record)


def test_a_signed_order_verifies_and_a_changed_one_does_not() -> None:
    signer = Ed25519Signer.generate()
    keys = Ed25519Keyring([signer.public_key])
    (signed,) = sign_rebalance_orders(signer, RBL_ID, 2, [_order()])
    assert isinstance(signed, RebalanceDispatched)
    event_id = event_id_for(RBL_ID, 2)
    verify_rebalance_order(keys, rebalance_id=RBL_ID, event_id=event_id, order=signed)
    for changed in (
        msgspec.structs.replace(signed, amount_msat=6_000_000),
        msgspec.structs.replace(signed, max_fee_msat=30_000),
        msgspec.structs.replace(signed, node="eu-lnd-2"),
        msgspec.structs.replace(signed, destination="03" + "ab" * 32),
    ):
        with pytest.raises(BadSignature):
            verify_rebalance_order(keys, rebalance_id=RBL_ID, event_id=event_id, order=changed)
    with pytest.raises(SigningError):  # the same order under another event id
        verify_rebalance_order(
            keys, rebalance_id=RBL_ID, event_id=event_id_for(RBL_ID, 3), order=signed
        )
    with pytest.raises(UnsignedOrder):
        verify_rebalance_order(keys, rebalance_id=RBL_ID, event_id=event_id, order=_order())


def test_the_executor_pays_a_verified_order_as_a_keysend_with_the_rebalance_s_preimage() -> None:
    signer = Ed25519Signer.generate()
    keys = Ed25519Keyring([signer.public_key])
    (signed,) = sign_rebalance_orders(signer, RBL_ID, 2, [_order()])
    assert isinstance(signed, RebalanceDispatched)
    raw = _raw(signed)
    assert is_rebalance_order(raw) and not is_rebalance_order(b"{}")
    order = rebalance_work_order(raw, keys, bytes_max=65_536)
    assert (order.intent_id, order.attempt, order.region, order.node) == (RBL_ID, 1, "eu", "eu-lnd")
    target = pay_target(order, SECRET)
    assert target.payment_hash == keysend_preimage(SECRET, RBL_ID, 1)[1]
    assert target.request.destination == PUBKEY and target.request.max_fee_msat == 20_000
    with pytest.raises(BadSignature):  # tampered on the way
        rebalance_work_order(_raw(msgspec.structs.replace(signed, amount_msat=1)), keys,
                             bytes_max=65_536)  # fmt: skip
    with pytest.raises(BadWorkOrder):  # a rebalance order on a payment's stream
        rebalance_work_order(_raw(signed, stream_id="0b3e6a52"), keys, bytes_max=65_536)


def test_a_payment_order_s_signature_never_passes_for_a_rebalance_order() -> None:
    signer = Ed25519Signer.generate()
    keys = Ed25519Keyring([signer.public_key])
    payment = IntentDispatched(attempt=1, region="eu", node="eu-lnd", amount_msat=5_000_000,
                               max_fee_msat=20_000, destination=PUBKEY,
                               pay_timeout_s=60)  # fmt: skip
    (paid,) = sign_orders(signer, RBL_ID, 2, [payment])
    assert isinstance(paid, IntentDispatched) and paid.signature is not None
    borrowed = msgspec.structs.replace(_order(), key_id=paid.key_id, signature=paid.signature)
    with pytest.raises(BadSignature):
        rebalance_work_order(_raw(borrowed), keys, bytes_max=65_536)
