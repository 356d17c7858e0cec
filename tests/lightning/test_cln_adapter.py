"""The CLN adapter on xpay, through the simulated CLN node: every row of the xpay error table
as the adapter acts on it, the proof of non-payment from ``listpays``, and the URI options.

The simulated node answers a scripted error either before anything is sent, or right after
the payment started with its HTLC still out (what xpay does when it gives up while parts are
in flight). The ground truth then tells whether the adapter's answer was safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyln.client import LightningRpc

from services.lightning.cln import UPDATE_WAIT_SLICE_S, ClnAdapter, parse_cln_uri
from services.lightning.cln_errors import XPAY_ERRORS, Action, ClnErrorRule, cln_error_rule
from services.lightning.factory import adapter_from_uri
from services.lightning.port import (
    FailureReason,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
)
from services.sim.cln_server import ClnNodeServer, start_cln_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimPayment
from tests.lightning.conftest import (
    ADAPTER_TIMEOUT_S,
    MAX_FEE_MSAT,
    SEED,
    contract_topology,
    request_schema_errors,
    short_socket_dir,
    wait_until,
)

# The pay timeout where the HTLC is parked: the node answers a few loopback calls well within
# it, and the payment cannot settle in it, so the answer must be "in flight".
IN_FLIGHT_TIMEOUT_S = 0.3
# Long enough for a parked HTLC to time out in the simulator and the record to show it.
SETTLE_TIMEOUT_S = 5.0


@dataclass
class Node:
    network: SimNetwork
    server: ClnNodeServer
    adapter: ClnAdapter

    def invoice(self, amount_msat: int = 20_000) -> tuple[str, str]:
        created = self.network.create_invoice("bob", amount_msat, "xpay", 3600)
        assert created.bolt11 is not None
        return created.bolt11, created.payment_hash

    def attempts(self, payment_hash: str) -> list[SimPayment]:
        return [p for p in self.network.payments() if p.payment_hash == payment_hash]

    def sent(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.server.requests if name == method]

    async def server_parts(self, payment_hash: str) -> list[dict[str, Any]]:
        """listsendpays as the node shows it (read directly, not through the adapter)."""
        rpc = LightningRpc(str(self.server.socket_path))
        listed = await asyncio.to_thread(rpc.listsendpays, payment_hash=payment_hash)
        parts: list[dict[str, Any]] = listed["payments"]
        return parts


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    async with short_socket_dir() as sockets:
        server = await start_cln_node_server(network, "alice", socket_path=sockets / "a.sock")
        adapter = ClnAdapter(server.socket_path, timeout_s=ADAPTER_TIMEOUT_S)
        try:
            yield Node(network, server, adapter)
            assert not request_schema_errors(server), request_schema_errors(server)
        finally:
            await adapter.close()
            await server.stop()
            await network.aclose()


def pay_request(bolt11: str, timeout_s: float) -> PayRequest:
    return PayRequest(payment_request=bolt11, max_fee_msat=MAX_FEE_MSAT, timeout_s=timeout_s)


def message_for(rule: ClnErrorRule) -> str:
    """A message that selects exactly this row."""
    if rule.message_prefix:
        return f"{rule.message_prefix.capitalize()} after 3 attempts. (scripted)"
    return f"{rule.name} (scripted)"


def row_id(rule: ClnErrorRule) -> str:
    return f"{rule.code}-{rule.message_prefix.replace(' ', '_') or 'any'}"


async def final_update(adapter: ClnAdapter, payment_hash: str) -> PaymentResult:
    updates = [update async for update in adapter.payment_updates(payment_hash)]
    return updates[-1]


@pytest.mark.parametrize("rule", XPAY_ERRORS, ids=row_id)
async def test_xpay_row_raised_before_anything_was_sent(node: Node, rule: ClnErrorRule) -> None:
    """No part went out. Final and CONFIRM rows fail: the node has no record of the hash,
    which proves nothing was sent. USE_RECORD rows stay unknown: only a record decides."""
    bolt11, payment_hash = node.invoice()
    node.server.fail_next("xpay", rule.code, message_for(rule))
    result = await node.adapter.pay(pay_request(bolt11, IN_FLIGHT_TIMEOUT_S))
    assert node.attempts(payment_hash) == []
    if rule.action is Action.USE_RECORD:
        assert isinstance(result, PaymentInFlight), result
    else:
        assert isinstance(result, PaymentFailed), result
        assert result.reason is rule.reason
        assert result.detail.startswith(f"{rule.code}: ")


@pytest.mark.parametrize("rule", [r for r in XPAY_ERRORS if not r.final], ids=row_id)
async def test_xpay_row_while_a_part_is_out_stays_unknown(node: Node, rule: ClnErrorRule) -> None:
    """xpay gave up but its part is still out, and then settles: anything but "in flight"
    would have let a retry elsewhere pay twice."""
    node.network.faults.drop_resolution()
    bolt11, payment_hash = node.invoice()
    node.server.fail_next("xpay", rule.code, message_for(rule), after_send=True)
    result = await node.adapter.pay(pay_request(bolt11, IN_FLIGHT_TIMEOUT_S))
    assert isinstance(result, PaymentInFlight), result
    node.network.faults.release_dropped()
    settled = await final_update(node.adapter, payment_hash)
    assert isinstance(settled, PaymentSucceeded), settled
    assert [p.status for p in node.attempts(payment_hash)] == ["succeeded"]


@pytest.mark.parametrize("rule", [r for r in XPAY_ERRORS if r.action is Action.CONFIRM], ids=row_id)
async def test_xpay_confirm_row_fails_once_the_record_shows_nothing_pending(
    node: Node, rule: ClnErrorRule
) -> None:
    """The part that was out fails; listpays then says failed, which confirms xpay's error."""
    node.network.faults.drop_resolution(timeout_s=0.05)
    bolt11, payment_hash = node.invoice()
    node.server.fail_next("xpay", rule.code, message_for(rule), after_send=True)
    result = await node.adapter.pay(pay_request(bolt11, SETTLE_TIMEOUT_S))
    assert isinstance(result, PaymentFailed), result
    assert result.reason is rule.reason
    assert [p.status for p in node.attempts(payment_hash)] == ["failed"]


