"""Every request to and response of the simulated CLN node, through unchanged pyln-client,
matches CLN's schema; its payment errors are the codes CLN documents per command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pyln.client import LightningRpc, RpcError

from services.lightning.port import FailureReason
from services.sim.channel_ops import FUNDING_CONFIRMATIONS
from services.sim.cln_server import PARAMETERS, ClnNodeServer, start_cln_node_server
from services.sim.network import SimNetwork
from tests.lightning.conftest import SEED, contract_topology, short_socket_dir
from tests.sim.cln_schema import SCHEMAS_DIR, method_schema, schema_errors, schemas_available

pytestmark = pytest.mark.skipif(
    not schemas_available(), reason=f"CLN schemas not found at {SCHEMAS_DIR.resolve()}"
)

FEE_MSAT = 50_000


class Node:
    def __init__(self, network: SimNetwork, server: ClnNodeServer) -> None:
        self.network = network
        self.server = server
        self.rpc = LightningRpc(str(server.socket_path))

    async def call(self, method: str, payload: dict[str, Any] | list[Any] | None = None) -> Any:
        if isinstance(payload, dict):
            errors = schema_errors(method, payload, part="request")
            assert not errors, (method, errors, payload)
        result = await asyncio.to_thread(self.rpc.call, method, payload)
        errors = schema_errors(method, result)
        assert not errors, (method, errors, result)
        return result

    async def error(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        with pytest.raises(RpcError) as info:
            await asyncio.to_thread(self.rpc.call, method, payload)
        error = info.value.error
        assert isinstance(error, dict) and isinstance(error["code"], int)
        assert isinstance(error["message"], str)
        return error


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    async with short_socket_dir() as sockets:
        server = await start_cln_node_server(network, "alice", socket_path=sockets / "a.sock")
        try:
            yield Node(network, server)
        finally:
            await server.stop()
            await network.aclose()


def test_harness_accepts_upstream_examples() -> None:
    checked = 0
    for path in sorted(SCHEMAS_DIR.glob("*.json")):
        if path.name == "rpc-schema-draft.json":
            continue
        schema = method_schema(path.stem)
        for example in schema.get("examples", []):
            if "response" in example:
                assert not schema_errors(path.stem, example["response"]), path.stem
                checked += 1
    assert checked >= 40


def test_harness_rejects_a_wrong_shape() -> None:
    assert schema_errors("pay", {"status": "complete"})
    assert schema_errors("listpays", {"pays": [{"payment_hash": "00", "status": "weird"}]})
    assert schema_errors("xpay", {"payment_preimage": "00", "failed_parts": 0})
    assert schema_errors("xpay", {"invstring": 1}, part="request")


def test_parameter_names_are_the_schemas() -> None:
    """The names (and positional order) the simulator takes are those CLN documents."""
    for method, names in PARAMETERS.items():
        properties = method_schema(method)["request"].get("properties", {})
        documented = [name for name, spec in properties.items() if not spec.get("hidden")]
        assert list(names) == documented, method


async def test_unknown_parameters_are_refused(node: Node) -> None:
    other = node.network.create_invoice("bob", 1000, "u", 3600)
    error = await node.error("xpay", {"invstring": other.bolt11, "bolt11": other.bolt11})
    assert error["code"] == -32602 and "bolt11" in error["message"]
    error = await node.error("xpay", {"invstring": other.bolt11, "partial_msat": 500})
    assert error["code"] == -32602  # documented, but not modelled: refused, never ignored
    assert node.network.payments() == []


async def test_node_and_channel_methods(node: Node) -> None:
    info = await node.call("getinfo")
    assert info["id"] == node.network.node("alice").pubkey and info["network"] == "regtest"
    channels = (await node.call("listpeerchannels"))["channels"]
    assert [c["short_channel_id"] for c in channels] == [
        c.channel_id for c in node.network.channels_of("alice")
    ]
    await node.call("listpeerchannels", {"id": channels[0]["peer_id"]})
    funds = await node.call("listfunds")
    assert funds["channels"][0]["our_amount_msat"] == channels[0]["to_us_msat"]


async def test_invoice_and_decode(node: Node) -> None:
    created = await node.call("invoice", {"amount_msat": 5000, "label": "a", "description": "d"})
    await node.call(
        "invoice", {"amount_msat": "any", "label": "b", "description": "d", "expiry": 60}
    )
    await node.call("invoice", [1000, "positional", "d"])
    decoded = await node.call("decode", {"string": created["bolt11"]})
    assert decoded["payment_hash"] == created["payment_hash"] and decoded["amount_msat"] == 5000
    assert (await node.error("invoice", {"amount_msat": 1, "label": "a", "description": "d"}))[
        "code"
    ] == 900
    assert (await node.error("decode", {"string": "lnbcrt1nonsense"}))["code"] == -32602


async def test_payment_methods_in_every_state(node: Node) -> None:
    net = node.network
    paid = net.create_invoice("bob", 10_000, "x", 3600)
    result = await node.call("pay", {"bolt11": paid.bolt11, "maxfee": FEE_MSAT})
    assert result["status"] == "complete"
    replay = await node.call("pay", {"bolt11": paid.bolt11})
    assert replay["payment_preimage"] == result["payment_preimage"]
    other = net.create_invoice("carol", 20_000, "y", 3600)
    xpaid = await node.call("xpay", {"invstring": other.bolt11})
    assert xpaid["successful_parts"] == 1
    keysent = await node.call(
        "keysend", {"destination": net.node("bob").pubkey, "amount_msat": 777}
    )
    assert keysent["amount_msat"] == 777

    net.faults.drop_resolution()
    pending = net.create_invoice("bob", 30_000, "z", 3600)
    paying = asyncio.create_task(asyncio.to_thread(node.rpc.pay, pending.bolt11))
    await _until(lambda: any(p.payment_hash == pending.payment_hash for p in net.payments()))
    assert (await node.error("waitsendpay", {"payment_hash": pending.payment_hash, "timeout": 0}))[
        "code"
    ] == 200

    net.faults.fail_route(node="carol", reason=FailureReason.INCORRECT_DETAILS)
    refused = net.create_invoice("carol", 1000, "w", 3600)
    error = await node.error("pay", {"bolt11": refused.bolt11})
    assert error["code"] == 203 and error["data"]["failcodename"]
    assert (await node.error("waitsendpay", {"payment_hash": refused.payment_hash}))["code"] == 203

    sendpays = (await node.call("listsendpays"))["payments"]
    pays = (await node.call("listpays"))["pays"]
    assert {p["status"] for p in sendpays} == {"complete", "pending", "failed"}
    assert {p["status"] for p in pays} == {"complete", "pending", "failed"}
    await node.call("listpays", {"payment_hash": paid.payment_hash})
    await node.call("listsendpays", {"bolt11": paid.bolt11, "status": "complete"})
    done = await node.call("waitsendpay", {"payment_hash": paid.payment_hash})
    assert done["payment_preimage"] == result["payment_preimage"]
    assert (await node.error("waitsendpay", {"payment_hash": "00" * 32}))["code"] == 208

    net.faults.release_dropped()
    assert (await paying)["status"] == "complete"


def _script_failure(net: SimNetwork, setup: str, payment_hash: str) -> None:
    if setup == "offline_payee":
        net.faults.set_offline("bob")
    elif setup == "drained":
        for channel in net.channels_of("alice"):
            net.faults.drain_channel(channel.channel_id, toward=channel.peer)
    elif setup == "expired":
        net.faults.expire_invoice(payment_hash)
    elif setup == "htlc_timeout":
        net.faults.drop_resolution(timeout_s=0.01)
    elif setup == "unknown":
        net.faults.fail_route(node="bob", reason=FailureReason.UNKNOWN)
    elif setup == "unknown_invoice":
        net.faults.fail_route(node="bob", reason=FailureReason.INCORRECT_DETAILS)


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("offline_payee", 205),
        ("drained", 215),
        ("expired", 207),
        ("htlc_timeout", 210),
        ("cheap_fee_limit", 206),
        ("unknown", 209),
        ("unknown_invoice", 203),
    ],
)
async def test_pay_error_codes(node: Node, setup: str, code: int) -> None:
    net = node.network
    invoice = net.create_invoice("bob", 10_000, "e", 3600)
    payload: dict[str, Any] = {"bolt11": invoice.bolt11}
    if setup == "cheap_fee_limit":
        payload["maxfee"] = 1
    _script_failure(net, setup, invoice.payment_hash)
    error = await node.error("pay", payload)
    assert error["code"] == code, error
    json.dumps(error)  # plain JSON, nothing exotic


@pytest.mark.parametrize(
    ("setup", "code", "message", "sent"),
    [
        # Given up before the first attempt: nothing in listsendpays.
        ("offline_payee", 205, "Failed: We could not find a usable set of paths.", False),
        ("drained", 215, "Failed: We could not find a usable set of paths.", False),
        ("expired", 207, "Invoice expired ", False),
        ("cheap_fee_limit", 205, "Failed: We could not find a usable set of paths.", False),
        # After a part went out.
        ("unknown_invoice", 203, "Destination said it doesn't know invoice", True),
        ("htlc_timeout", 209, "Timed out after 1 attempts.", True),
        ("unknown", 209, "Failed after 1 attempts.", True),
    ],
)
async def test_xpay_error_codes(
    node: Node, setup: str, code: int, message: str, sent: bool
) -> None:
    """The codes of doc/schemas/xpay.json (and askrene's, passed on before any attempt)."""
    net = node.network
    invoice = net.create_invoice("bob", 10_000, "e", 3600)
    payload: dict[str, Any] = {"invstring": invoice.bolt11}
    if setup == "cheap_fee_limit":
        payload["maxfee"] = 1
    _script_failure(net, setup, invoice.payment_hash)
    assert not schema_errors("xpay", payload, part="request")
    error = await node.error("xpay", payload)
    assert (error["code"], error["message"][: len(message)]) == (code, message), error
    assert "data" not in error  # xpay's own errors carry no data
    parts = (await node.call("listsendpays", {"payment_hash": invoice.payment_hash}))["payments"]
    assert [p["status"] for p in parts] == (["failed"] if sent else [])
    pays = (await node.call("listpays", {"payment_hash": invoice.payment_hash}))["pays"]
    assert [(p["status"], p["amount_sent_msat"]) for p in pays] == ([("failed", 0)] if sent else [])


async def test_xpay_for_a_hash_this_node_holds(node: Node) -> None:
    net = node.network
    paid = net.create_invoice("bob", 10_000, "p", 3600)
    await node.call("xpay", {"invstring": paid.bolt11})
    error = await node.error("xpay", {"invstring": paid.bolt11})
    assert error["code"] == 219  # doc/schemas/xpay.json: "Invoice has already been paid"
    net.faults.drop_resolution()
    live = net.create_invoice("bob", 10_000, "l", 3600)
    paying = asyncio.create_task(node.call("xpay", {"invstring": live.bolt11}))
    await _until(lambda: any(p.payment_hash == live.payment_hash for p in net.payments()))
    error = await node.error("xpay", {"invstring": live.bolt11})
    assert error["code"] == -3 and "injectpaymentonion" in error["message"]
    net.faults.release_dropped()
    assert (await paying)["successful_parts"] == 1
    assert len([p for p in net.payments() if p.payment_hash == live.payment_hash]) == 1


async def test_xpay_parts_in_the_records(node: Node) -> None:
    """xpay's parts count from 1 in a random group (plugins/xpay/xpay.c); the records and
    waitsendpay show them that way, and a label given to xpay (v26.06) is kept."""
    net = node.network
    invoice = net.create_invoice("bob", 30_000, "x", 3600)
    net.faults.drop_resolution()
    paying = asyncio.create_task(
        node.call("xpay", {"invstring": invoice.bolt11, "label": "order-7", "retry_for": 30})
    )
    await _until(lambda: any(p.payment_hash == invoice.payment_hash for p in net.payments()))
    (part,) = (await node.call("listsendpays", {"payment_hash": invoice.payment_hash}))["payments"]
    assert (part["status"], part["partid"], part["label"]) == ("pending", 1, "order-7")
    assert part["bolt11"] == invoice.bolt11 and 0 <= part["groupid"] < 2**63
    (pay,) = (await node.call("listpays", {"payment_hash": invoice.payment_hash}))["pays"]
    assert (pay["status"], pay["label"], pay["amount_msat"]) == ("pending", "order-7", 30_000)
    # Part 0 is what waitsendpay waits for unless told: xpay never sends it.
    missing = await node.error("waitsendpay", {"payment_hash": invoice.payment_hash})
    assert missing["code"] == 208
    named = {"payment_hash": invoice.payment_hash, "partid": 1, "groupid": part["groupid"]}
    pending = await node.error("waitsendpay", {**named, "timeout": 0})
    assert pending["code"] == 200
    net.faults.release_dropped()
    done = await node.call("waitsendpay", named)
    assert (done["status"], done["partid"], done["groupid"]) == ("complete", 1, part["groupid"])
    result = await paying
    assert result["payment_preimage"] == done["payment_preimage"]
    (pay,) = (await node.call("listpays", {"payment_hash": invoice.payment_hash}))["pays"]
    assert pay["status"] == "complete" and "number_of_parts" not in pay  # only if more than 1


async def test_framing_several_requests_on_one_connection(node: Node) -> None:
    reader, writer = await asyncio.open_unix_connection(str(node.server.socket_path))
    try:
        # Two bare objects, no delimiter, the second split across writes.
        writer.write(b'{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{}}{"jsonrpc":"2.0",')
        await writer.drain()
        writer.write(b'"id":2,"method":"nosuch","params":[]}')
        await writer.drain()
        replies = []
        buffer = b""
        while len(replies) < 2:
            buffer += await asyncio.wait_for(reader.read(65536), 5)
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                replies.append(json.loads(raw))
        assert replies[0]["id"] == 1 and "result" in replies[0]
        assert replies[1]["id"] == 2 and replies[1]["error"]["code"] == -32601
    finally:
        writer.close()


async def test_listsendpays_pages_by_created_index(node: Node) -> None:
    net = node.network
    for amount_msat in (1000, 2000, 3000):
        invoice = net.create_invoice("bob", amount_msat, "page", 3600)
        await node.call("pay", {"bolt11": invoice.bolt11, "maxfee": FEE_MSAT})
    first = (await node.call("listsendpays", {"index": "created", "start": 0, "limit": 2}))[
        "payments"
    ]
    assert [p["created_index"] for p in first] == [1, 2]
    rest = (await node.call("listsendpays", {"index": "created", "start": 3, "limit": 2}))[
        "payments"
    ]
    assert [(p["created_index"], p["amount_msat"]) for p in rest] == [(3, 3000)]
    assert (await node.call("listsendpays", {"index": "created", "start": 4, "limit": 2})) == {
        "payments": []
    }
    # As lightningd/pay.c: start needs index, and index cannot name one payment.
    assert (await node.error("listsendpays", {"start": 2}))["code"] == -32602
    invoice = first[0]["bolt11"]
    refused = await node.error("listsendpays", {"index": "created", "bolt11": invoice})
    assert refused["code"] == -32602


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.005)


