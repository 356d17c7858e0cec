"""A circular rebalance on the simulated LND node (ADR 0247), through lnd's own API: the node
pays its own invoice out one channel (``outgoing_chan_ids``) and back in another, from a chosen
last hop (``last_hop_pubkey``), only with ``allow_self_payment``. A raw gRPC client sends it,
the way any lnd client would; the stream's messages are checked against lnd's swagger, the
semantics against the fields' documentation in router.proto (payment-semantics.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import msgspec
import pytest

from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.lnd_proto import router_pb2
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, PolicySpec
from tests.lightning.lnd_harness import CAPACITY_MSAT, SEED, lnd_topology, served_lnd_node
from tests.lightning.test_lnd_conformance import (
    _LIGHTNING_STUB,
    _ROUTER_STUB,
    assert_conforms,
    needs_swagger,
)

AMOUNT_MSAT = 1_000_000
FEE_LIMIT_MSAT = 50_000
SUCCEEDED = 2  # lnrpc.Payment.PaymentStatus
FAILED = 3
NO_ROUTE = 2  # lnrpc.PaymentFailureReason


@dataclass
class Circle:
    lightning: Any
    router: Any
    metadata: tuple[tuple[str, str], ...]
    network: SimNetwork

    async def chan_id_to(self, peer: str) -> int:
        pubkey = self.network.node(peer).pubkey
        channels = await self.lightning.ListChannels(ln.ListChannelsRequest(),
                                                     metadata=self.metadata)  # fmt: skip
        (chan_id,) = [c.chan_id for c in channels.channels if c.remote_pubkey == pubkey]
        return int(chan_id)

    def local_msat(self) -> dict[str, int]:
        """Ground truth: alice's local balance per peer, in msat, from the network."""
        return {c.peer: c.local_balance_msat for c in self.network.channels_of("alice")}

    async def own_invoice(self) -> Any:
        return await self.lightning.AddInvoice(ln.Invoice(memo="rebalance",
                                                          value_msat=AMOUNT_MSAT),
                                               metadata=self.metadata)  # fmt: skip

    async def send(self, **fields: Any) -> list[Any]:
        request = router_pb2.SendPaymentRequest(
            **{"fee_limit_msat": FEE_LIMIT_MSAT, "timeout_seconds": 5, **fields}
        )
        return [m async for m in self.router.SendPaymentV2(request, metadata=self.metadata)]


@pytest.fixture
async def circle(tmp_path: Path) -> AsyncIterator[Circle]:
    """alice -> hub -> bob -> alice: lnd_topology() and a channel bob opened to alice."""
    edge = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)
    base = lnd_topology()
    back = ChannelSpec(a="bob", b="alice", capacity_msat=CAPACITY_MSAT,
                       a_balance_msat=CAPACITY_MSAT // 2, a_policy=edge, b_policy=edge)  # fmt: skip
    topology = msgspec.structs.replace(base, channels=(*base.channels, back))
    network = SimNetwork.from_topology(topology, seed=SEED)
    try:
        async with served_lnd_node(network, "alice", tmp_path) as (server, _):
            credentials = server.credentials
            tls = grpc.ssl_channel_credentials(credentials.cert_path.read_bytes())
            async with grpc.aio.secure_channel(f"{server.host}:{server.port}", tls) as channel:
                yield Circle(
                    lightning=_LIGHTNING_STUB(channel), router=_ROUTER_STUB(channel),
                    metadata=(("macaroon", credentials.macaroon_path.read_bytes().hex()),),
                    network=network,
                )  # fmt: skip
    finally:
        await network.aclose()


@needs_swagger
async def test_a_node_pays_its_own_invoice_out_one_channel_and_in_another(circle: Circle) -> None:
    out_chan = await circle.chan_id_to("hub")
    before = circle.local_msat()
    invoice = await circle.own_invoice()
    updates = await circle.send(
        payment_request=invoice.payment_request, outgoing_chan_ids=[out_chan],
        last_hop_pubkey=bytes.fromhex(circle.network.node("bob").pubkey),
        allow_self_payment=True,
    )  # fmt: skip
    final = assert_conforms("lightning.swagger.json", "lnrpcPayment", updates[-1])
    assert updates[-1].status == SUCCEEDED, final
    (htlc,) = updates[-1].htlcs
    hops = [h.pub_key for h in htlc.route.hops]
    assert hops == [circle.network.node(n).pubkey for n in ("hub", "bob", "alice")]
    assert htlc.route.hops[0].chan_id == out_chan
    fee_msat = updates[-1].fee_msat
    assert 0 < fee_msat <= FEE_LIMIT_MSAT
    after = circle.local_msat()
    # Outbound moved from the hub channel to the bob channel; the node paid only the fees.
    assert after["hub"] == before["hub"] - AMOUNT_MSAT - fee_msat
    assert after["bob"] == before["bob"] + AMOUNT_MSAT
    circle.network.check_invariants()
    stored = await circle.lightning.LookupInvoice(ln.PaymentHash(r_hash=invoice.r_hash),
                                                  metadata=circle.metadata)  # fmt: skip
    assert stored.state == ln.Invoice.SETTLED and stored.amt_paid_msat == AMOUNT_MSAT


async def test_a_self_payment_needs_allow_self_payment_and_a_matching_last_hop(
    circle: Circle,
) -> None:
    out_chan = await circle.chan_id_to("hub")
    refused = await circle.send(
        payment_request=(await circle.own_invoice()).payment_request, outgoing_chan_ids=[out_chan]
    )
    assert (refused[-1].status, refused[-1].failure_reason) == (FAILED, NO_ROUTE)
    wrong_last_hop = await circle.send(
        payment_request=(await circle.own_invoice()).payment_request,
        outgoing_chan_ids=[out_chan], allow_self_payment=True,
        last_hop_pubkey=bytes.fromhex(circle.network.node("hub").pubkey),  # alice-hub is used
    )  # fmt: skip
    assert (wrong_last_hop[-1].status, wrong_last_hop[-1].failure_reason) == (FAILED, NO_ROUTE)
    back_out = await circle.chan_id_to("bob")
    reversed_circle = await circle.send(
        payment_request=(await circle.own_invoice()).payment_request,
        outgoing_chan_ids=[back_out], allow_self_payment=True,
        last_hop_pubkey=bytes.fromhex(circle.network.node("hub").pubkey),
    )  # fmt: skip
    assert reversed_circle[-1].status == SUCCEEDED  # out via bob, back in from the hub
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await circle.send(payment_request=(await circle.own_invoice()).payment_request,
                          allow_self_payment=True, last_hop_pubkey=b"\x02\x03\x04")  # fmt: skip
    assert bad.value.code() == grpc.StatusCode.UNKNOWN
    assert bad.value.details() == "invalid vertex length of 3, want 33"