@pytest.mark.parametrize(
    "rule", [r for r in XPAY_ERRORS if r.action is Action.USE_RECORD], ids=row_id
)
async def test_xpay_use_record_row_answers_with_the_record(node: Node, rule: ClnErrorRule) -> None:
    node.network.faults.delay_resolution(0.05)
    bolt11, payment_hash = node.invoice()
    node.server.fail_next("xpay", rule.code, message_for(rule), after_send=True)
    result = await node.adapter.pay(pay_request(bolt11, SETTLE_TIMEOUT_S))
    assert isinstance(result, PaymentSucceeded), result
    assert result == await node.adapter.lookup_payment(payment_hash)


async def test_htlc_timeout_while_a_part_is_out_is_unknown_never_failed(node: Node) -> None:
    """Regression: xpay's "Timed out after N attempts" (209) can come while a part is out.

    The payment then succeeds. Had the adapter answered "failed (timeout)", the engine would
    have retried on another node: paying the invoice twice.
    """
    rule = cln_error_rule("xpay", 209, "Timed out after after 2 attempts. ")
    assert rule.reason is FailureReason.TIMEOUT
    node.network.faults.drop_resolution()
    bolt11, payment_hash = node.invoice()
    node.server.fail_next("xpay", 209, "Timed out after after 2 attempts. ", after_send=True)
    result = await node.adapter.pay(pay_request(bolt11, IN_FLIGHT_TIMEOUT_S))
    assert isinstance(result, PaymentInFlight), result
    assert isinstance(await node.adapter.lookup_payment(payment_hash), PaymentInFlight)
    node.network.faults.release_dropped()
    assert isinstance(await final_update(node.adapter, payment_hash), PaymentSucceeded)


async def test_htlc_timeout_is_failed_once_the_record_proves_it(node: Node) -> None:
    """The simulator's own xpay: the HTLC times out, xpay says 209 "Timed out", and listpays
    shows nothing pending: now the timeout is proven."""
    node.network.faults.drop_resolution(timeout_s=0.05)
    bolt11, payment_hash = node.invoice()
    result = await node.adapter.pay(pay_request(bolt11, SETTLE_TIMEOUT_S))
    assert isinstance(result, PaymentFailed) and result.reason is FailureReason.TIMEOUT, result
    assert result.detail.startswith("209: Timed out")
    assert [p.failure_reason for p in node.attempts(payment_hash)] == [FailureReason.TIMEOUT]


