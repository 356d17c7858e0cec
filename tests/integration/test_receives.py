"""Receive intents through the engine over real NATS and PostgreSQL (ADR 0220): the caller's
command, the signed work order on the node's dispatch subject, the executor's reports, the
reads, and the follower's cursor. The node side is covered in test_receive_e2e.py."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
from nats.aio.client import Client

from schemas.receive_messages import ReceiveDispatched
from schemas.records import RecordedEvent
from services.bootstrap import Engine
from services.bus import subjects
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.signing.receive_orders import verify_receive_order
from tests.conftest import wait_for
from tests.integration.test_api import request

RECEIVE = "corridor.api.v1.intents.receive.{caller}"
INVOICE = "corridor.api.v1.intents.invoice.{node}"
PREIMAGE = hashlib.sha256(b"receive-preimage").hexdigest()
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()


def receive(key: str = "r-1", amount_msat: int = 70_000, **extra: Any) -> dict[str, Any]:
    return {
        "type": "CreateReceiveIntent", "version": 1, "idempotency_key": key,
        "caller": {"id": "alice", "kind": "service"}, "amount_msat": amount_msat,
        "memo": "order 42", "expiry_s": 600, **({"region": "us"} | extra),
    }  # fmt: skip


def report(intent_id: str, state: str, **extra: Any) -> dict[str, Any]:
    body = {
        "type": "RecordInvoiceState", "version": 1, "intent_id": intent_id, "node": "us-lnd",
        "region": "us", "state": state, "payment_hash": PAYMENT_HASH,
        "payment_request": "lnbcrt700n1receivetest", "expires_at_s": 2_000_000_000,
    }  # fmt: skip
    if state == "paid":
        body |= {"preimage": PREIMAGE, "amount_received_msat": 70_000, "pay_index": 5}
    return body | extra


async def test_a_receive_dispatches_a_signed_order_to_a_node_of_its_region(
    engine: Engine, nc: Client, tmp_path: Any
) -> None:
    reply = await request(nc, RECEIVE.format(caller="alice"), receive())
    assert reply["ok"] is True and reply["state"] == "dispatched", reply
    intent_id = reply["intent_id"]
    assert intent_id.startswith("rcv-")
    stream = await engine.store.read_stream(intent_id)
    assert [e.type for e in stream] == ["ReceiveRequested", "ReceiveDispatched"]
    assert stream[0].metadata["actor"] == "caller:alice"
    assert stream[0].metadata["owner"] == "alice"
    # The relay publishes the order on the node's dispatch subject, signed by the engine.
    js = nc.jetstream()
    subject = subjects.dispatch_subject("us", "us-lnd")

    async def order_published() -> bool:
        try:
            msg = await js.get_last_msg(subjects.DISPATCH_STREAM, subject)
        except Exception:
            return False
        return bool(json.loads(msg.data)["stream_id"] == intent_id)

    await wait_for(order_published, what="the receive order on the dispatch stream")
    msg = await js.get_last_msg(subjects.DISPATCH_STREAM, subject)
    record = msgspec.json.decode(msg.data, type=RecordedEvent)
    order = msgspec.convert(record.data, ReceiveDispatched)
    assert order.signature is not None and "preimage" not in json.loads(msg.data)["data"]
    keyring = FileKeyring(keys_dir(tmp_path) / PUBLIC_KEYS_FILE)
    verify_receive_order(keyring, intent_id=intent_id, event_id=record.event_id, order=order)


async def test_idempotent_on_caller_and_key_like_a_send(engine: Engine, nc: Client) -> None:
    first = await request(nc, RECEIVE.format(caller="alice"), receive("r-2"))
    again = await request(nc, RECEIVE.format(caller="alice"), receive("r-2"))
    assert again["intent_id"] == first["intent_id"] and again["duplicate"] is True
    other = await request(nc, RECEIVE.format(caller="alice"), receive("r-2", amount_msat=1))
    assert other["ok"] is False and other["error"]["code"] == "idempotency_mismatch"
    assert other["error"]["field"] == "idempotency_key"
    # The identity is the subject's: a payload naming another caller is refused.
    forged = await request(nc, RECEIVE.format(caller="mallory"), receive("r-3"))
    assert forged["ok"] is False and forged["error"]["code"] == "identity_mismatch"
    bad = await request(nc, RECEIVE.format(caller="alice"), receive("r-4", expiry_s=5))
    assert bad["ok"] is False and bad["error"]["field"] == "expiry_s"
    nowhere = await request(nc, RECEIVE.format(caller="alice"), receive("r-5", region="mars"))
    assert nowhere["state"] == "failed" and nowhere["reason"] == "no_node"


async def test_reports_move_it_to_paid_once_and_the_cursor_follows(
    engine: Engine, nc: Client
) -> None:
    created = await request(nc, RECEIVE.format(caller="alice"), receive("r-6"))
    intent_id = created["intent_id"]
    node_subject = INVOICE.format(node="us-lnd")
    wrong = await request(nc, INVOICE.format(node="eu-lnd"),
                          report(intent_id, "issued", node="eu-lnd", region="eu"))  # fmt: skip
    assert wrong["ok"] is False and wrong["error"]["code"] == "wrong_node"
    issued = await request(nc, node_subject, report(intent_id, "issued"))
    assert issued["state"] == "issued", issued
    for _ in range(3):  # a redelivered order, a resumed follower: credited once
        paid = await request(nc, node_subject, report(intent_id, "paid"))
        assert paid["ok"] is True and paid["state"] == "paid"
    stream = await engine.store.read_stream(intent_id)
    assert [e.type for e in stream].count("InvoicePaid") == 1
    view = await request(
        nc, f"{subjects.API_GET}.caller.alice", {"type": "GetPaymentIntent", "version": 1,
                                                "intent_id": intent_id},
    )  # fmt: skip
    assert view["state"] == "paid"
    assert [e["type"] for e in view["events"]][-1] == "InvoicePaid"
    hidden = await request(
        nc, f"{subjects.API_GET}.caller.bob", {"type": "GetPaymentIntent", "version": 1,
                                              "intent_id": intent_id},
    )  # fmt: skip
    assert hidden["ok"] is False and hidden["error"]["code"] == "not_found"
    cursor = await request(
        nc, f"{subjects.API_STATUS}.executor.us-lnd",
        {"type": "GetInvoiceCursor", "version": 1, "node": "us-lnd"},
    )  # fmt: skip
    assert cursor == {"type": "InvoiceCursor", "ok": True, "node": "us-lnd", "pay_index": 5,
                      "version": 1}  # fmt: skip
    other_node = await request(
        nc, f"{subjects.API_STATUS}.executor.eu-lnd",
        {"type": "GetInvoiceCursor", "version": 1, "node": "us-lnd"},
    )  # fmt: skip
    assert other_node["ok"] is False and other_node["error"]["code"] == "forbidden"
