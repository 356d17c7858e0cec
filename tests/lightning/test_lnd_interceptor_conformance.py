"""The simulated lnd's ``Router.HtlcInterceptor`` and zero-conf ``OpenChannel`` through a raw
gRPC client, against lnd's published API (router.proto, router.swagger.json): every request
message conforms to ``routerrpcForwardHtlcInterceptRequest``; one interceptor at a time; held
HTLCs are replayed on reconnect; RESUME_MODIFIED forwards the lower amount with the
extra_fee TLV over a zero-conf private channel that is usable at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.lightning.lnd_convert import scid_from_str, scid_to_str
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.lnd_proto import lightning_pb2_grpc, router_pb2, router_pb2_grpc
from services.sim.interception import EXTRA_FEE_TLV
from services.sim.lnd_server import start_lnd_node_server
from services.sim.network import SimNetwork
from tests.lightning.lnd_harness import wait_until
from tests.lightning.test_lnd_conformance import assert_conforms, needs_swagger
from tests.sim.test_interception import AMOUNT_MSAT, FEE_MSAT, JIT_SCID, jit_invoice, jit_topology

_LIGHTNING: Any = lightning_pb2_grpc.LightningStub
_ROUTER: Any = router_pb2_grpc.RouterStub
SWAGGER = "router.swagger.json"


@dataclass
class RawLsp:
    network: SimNetwork
    lightning: Any
    router: Any
    metadata: tuple[tuple[str, str], ...]


@pytest.fixture
async def lsp(tmp_path: Path) -> AsyncIterator[RawLsp]:
    network = SimNetwork.from_topology(jit_topology(), seed=5)
    server = await start_lnd_node_server(network, "lsp", state_dir=tmp_path)
    credentials = server.credentials
    try:
        channel_credentials = grpc.ssl_channel_credentials(credentials.cert_path.read_bytes())
        async with grpc.aio.secure_channel(
            f"{server.host}:{server.port}", channel_credentials
        ) as channel:
            yield RawLsp(
                network=network,
                lightning=_LIGHTNING(channel),
                router=_ROUTER(channel),
                metadata=(("macaroon", credentials.macaroon_path.read_bytes().hex()),),
            )
    finally:
        await server.stop()
        await network.aclose()


async def _pay(network: SimNetwork, bolt11: str) -> str:
    payment = await network.send_payment(
        "payer", payment_request=bolt11, max_fee_msat=10_000, timeout_s=5
    )
    return payment.payment_hash


@contextlib.asynccontextmanager
async def _interceptor(lsp: RawLsp) -> AsyncIterator[Any]:
    call = lsp.router.HtlcInterceptor(metadata=lsp.metadata)
    try:
        yield call
    finally:
        call.cancel()


@needs_swagger
async def test_hold_replay_zero_conf_open_and_resume_modified(lsp: RawLsp) -> None:
    network = lsp.network
    bolt11 = jit_invoice(network)
    async with _interceptor(lsp) as first:
        # The stream switches interception on; a payment sent now is held at the LSP.
        await wait_until(lambda: network.interception_enabled("lsp"))
        payment_hash = await _pay(network, bolt11)
        request = await asyncio.wait_for(first.read(), 5)
        document = assert_conforms(SWAGGER, "routerrpcForwardHtlcInterceptRequest", request)
        assert request.payment_hash.hex() == payment_hash
        assert scid_to_str(request.outgoing_requested_chan_id) == JIT_SCID
        assert request.outgoing_amount_msat == request.incoming_amount_msat == AMOUNT_MSAT
        assert request.auto_fail_height < request.incoming_expiry
        assert document["incoming_circuit_key"]["htlc_id"] == str(
            request.incoming_circuit_key.htlc_id
        )
        # lnd allows one interceptor at a time.
        async with _interceptor(lsp) as second:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(second.read(), 5)
            assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    # The client went away; the HTLC stays held and is offered again on reconnect.
    assert [h.payment_hash for h in network.intercepted_htlcs("lsp")] == [payment_hash]
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "in_flight"
    async with _interceptor(lsp) as again:
        replayed = await asyncio.wait_for(again.read(), 5)
        assert replayed.incoming_circuit_key == request.incoming_circuit_key

        opened = await lsp.lightning.OpenChannelSync(
            ln.OpenChannelRequest(
                node_pubkey=bytes.fromhex(network.node("wallet").pubkey),
                local_funding_amount=100_000,
                sat_per_vbyte=2,
                private=True,
                zero_conf=True,
                scid_alias=True,
            ),
            metadata=lsp.metadata,
        )
        assert opened.output_index == 0
        channels = assert_conforms(
            "lightning.swagger.json",
            "lnrpcListChannelsResponse",
            await lsp.lightning.ListChannels(ln.ListChannelsRequest(), metadata=lsp.metadata),
        )
        jit = [c for c in channels["channels"] if c.get("private")]
        assert len(jit) == 1 and jit[0]["active"] and jit[0]["zero_conf"]

        await again.write(
            router_pb2.ForwardHtlcInterceptResponse(
                incoming_circuit_key=replayed.incoming_circuit_key,
                action=router_pb2.RESUME_MODIFIED,
                out_amount_msat=AMOUNT_MSAT - FEE_MSAT,
                out_wire_custom_records={EXTRA_FEE_TLV: FEE_MSAT.to_bytes(8, "big")},
            )
        )
        final = await network.wait_payment("payer", payment_hash, 5)
        assert final.status == "succeeded"
    [wallet_channel] = network.channels_of("wallet")
    assert wallet_channel.local_balance_msat == AMOUNT_MSAT - FEE_MSAT
    network.check_invariants()


async def test_a_response_for_an_unknown_circuit_ends_the_stream(lsp: RawLsp) -> None:
    async with _interceptor(lsp) as call:
        await call.write(
            router_pb2.ForwardHtlcInterceptResponse(
                incoming_circuit_key=router_pb2.CircuitKey(
                    chan_id=scid_from_str("101x1x0"), htlc_id=7
                ),
                action=router_pb2.RESUME,
            )
        )
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await asyncio.wait_for(call.read(), 5)
        assert "not found" in (ended.value.details() or "")


async def test_scid_alias_needs_a_private_channel(lsp: RawLsp) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await lsp.lightning.OpenChannelSync(
            ln.OpenChannelRequest(
                node_pubkey=bytes.fromhex(lsp.network.node("wallet").pubkey),
                local_funding_amount=100_000,
                sat_per_vbyte=2,
                zero_conf=True,
                scid_alias=True,
            ),
            metadata=lsp.metadata,
        )
    assert refused.value.code() is grpc.StatusCode.UNKNOWN
    assert lsp.network.channels_of("wallet") == []