async def test_a_failed_xpay_record_names_its_part(node: Node) -> None:
    """waitsendpay without a part waits for part 0, which xpay never sends: the adapter reads
    the part from listsendpays and asks for it by partid and groupid."""
    node.network.faults.fail_route(node="bob", reason=FailureReason.INCORRECT_DETAILS)
    bolt11, payment_hash = node.invoice()
    result = await node.adapter.pay(pay_request(bolt11, SETTLE_TIMEOUT_S))
    assert isinstance(result, PaymentFailed) and result.reason is FailureReason.INCORRECT_DETAILS
    looked_up = await node.adapter.lookup_payment(payment_hash)
    assert isinstance(looked_up, PaymentFailed), looked_up
    assert looked_up.reason is FailureReason.INCORRECT_DETAILS
    waited = node.sent("waitsendpay")
    assert waited and all(params["partid"] == 1 for params in waited)


async def test_following_an_xpay_payment_waits_on_its_part(node: Node) -> None:
    """payment_updates blocks in waitsendpay on xpay's part (partid 1 of its group), rather
    than asking for part 0, which answers "never attempted" at once and would spin."""
    node.network.faults.drop_resolution()
    bolt11, payment_hash = node.invoice()
    result = await node.adapter.pay(pay_request(bolt11, IN_FLIGHT_TIMEOUT_S))
    assert isinstance(result, PaymentInFlight), result
    following = asyncio.create_task(final_update(node.adapter, payment_hash))
    await wait_until(
        lambda: any(p["timeout"] == UPDATE_WAIT_SLICE_S for p in node.sent("waitsendpay"))
    )
    node.network.faults.release_dropped()
    assert isinstance(await following, PaymentSucceeded)
    (part,) = await node.server_parts(payment_hash)
    waits = node.sent("waitsendpay")
    assert all((p["partid"], p["groupid"]) == (1, part["groupid"]) for p in waits), waits


async def test_concurrent_xpay_for_a_live_hash_answers_from_the_record(node: Node) -> None:
    """Both pays find no record and send; lightningd refuses the second xpay for the live hash
    (xpay: PLUGIN_ERROR), and that pay follows the first attempt's record instead of failing."""
    node.network.faults.slow_node("alice", 0.2)  # both look-ups are answered before either xpay
    node.network.faults.delay_resolution(0.1)
    bolt11, payment_hash = node.invoice()
    results = await asyncio.gather(
        *(node.adapter.pay(pay_request(bolt11, SETTLE_TIMEOUT_S)) for _ in range(2))
    )
    assert all(isinstance(r, PaymentSucceeded) for r in results), results
    assert results[0] == results[1]
    assert len(node.sent("xpay")) == 2
    assert len(node.attempts(payment_hash)) == 1


def test_uri_pays_with_xpay_unless_pay_is_asked_for() -> None:
    assert parse_cln_uri("cln:///run/cln/lightning-rpc") == ("/run/cln/lightning-rpc", "xpay")
    assert parse_cln_uri("cln:///run/rpc?pay=xpay") == ("/run/rpc", "xpay")  # the old opt-in
    assert parse_cln_uri("cln:///run/rpc?pay=pay") == ("/run/rpc", "pay")
    for bad in (
        "cln://relative/rpc",
        "lnd:///run/rpc",
        "cln:///run/rpc?pay=keysend",
        "cln:///run/rpc?pay=pay&pay=xpay",
        "cln:///run/rpc?rune=secret",
        "cln:///run/rpc?pay",
    ):
        with pytest.raises(ValueError):
            parse_cln_uri(bad)


@pytest.mark.parametrize(
    ("query", "command"), [("", "xpay"), ("?pay=xpay", "xpay"), ("?pay=pay", "pay")]
)
async def test_uri_option_chooses_the_command_on_the_wire(query: str, command: str) -> None:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    async with short_socket_dir() as sockets:
        server = await start_cln_node_server(network, "alice", socket_path=sockets / "a.sock")
        adapter = adapter_from_uri(f"cln://{server.socket_path}{query}", timeout_s=5.0)
        try:
            assert isinstance(adapter, ClnAdapter) and adapter.pay_command == command
            invoice = network.create_invoice("carol", 25_000, "uri", 3600)
            assert invoice.bolt11 is not None
            result = await adapter.pay(pay_request(invoice.bolt11, SETTLE_TIMEOUT_S))
            assert isinstance(result, PaymentSucceeded), result
            sent = [method for method, _ in server.requests if method in ("pay", "xpay")]
            assert sent == [command]
        finally:
            await adapter.close()
            await server.stop()
            await network.aclose()
