"""Every response of the simulated CLN node, through unchanged pyln-client, matches CLN's schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pyln.client import LightningRpc, RpcError

from services.lightning.port import FailureReason
from services.sim.cln_server import ClnNodeServer, start_cln_node_server
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


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("offline_payee", 205),
        ("drained", 215),
        ("expired", 207),
        ("htlc_timeout", 210),
        ("cheap_fee_limit", 206),
        ("unknown", 209),
    ],
)
async def test_pay_error_codes(node: Node, setup: str, code: int) -> None:
    net = node.network
    invoice = net.create_invoice("bob", 10_000, "e", 3600)
    payload: dict[str, Any] = {"bolt11": invoice.bolt11}
    if setup == "offline_payee":
        net.faults.set_offline("bob")
    elif setup == "drained":
        for channel in net.channels_of("alice"):
            net.faults.drain_channel(channel.channel_id, toward=channel.peer)
    elif setup == "expired":
        net.faults.expire_invoice(invoice.payment_hash)
    elif setup == "htlc_timeout":
        net.faults.drop_resolution(timeout_s=0.01)
    elif setup == "cheap_fee_limit":
        payload["maxfee"] = 1
    elif setup == "unknown":
        net.faults.fail_route(node="bob", reason=FailureReason.UNKNOWN)
    error = await node.error("pay", payload)
    assert error["code"] == code, error
    json.dumps(error)  # plain JSON, nothing exotic


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


async def _until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.005)
