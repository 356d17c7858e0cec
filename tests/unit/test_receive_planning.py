"""The receive planner (ADR 0220): a new receive's order is signed for the event id it is
stored under; new receives per caller are bounded (``rate_limited``, nothing written), and a
retry of an existing receive is never throttled."""

from __future__ import annotations

import json

import msgspec
import pytest

from schemas.receive_messages import CreateReceiveIntent, ReceiveDispatched
from services.engine.batch_plan import BatchPlan
from services.engine.commands import CommandEnvelope, QueuedCommand, prepare
from services.engine.receive_planning import ReceivePlanner
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.port import BadSignature
from services.signing.receive_orders import verify_receive_order
from tests.unit.test_receive_machine import ALICE, ROUTER


def _item(key: str) -> QueuedCommand:
    command = CreateReceiveIntent(idempotency_key=key, caller=ALICE, amount_msat=1, region="us")
    item = QueuedCommand(envelope=CommandEnvelope(command=command))
    prepare(item)
    return item


def test_new_receives_are_bounded_per_caller_and_retries_are_not() -> None:
    planner = ReceivePlanner(new_id=lambda: "id", signer=None, per_minute=2)
    plan = BatchPlan(policy_state=None)
    for key in ("a", "b", "c"):
        item = _item(key)
        planner.plan(plan, item, item.envelope.command, None, router=ROUTER, now_ms=0)  # type: ignore[arg-type]
    codes = [getattr(r, "error", None) and r.error.code for r in plan.replies]  # type: ignore[union-attr]
    assert codes == [None, None, "rate_limited"]
    assert len(plan.receives) == 2
    # A retry of "a" (its state known) is answered as a duplicate, however empty the bucket.
    item = _item("a")
    planner.plan(plan, item, item.envelope.command, plan.receives[item.stream_id],  # type: ignore[arg-type]
                 router=ROUTER, now_ms=0)  # fmt: skip
    assert getattr(plan.replies[-1], "duplicate", False) is True
    # A minute later the bucket has refilled.
    item = _item("c")
    planner.plan(plan, item, item.envelope.command, None, router=ROUTER, now_ms=60_000)  # type: ignore[arg-type]
    assert plan.replies[-1].ok is True


def test_a_new_receive_order_is_signed_for_its_event_and_carries_no_preimage() -> None:
    signer = Ed25519Signer.generate()
    planner = ReceivePlanner(new_id=lambda: "id", signer=signer)
    plan = BatchPlan(policy_state=None)
    item = _item("signed")
    planner.plan(plan, item, item.envelope.command, None, router=ROUTER, now_ms=0)  # type: ignore[arg-type]
    stored = next(e for e in plan.events if e.type == "ReceiveDispatched")
    payload = json.loads(stored.payload)
    assert "preimage" not in payload and payload["signature"]
    order = msgspec.convert(payload, ReceiveDispatched)
    keyring = Ed25519Keyring([signer.public_key])
    verify_receive_order(keyring, intent_id=item.stream_id, event_id=stored.event_id, order=order)
    forged = msgspec.structs.replace(order, amount_msat=order.amount_msat + 1)
    with pytest.raises(BadSignature):
        verify_receive_order(keyring, intent_id=item.stream_id, event_id=stored.event_id,
                             order=forged)  # fmt: skip
