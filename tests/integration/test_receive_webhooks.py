"""Subscribers get receive events as they get settlement events (ADR 0220): an endpoint
registered for ``InvoicePaid`` and ``InvoiceExpired`` gets its own receives' events, signed,
once each; another caller's receive never reaches it."""

from __future__ import annotations

import hashlib

from nats.aio.client import Client

from services.bootstrap import Engine
from services.webhooks.dispatcher import WebhookDispatcher
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_receives import INVOICE, RECEIVE, receive, report
from tests.integration.test_webhooks import Receiver, add_endpoint, hooks, receiver

__all__ = ["hooks", "receiver"]  # the fixtures, used by name


async def _paid_receive(nc: Client, caller: str, key: str, label: str) -> str:
    body = receive(key) | {"caller": {"id": caller, "kind": "service"}}
    created = await request(nc, RECEIVE.format(caller=caller), body)
    intent_id = str(created["intent_id"])
    preimage = hashlib.sha256(label.encode()).hexdigest()
    payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    for state in ("issued", "paid"):
        reply = await request(
            nc, INVOICE.format(node="us-lnd"),
            report(intent_id, state, payment_hash=payment_hash)
            | ({"preimage": preimage} if state == "paid" else {}),
        )  # fmt: skip
        assert reply["ok"], reply
    return intent_id


async def test_a_callers_endpoint_gets_its_receive_events(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    await add_endpoint(nc, "alice", receiver, event_types=["InvoicePaid", "InvoiceExpired"])
    mine = await _paid_receive(nc, "alice", "hook-r1", "hook-p1")
    await _paid_receive(nc, "bob", "hook-r2", "hook-p2")

    def delivered() -> bool:
        return any(p["type"] == "InvoicePaid" for p in receiver.accepted.values())

    await wait_for(delivered, what="the InvoicePaid webhook", timeout_s=30)
    paid = [p for p in receiver.accepted.values() if p["type"] == "InvoicePaid"]
    assert len(paid) == 1 and paid[0]["data"]["intent_id"] == mine
    assert paid[0]["data"]["event"]["amount_received_msat"] == 70_000
    assert receiver.intents() == {mine}