async def test_channel_lifecycle_in_every_state_matches_the_schemas(node: Node) -> None:
    """fundchannel, listpeerchannels and listfunds through lock-in, normal use (with an HTLC
    out), close and ONCHAIN: every response as CLN's schemas say, states as lightningd names
    them."""
    network = node.network
    carol = network.node("carol").pubkey
    funded = await node.call(
        "fundchannel", {"id": carol, "amount": 500_000, "feerate": "2000perkb"}
    )
    assert funded["mindepth"] == FUNDING_CONFIRMATIONS and funded["outnum"] == 0
    assert funded["txid"] in network.chain.mempool

    async def entry() -> dict[str, Any]:
        listed = (await node.call("listpeerchannels", {"id": carol}))["channels"]
        (found,) = [c for c in listed if c["funding_txid"] == funded["txid"]]
        return found

    locking = await entry()
    assert locking["state"] == "CHANNELD_AWAITING_LOCKIN" and "short_channel_id" not in locking
    assert locking["status"] == [
        "CHANNELD_AWAITING_LOCKIN:Funding needs 3 more confirmations to be ready."
    ]
    assert locking["channel_id"] == funded["channel_id"] and locking["opener"] == "local"
    funds = await node.call("listfunds")
    states = {c["funding_txid"]: c["state"] for c in funds["channels"]}
    assert states[funded["txid"]] == "CHANNELD_AWAITING_LOCKIN"
    assert {o["status"] for o in funds["outputs"]} == {"unconfirmed"}  # only the change is left
    assert (await node.call("getinfo"))["num_pending_channels"] == 1
    network.mine(1)
    assert (await entry())["short_channel_id"].startswith(f"{network.block_height}x")
    network.mine(FUNDING_CONFIRMATIONS - 1)
    normal = await entry()
    assert normal["state"] == "CHANNELD_NORMAL" and normal["spendable_msat"] == 500_000_000
    # An HTLC out shows in htlcs with its hash; the channel is then not closable.
    network.faults.drop_resolution()
    invoice = network.create_invoice("carol", 30_000, "htlc", 600)
    await network.send_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MSAT, timeout_s=5
    )
    (htlc,) = (await entry())["htlcs"]
    assert (htlc["direction"], htlc["payment_hash"]) == ("out", invoice.payment_hash)
    busy = await node.error("close", {"id": normal["short_channel_id"]})
    assert busy["code"] == -1
    network.faults.release_dropped()
    await network.wait_payment("alice", invoice.payment_hash, 5)
    closed = await node.call("close", {"id": normal["channel_id"], "feerange": ["3000perkb"] * 2})
    assert closed["type"] == "mutual" and closed["txids"][0] in network.chain.mempool
    closing = await entry()
    assert (closing["state"], closing["closer"]) == ("CLOSINGD_COMPLETE", "local")
    repeated = await node.call("close", {"id": normal["short_channel_id"]})
    assert repeated["txids"] == closed["txids"]
    network.mine(1)
    assert (await entry())["state"] == "ONCHAIN"
    funds = await node.call("listfunds")
    assert {o["status"] for o in funds["outputs"]} == {"confirmed"}
    network.check_invariants()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"amount": 10**12}, 301),  # more than the wallet holds
        ({"amount": 100}, 302),  # below the minimum channel size
        ({"id": "02" + "11" * 32, "amount": 100_000}, 306),  # nobody we know
        ({"amount": "all"}, -32602),  # documented, not modelled
        ({"amount": 100_000, "utxos": []}, -32602),
    ],
)
async def test_fundchannel_errors_are_clns(node: Node, payload: dict[str, Any], code: int) -> None:
    request = {"id": node.network.node("carol").pubkey, **payload}
    assert (await node.error("fundchannel", request))["code"] == code
    assert node.network.chain.mempool == []


