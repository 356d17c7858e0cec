"""The simulated CLN node's receiving side through unchanged pyln-client: ``invoice`` with a
chosen preimage, ``listinvoices``, ``waitanyinvoice``, ``waitinvoice`` and ``help``, every
request and response checked against CLN's schema, errors with CLN's codes."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from services.sim.cln_server import PARAMETERS, REQUIRED_PARAMETERS
from tests.sim.cln_schema import SCHEMAS_DIR, method_schema, schemas_available
from tests.sim.test_cln_server_schemas import FEE_MSAT, Node, node  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(
    not schemas_available(), reason=f"CLN schemas not found at {SCHEMAS_DIR.resolve()}"
)
WAIT_S = 5.0


def preimage_of(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


async def pay_from_bob(node: Node, bolt11: str) -> None:  # noqa: F811
    sent = await node.network.send_payment(
        "bob", payment_request=bolt11, max_fee_msat=FEE_MSAT, timeout_s=5.0
    )
    final = await node.network.wait_payment("bob", sent.payment_hash, timeout_s=WAIT_S)
    assert final.status == "succeeded", final


async def test_invoice_takes_a_preimage_and_refuses_duplicates(node: Node) -> None:  # noqa: F811
    preimage = preimage_of("chosen")
    created = await node.call(
        "invoice",
        {"amount_msat": 10_000, "label": "a", "description": "d", "preimage": preimage},
    )
    assert created["payment_hash"] == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    same_label = await node.error(
        "invoice", {"amount_msat": 1, "label": "a", "description": "d", "preimage": preimage}
    )
    assert (same_label["code"], same_label["message"]) == (900, "Duplicate label")
    same_preimage = await node.error(
        "invoice", {"amount_msat": 1, "label": "b", "description": "d", "preimage": preimage}
    )
    assert (same_preimage["code"], same_preimage["message"]) == (901, "preimage already used")
    bad = await node.error(
        "invoice", {"amount_msat": 1, "label": "c", "description": "d", "preimage": "ab"}
    )
    assert bad["code"] == -32602


async def test_listinvoices_in_every_state(node: Node) -> None:  # noqa: F811
    await node.call("invoice", {"amount_msat": "any", "label": 7, "description": "u"})
    paid = await node.call(
        "invoice", {"amount_msat": 21_000, "label": "paid", "description": "p", "expiry": 600}
    )
    expired = await node.call(
        "invoice", {"amount_msat": 1_000, "label": "expired", "description": "e"}
    )
    await pay_from_bob(node, paid["bolt11"])
    node.network.faults.expire_invoice(expired["payment_hash"])
    listed = (await node.call("listinvoices"))["invoices"]
    assert [(i["label"], i["status"]) for i in listed] == [
        ("7", "unpaid"),
        ("paid", "paid"),
        ("expired", "expired"),
    ]
    assert "amount_msat" not in listed[0]
    entry = listed[1]
    assert entry["pay_index"] == 1 and entry["amount_received_msat"] == 21_000
    preimage = bytes.fromhex(entry["payment_preimage"])
    assert hashlib.sha256(preimage).hexdigest() == paid["payment_hash"]
    assert entry["expires_at"] == paid["expires_at"] and entry["paid_at"] <= entry["expires_at"]
    by_hash = await node.call("listinvoices", {"payment_hash": paid["payment_hash"]})
    by_label = await node.call("listinvoices", {"label": "paid"})
    by_string = await node.call("listinvoices", {"invstring": paid["bolt11"]})
    assert by_hash == by_label == by_string == {"invoices": [entry]}
    assert await node.call("listinvoices", {"payment_hash": "00" * 32}) == {"invoices": []}
    page = await node.call("listinvoices", {"index": "created", "start": 2, "limit": 1})
    assert [i["label"] for i in page["invoices"]] == ["paid"]
    both = await node.error("listinvoices", {"label": "paid", "payment_hash": "00" * 32})
    assert both["code"] == -32602


async def test_waitanyinvoice_answers_in_pay_order_and_times_out(node: Node) -> None:  # noqa: F811
    first = await node.call("invoice", {"amount_msat": 1_000, "label": "1", "description": "1"})
    second = await node.call("invoice", {"amount_msat": 2_000, "label": "2", "description": "2"})
    await pay_from_bob(node, second["bolt11"])
    await pay_from_bob(node, first["bolt11"])
    any_paid = await node.call("waitanyinvoice", {})
    assert (any_paid["label"], any_paid["pay_index"]) == ("2", 1)
    after = await node.call("waitanyinvoice", {"lastpay_index": 1})
    assert (after["label"], after["pay_index"]) == ("1", 2)
    timed_out = await node.error("waitanyinvoice", {"lastpay_index": 2, "timeout": 0})
    assert (timed_out["code"], timed_out["message"]) == (904, "Timed out")
    # A wait that starts before the payment answers once it settles.
    third = await node.call("invoice", {"amount_msat": 3_000, "label": "3", "description": "3"})
    waiting = asyncio.ensure_future(node.call("waitanyinvoice", {"lastpay_index": 2}))
    await pay_from_bob(node, third["bolt11"])
    async with asyncio.timeout(WAIT_S):
        live = await waiting
    assert (live["label"], live["pay_index"], live["status"]) == ("3", 3, "paid")


async def test_waitinvoice_paid_expired_and_unknown(node: Node) -> None:  # noqa: F811
    paid = await node.call("invoice", {"amount_msat": 4_000, "label": "w", "description": "w"})
    waiting = asyncio.ensure_future(node.call("waitinvoice", {"label": "w"}))
    await pay_from_bob(node, paid["bolt11"])
    async with asyncio.timeout(WAIT_S):
        done = await waiting
    assert done["status"] == "paid" and done["payment_hash"] == paid["payment_hash"]
    expiring = await node.call("invoice", {"amount_msat": 1, "label": "x", "description": "x"})
    node.network.faults.expire_invoice(expiring["payment_hash"])
    expired = await node.error("waitinvoice", {"label": "x"})
    assert (expired["code"], expired["message"]) == (903, "invoice expired during wait")
    unknown = await node.error("waitinvoice", {"label": "nope"})
    assert unknown["code"] == -1


async def test_help_lists_what_is_served(node: Node) -> None:  # noqa: F811
    listed = await node.call("help")
    commands = {entry["command"].split()[0] for entry in listed["help"]}
    assert {"invoice", "listinvoices", "waitanyinvoice", "waitinvoice", "help"} <= commands
    one = await node.call("help", {"command": "invoice"})
    assert one["help"] == [
        {
            "command": "invoice amount_msat label description [expiry] [fallbacks] [preimage] "
            "[exposeprivatechannels] [cltv] [deschashonly]"
        }
    ]
    unknown = await node.error("help", {"command": "listoffers"})
    assert unknown["code"] == -32601
    missing = await node.error("listoffers", {})
    assert missing["code"] == -32601


def test_required_parameters_are_the_schemas() -> None:
    for method, names in PARAMETERS.items():
        required = method_schema(method)["request"].get("required", [])
        count = REQUIRED_PARAMETERS.get(method, 0)
        assert list(names[:count]) == required, method
