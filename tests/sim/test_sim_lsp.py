"""The simulated external LSP against bLIP-51: its answers have the spec examples' shape, it
refuses what the spec says to refuse with the spec's codes, sells a channel when its hold
invoice is paid, and fails an order that expires unpaid. A client node talks to it over LSPS0
through the in-process adapter; time is a manual clock, so expiry needs no waiting."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.lightning.sim_direct import SimNodeAdapter
from services.lsps import lsps0
from services.lsps.client import LspsClient
from services.sim.lsp import SimLsp
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, Topology

SEED = 51
START_S = 1_760_000_000.0
WAIT_S = 5.0
SPEC = Path(__file__).parents[2] / ".." / "shared" / "conformance" / "lsps" / "blip-0051.md"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def spec_json_blocks() -> list[dict[str, Any]]:
    if not SPEC.exists():
        pytest.skip("no bLIP-51 text in ../shared/conformance")
    blocks = re.findall(r"```(?:json|JSON)\n(.*?)```", SPEC.read_text(), re.S)
    return [json.loads(block) for block in blocks]


def spec_example(*keys: str) -> dict[str, Any]:
    """The first JSON example of bLIP-51 that has all ``keys``."""
    return next(b for b in spec_json_blocks() if all(k in b for k in keys))


@dataclass
class Env:
    network: SimNetwork
    lsp: SimLsp
    client: LspsClient
    clock: list[float]

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return await self.client.call(self.lsp.pubkey, method, params, timeout_s=WAIT_S)


def order_params(**changes: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "lsp_balance_sat": "5000000",
        "client_balance_sat": "0",
        "required_channel_confirmations": 0,
        "funding_confirms_within_blocks": 6,
        "channel_expiry_blocks": 144,
        "token": "",
        "announce_channel": False,
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = [START_S]
    topology = Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", region="us"),
            NodeSpec(name="hub", role="hub"),
            NodeSpec(name="lsp", role="lsp"),
        ),
        channels=(
            ChannelSpec(a="alice", b="hub", capacity_msat=50_000_000_000),
            ChannelSpec(a="hub", b="lsp", capacity_msat=50_000_000_000),
        ),
    )
    network = SimNetwork.from_topology(topology, seed=SEED, now_s=lambda: clock[0])
    lsp = SimLsp(network, "lsp", order_expiry_s=600, tokens=frozenset({"coupon"}))
    await lsp.start()
    alice = SimNodeAdapter(network, "alice")
    async with LspsClient(alice) as client:
        await client.ready(lsp.pubkey, timeout_s=WAIT_S)
        yield Env(network, lsp, client, clock)
    await lsp.stop()
    await alice.close()
    await network.aclose()


async def test_get_info_has_the_shape_of_the_specs_example(env: Env) -> None:
    info = await env.call("lsps1.get_info", {})
    example = spec_example("min_required_channel_confirmations", "max_channel_balance_sat")
    assert set(info) == set(example)
    for key, value in example.items():
        assert type(info[key]) is type(value), key  # sat amounts strings, counts integers
    assert int(info["min_initial_lsp_balance_sat"]) <= int(info["max_initial_lsp_balance_sat"])


async def test_create_order_answers_the_specs_fields_and_a_payable_hold_invoice(env: Env) -> None:
    order = await env.call("lsps1.create_order", order_params())
    example = spec_example("order_id", "payment", "channel")
    assert set(order) == set(example)
    assert order["order_state"] == "CREATED" and order["channel"] is None
    assert set(order["payment"]) == {"bolt11"}  # the LSP may omit the other options
    bolt11 = order["payment"]["bolt11"]
    assert set(bolt11) == set(example["payment"]["bolt11"])
    assert bolt11["state"] == "EXPECT_PAYMENT"
    fee_sat, total_sat = int(bolt11["fee_total_sat"]), int(bolt11["order_total_sat"])
    assert total_sat == fee_sat + int(order["client_balance_sat"]) and fee_sat > 0
    decoded = env.network.decode(bolt11["invoice"])
    assert decoded.amount_msat == total_sat * 1000
    assert decoded.destination == env.lsp.pubkey and len(bolt11["invoice"]) <= 2048
    assert ISO.fullmatch(order["created_at"]) and ISO.fullmatch(bolt11["expires_at"])
    assert len(order["order_id"]) <= 64
    again = await env.call("lsps1.get_order", {"order_id": order["order_id"]})
    assert again == order


async def test_a_paid_order_completes_with_a_channel_of_inbound_liquidity(env: Env) -> None:
    order = await env.call("lsps1.create_order", order_params(client_balance_sat="10000"))
    invoice = order["payment"]["bolt11"]["invoice"]
    sent = await env.network.send_payment(
        "alice", payment_request=invoice, max_fee_msat=100_000, timeout_s=WAIT_S
    )
    paid = await env.network.wait_payment("alice", sent.payment_hash, timeout_s=WAIT_S)
    assert paid.status == "succeeded"
    done = await env.call("lsps1.get_order", {"order_id": order["order_id"]})
    assert done["order_state"] == "COMPLETED"
    assert done["payment"]["bolt11"]["state"] == "PAID"
    assert set(done["channel"]) == {"funded_at", "funding_outpoint", "expires_at"}
    txid, index = done["channel"]["funding_outpoint"].split(":")
    env.network.mine(6)
    [channel] = [c for c in env.network.channels_of("alice") if c.peer == "lsp"]
    assert channel.remote_balance_msat == 5_000_000 * 1000  # the LSP's side: our inbound
    assert channel.local_balance_msat == 10_000 * 1000  # client_balance_sat, pushed to us
    assert (channel.funding_txid, channel.funding_output) == (txid, int(index))


@pytest.mark.parametrize(
    ("changes", "code", "property_"),
    [
        ({"lsp_balance_sat": "10000001"}, 100, "max_initial_lsp_balance_sat"),
        ({"lsp_balance_sat": "99999"}, 100, "min_initial_lsp_balance_sat"),
        ({"channel_expiry_blocks": 20161}, 100, "max_channel_expiry_blocks"),
        ({"funding_confirms_within_blocks": 1}, 100, "min_funding_confirms_within_blocks"),
        ({"announce_channel": "yes"}, -32602, "announce_channel"),
        ({"lsp_balance_sat": 5000000}, -32602, "lsp_balance_sat"),
        ({"lsp_balance_sat": "0"}, -32602, "lsp_balance_sat"),
        ({"channel_expiry_blocks": None}, -32602, "channel_expiry_blocks"),
        ({"required_channel_confirmations": 70000}, -32602, "required_channel_confirmations"),
    ],
)
async def test_an_order_outside_the_options_is_refused_with_the_specs_code(
    env: Env, changes: dict[str, Any], code: int, property_: str
) -> None:
    with pytest.raises(lsps0.LspsError) as refused:
        await env.call("lsps1.create_order", order_params(**changes))
    assert refused.value.code == code
    assert refused.value.data is not None and refused.value.data["property"] == property_
    if code == -32602:
        assert refused.value.data["unrecognized"] == []  # LSPS0: -32602 always carries it
    assert env.lsp.orders == {}


async def test_tokens_unknown_params_unknown_orders_and_rejected_clients(env: Env) -> None:
    with pytest.raises(lsps0.LspsError) as refused:
        await env.call("lsps1.create_order", order_params(token="stale"))
    assert (refused.value.code, refused.value.data) == (102, {})
    assert (await env.call("lsps1.create_order", order_params(token="coupon")))["token"] == "coupon"
    with pytest.raises(lsps0.LspsError) as refused:
        await env.call("lsps1.create_order", order_params(future_param=1))
    assert refused.value.code == -32602
    assert refused.value.data == {"unrecognized": ["future_param"]}
    with pytest.raises(lsps0.LspsError) as refused:
        await env.call("lsps1.get_order", {"order_id": "bb4b5d0a-8334-49d8-9463-90a6d413af7c"})
    assert (refused.value.code, refused.value.data) == (101, {})
    env.lsp._rejected = frozenset({env.network.node("alice").pubkey})
    with pytest.raises(lsps0.LspsError) as refused:
        await env.call("lsps1.create_order", order_params())
    assert refused.value.code == 1 and refused.value.data is not None
    assert "message" in refused.value.data


async def test_an_unpaid_order_expires_failed_and_its_invoice_cannot_be_paid(env: Env) -> None:
    order = await env.call("lsps1.create_order", order_params())
    env.clock[0] += 601
    expired = await env.call("lsps1.get_order", {"order_id": order["order_id"]})
    assert expired["order_state"] == "FAILED"
    assert expired["payment"]["bolt11"]["state"] == "REFUNDED"
    assert expired["channel"] is None
    invoice = order["payment"]["bolt11"]["invoice"]
    try:
        sent = await env.network.send_payment(
            "alice", payment_request=invoice, max_fee_msat=100_000, timeout_s=WAIT_S
        )
    except ValueError:
        sent = None  # refused before sending: expired
    if sent is not None:
        final = await env.network.wait_payment("alice", sent.payment_hash, timeout_s=WAIT_S)
        assert final.status == "failed"
    assert [c for c in env.network.channels_of("alice") if c.peer == "lsp"] == []
    assert env.network.pending_channels_of("lsp") == []