async def test_close_of_an_unknown_channel_is_refused(node: Node) -> None:
    assert (await node.error("close", {"id": "999x1x0"}))["code"] == -32602


async def test_sendcustommsg_answers_the_schema_and_clns_errors(node: Node) -> None:
    """doc/schemas/sendcustommsg.json: msg is the 2-byte type then the payload, the answer
    says it was queued; a type lightningd handles itself, an unknown or an offline peer are
    refused with -32600 (lightningd/connect_control.c); a bad hex string is -32602."""
    bob = node.network.node("bob").pubkey
    async with node.network.custom_messages.watch("bob") as inbox:
        sent = await node.call("sendcustommsg", {"node_id": bob, "msg": "9419" + b"{}".hex()})
        assert sent == {"status": "Message sent to connectd for delivery"}
        got = inbox.get_nowait()
    assert (got.message_type, got.data, got.sender) == (37913, b"{}", "alice")
    assert (await node.error("sendcustommsg", {"node_id": bob, "msg": "0010"}))["code"] == -32600
    unknown = "02" + "11" * 32
    refused = await node.error("sendcustommsg", {"node_id": unknown, "msg": "9419"})
    assert refused["code"] == -32600 and "No such peer" in refused["message"]
    node.network.faults.set_offline("bob", offline=True)
    refused = await node.error("sendcustommsg", {"node_id": bob, "msg": "9419"})
    assert refused["code"] == -32600 and "not connected" in refused["message"]
    assert (await node.error("sendcustommsg", {"node_id": bob, "msg": "94"}))["code"] == -32602
    assert (await node.error("sendcustommsg", {"node_id": bob, "msg": "zz"}))["code"] == -32602
