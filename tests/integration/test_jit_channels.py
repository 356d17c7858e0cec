"""JIT channels through the real engine (ADR 0261): a sale recorded over NATS, the HTLC for
its SCID held by the simulated lnd (our LSP, over its HtlcInterceptor stream), the engine's
signed order in PostgreSQL, the relay's dispatch, the executor's zero-conf open and the
forward less the opening fee; and a restart in the middle that neither opens a second channel
nor forwards twice (the simulated chain and network are the ground truth)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from services.bootstrap import Engine
from services.domain.jit_channels.fees import FeeMenuEntry, compute_opening_fee
from services.engine.ids import jit_sale_id_for, jit_scid_for
from services.engine.jit_planning import DEFAULT_JIT_POLICY
from services.executor import Executor
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.lnd import LndAdapter
from services.lightning.port import ChannelOpening, NodePort
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.cln_plugins import corridor_cln_plugins
from services.sim.cln_server import start_cln_node_server
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimRouteHint
from services.sim.topology import NodeSpec, default_topology
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import FAST, SEED, signing_engine
from tests.lightning.conftest import hook_schema_errors, short_socket_dir

LSP = "us-lnd"
CLN_LSP = "us-cln"  # our CLN node, running Corridor's plugins (ADR 0250, 0260)
PAYER = "eu-lnd"
WALLET = "wallet-01"
AMOUNT_MSAT = 5_000_000_000  # 5M sat: the proportional fee (6000 sat) is above the minimum
FLOW_TIMEOUT_S = 20.0
NOW_MS_FAR = 4_102_444_800_000  # 2100-01-01: valid_until in the future, whatever the clock
# The LSPS2 menu of the end-to-end test: a small minimum fee, so that a first payment within
# the default policy's auto tier (1000 sat) pays a fee within the 5 % cap.
SMALL_MENU = (
    FeeMenuEntry(
        min_fee_msat=20_000,
        proportional=1200,
        valid_for_s=3600,
        min_lifetime=1008,
        max_client_to_self_delay=2016,
        min_payment_size_msat=1000,
        max_payment_size_msat=10_000_000_000,
    ),
)
FIRST_PAY_MSAT = 1_000_000


def params() -> dict[str, Any]:
    return {
        "min_fee_msat": 546_000, "proportional": 1200, "valid_until_ms": NOW_MS_FAR,
        "min_lifetime": 1008, "max_client_to_self_delay": 2016,
        "min_payment_size_msat": 1000, "max_payment_size_msat": 100_000_000_000,
    }  # fmt: skip


@dataclass
class JitStack:
    network: SimNetwork
    state_dir: Path
    nats_url: str
    wallet_endpoint: str = ""


@contextlib.asynccontextmanager
async def jit_stack(tmp_path: Path, nats_url: str) -> AsyncIterator[JitStack]:
    topology = default_topology()
    wallet = NodeSpec(name=WALLET, role="merchant", implementation="lnd", region="asia")
    topology = msgspec.structs.replace(topology, nodes=(*topology.nodes, wallet))
    network = SimNetwork.from_topology(topology, seed=SEED)
    servers: list[LndNodeServer] = []
    for name in (LSP, PAYER, WALLET):
        servers.append(await start_lnd_node_server(network, name, state_dir=tmp_path / "nodes"))
    nodes = [
        {
            "name": s.node_name,
            "role": "ours",
            "region": network.node(s.node_name).region,
            "implementation": "lnd",
            "endpoint": s.endpoint,
            "pubkey": network.node(s.node_name).pubkey,
        }
        for s in servers
        if s.node_name != WALLET  # the payee's wallet is not ours: no executor, no endpoint
    ]
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    cln_sockets = contextlib.AsyncExitStack()
    sockets = await cln_sockets.enter_async_context(short_socket_dir())
    cln = await start_cln_node_server(
        network, CLN_LSP, socket_path=sockets / f"{CLN_LSP}.sock", plugins=corridor_cln_plugins(),
        hook_check=hook_schema_errors,
    )  # fmt: skip
    nodes.append(
        {
            "name": CLN_LSP,
            "role": "ours",
            "region": "us",
            "implementation": "cln",
            "endpoint": cln.endpoint,
            "pubkey": network.node(CLN_LSP).pubkey,
        }
    )
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    try:
        wallet_endpoint = next(s.endpoint for s in servers if s.node_name == WALLET)
        yield JitStack(
            network=network, state_dir=tmp_path, nats_url=nats_url,
            wallet_endpoint=wallet_endpoint,
        )  # fmt: skip
    finally:
        assert not cln.plugins.errors, cln.plugins.errors
        await cln.stop()
        await cln_sockets.aclose()
        for server in servers:
            await server.stop()
        await network.aclose()


def lsp_executor(
    stack: JitStack, executor_id: str, wrap: Any = None, *, name: str = LSP, jit: bool = True
) -> Executor:
    region = stack.network.node(name).region
    assert region is not None
    resolved = resolve_node(f"sim://{name}", region=region, state_dir=stack.state_dir)
    node = adapter_for(resolved.uri)
    return Executor(
        nats_url=stack.nats_url, region=region, node_name=resolved.name,
        node=wrap(node) if wrap else node, executor_id=executor_id,
        secret=load_or_create_secret(stack.state_dir / SECRET_FILE_NAME), limits=FAST,
        verifier=FileKeyring(keys_dir(stack.state_dir) / PUBLIC_KEYS_FILE), jit_lsp=jit,
        jit_menu=SMALL_MENU,
    )  # fmt: skip


async def sell(nc: Client, stack: JitStack, request_id: str, lsp: str = LSP) -> dict[str, Any]:
    command = {
        "type": "SellJitChannel", "version": 1, "region": "us", "node": lsp,
        "client_pubkey": stack.network.node(WALLET).pubkey, "request_id": request_id,
        "params": params(),
    }  # fmt: skip
    msg = await nc.request(
        f"corridor.api.v1.intents.jit_sell.{lsp}", json.dumps(command).encode(), timeout=10
    )
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def jit_invoice(stack: JitStack, request_id: str, fee_msat: int, lsp: str = LSP) -> str:
    network = stack.network
    scid = jit_scid_for(lsp, network.node(WALLET).pubkey, request_id)
    hint = SimRouteHint(
        pubkey=network.node(lsp).pubkey, short_channel_id=scid,
        cltv_expiry_delta=DEFAULT_JIT_POLICY.cltv_expiry_delta,
    )  # fmt: skip
    invoice = network.create_invoice(
        WALLET, AMOUNT_MSAT, "first pay", 3600, route_hint=hint, jit_fee_max_msat=fee_msat
    )
    assert invoice.bolt11 is not None
    return invoice.bolt11


async def event_types(engine: Engine, stream_id: str) -> list[str]:
    return [e.type for e in await engine.store.read_stream(stream_id)]


def funding_txs(stack: JitStack) -> list[str]:
    return [tx.txid for tx in stack.network.chain.txs.values() if tx.kind == "funding"]


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def stack(tmp_path: Path, nats_url: str) -> AsyncIterator[JitStack]:
    async with jit_stack(tmp_path, nats_url) as built:
        yield built


async def run_executor(executor: Executor) -> asyncio.Task[None]:
    task = asyncio.create_task(executor.run())
    await wait_for(executor.ready.is_set, what="the executor to start")
    return task


async def stop(executor: Executor, task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await executor.close_node()


async def test_sale_hold_open_forward_less_the_fee(
    engine: Engine, nc: Client, stack: JitStack
) -> None:
    executor = lsp_executor(stack, "us-jit")
    task = await run_executor(executor)
    try:
        reply = await sell(nc, stack, "buy-1")
        assert reply["ok"] and reply["state"] == "sold", reply
        sale_id = reply["intent_id"]
        scid = jit_scid_for(LSP, stack.network.node(WALLET).pubkey, "buy-1")
        assert sale_id == jit_sale_id_for(LSP, scid)
        again = await sell(nc, stack, "buy-1")
        assert (again["intent_id"], again["duplicate"]) == (sale_id, True)
        fee = compute_opening_fee(AMOUNT_MSAT, 546_000, 1200)
        assert fee == 6_000_000
        await wait_for(lambda: stack.network.interception_enabled(LSP), what="interception")
        payment = await stack.network.send_payment(
            PAYER, payment_request=jit_invoice(stack, "buy-1", fee), max_fee_msat=10**7,
            timeout_s=5,
        )  # fmt: skip
        final = await stack.network.wait_payment(PAYER, payment.payment_hash, FLOW_TIMEOUT_S)
        assert final.status == "succeeded"

        async def forwarded() -> bool:
            return "JitPaymentForwarded" in await event_types(engine, sale_id)

        await wait_for(forwarded, timeout_s=FLOW_TIMEOUT_S, what="the forward's report")
        assert await event_types(engine, sale_id) == [
            "JitChannelSold", "JitHtlcIntercepted", "JitChannelOpened", "JitPaymentForwarded",
        ]  # fmt: skip
        history = await engine.store.read_stream(sale_id)
        order = history[1].payload
        assert order["opening_fee_msat"] == fee and order["signature"]
        [wallet_channel] = stack.network.channels_of(WALLET)
        assert wallet_channel.local_balance_msat == AMOUNT_MSAT - fee
        assert wallet_channel.private and wallet_channel.zero_conf
        assert len(funding_txs(stack)) == 1
    finally:
        await stop(executor, task)
    stack.network.check_invariants()


class _DieAfterOpen:
    """An executor's node adapter that dies right after the node opened the channel: the
    report and the forward never happen in this process."""

    def __init__(self, inner: NodePort, opened: asyncio.Event) -> None:
        self._inner = inner
        self._opened = opened

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open_channel(self, **kwargs: Any) -> ChannelOpening:
        await self._inner.open_channel(**kwargs)
        self._opened.set()
        await asyncio.Event().wait()  # the process is gone; only cancellation ends this
        raise AssertionError("unreachable")


async def test_a_restart_after_the_open_neither_reopens_nor_forwards_twice(
    engine: Engine, nc: Client, stack: JitStack
) -> None:
    opened = asyncio.Event()
    doomed = lsp_executor(stack, "us-doomed", wrap=lambda node: _DieAfterOpen(node, opened))
    doomed_task = await run_executor(doomed)
    reply = await sell(nc, stack, "buy-2")
    sale_id = reply["intent_id"]
    fee = compute_opening_fee(AMOUNT_MSAT, 546_000, 1200)
    assert fee is not None
    await wait_for(lambda: stack.network.interception_enabled(LSP), what="interception")
    payment = await stack.network.send_payment(
        PAYER, payment_request=jit_invoice(stack, "buy-2", fee), max_fee_msat=10**7, timeout_s=5
    )
    await wait_for(opened.is_set, timeout_s=FLOW_TIMEOUT_S, what="the node to open the channel")
    await stop(doomed, doomed_task)
    # The HTLC is still held at the node, the channel exists, nothing was reported.
    assert len(stack.network.intercepted_htlcs(LSP)) == 1
    assert len(funding_txs(stack)) == 1
    assert await event_types(engine, sale_id) == ["JitChannelSold", "JitHtlcIntercepted"]

    executor = lsp_executor(stack, "us-jit-2")
    task = await run_executor(executor)
    try:
        final = await stack.network.wait_payment(PAYER, payment.payment_hash, FLOW_TIMEOUT_S)
        assert final.status == "succeeded"

        async def forwarded() -> bool:
            return "JitPaymentForwarded" in await event_types(engine, sale_id)

        await wait_for(forwarded, timeout_s=FLOW_TIMEOUT_S, what="the forward's report")
        types = await event_types(engine, sale_id)
        assert types.count("JitHtlcIntercepted") == 1  # the replayed HTLC: no second order
        assert types.count("JitPaymentForwarded") == 1
        assert len(funding_txs(stack)) == 1  # one channel for one sale
        [wallet_channel] = stack.network.channels_of(WALLET)
        assert wallet_channel.local_balance_msat == AMOUNT_MSAT - fee  # forwarded once
        payer_attempts = [
            p for p in stack.network.payments() if p.payment_hash == payment.payment_hash
        ]
        assert len(payer_attempts) == 1
    finally:
        await stop(executor, task)
    stack.network.check_invariants()


async def test_first_payment_to_a_new_payee_through_a_jit_channel(
    engine: Engine, nc: Client, stack: JitStack
) -> None:
    """The payee's wallet (an lnd node with no channel, its LSP our us-lnd) writes its invoice
    through its own API, as `corridor sim invoice --node` asks it: it buys a JIT channel over
    LSPS2 first. Corridor pays the invoice as an ordinary intent from eu-lnd (corridor
    eu-asia). The fee deducted is compute_opening_fee's, within policy; all of it is events."""
    stack.network.set_wallet_lsp(WALLET, LSP)
    lsp = lsp_executor(stack, "us-jit")
    payer = lsp_executor(stack, "eu-1", name=PAYER, jit=False)
    lsp_task, payer_task = await run_executor(lsp), await run_executor(payer)
    wallet = LndAdapter.from_uri(stack.wallet_endpoint, timeout_s=15)
    try:
        invoice = await wallet.create_invoice(FIRST_PAY_MSAT, "first pay", 3600)
        decoded = stack.network.decode(invoice.payment_request)
        assert decoded.min_final_cltv_expiry == 20  # bLIP-52's +2
        fee = compute_opening_fee(FIRST_PAY_MSAT, 20_000, 1200)
        assert fee == 20_000
        msg = await nc.request(
            "corridor.api.v1.intents.submit.alice",
            json.dumps(
                submit(
                    key="first-pay", amount_msat=FIRST_PAY_MSAT, max_fee_msat=10_000,
                    corridor="eu-asia", payment_request=invoice.payment_request,
                    destination=None,
                )
            ).encode(),
            timeout=10,
        )  # fmt: skip
        reply = json.loads(msg.data)
        assert reply["ok"], reply
        intent_id = reply["intent_id"]

        async def succeeded() -> bool:
            view = await engine.processor.view(intent_id)
            return getattr(view, "state", None) == "settled"

        await wait_for(succeeded, timeout_s=FLOW_TIMEOUT_S, what="the intent to settle")
        [channel] = stack.network.channels_of(WALLET)
        assert channel.local_balance_msat == FIRST_PAY_MSAT - fee  # the payee's balance
        scid = channel.channel_id
        assert channel.private and channel.zero_conf and scid.startswith("16000000x")
        sales = [
            e.stream_id
            for e in await engine.store.read_all(after_position=0, limit=10_000)
            if e.type == "JitChannelSold"
        ]
        [sale_id] = sales

        async def forwarded() -> bool:
            return "JitPaymentForwarded" in await event_types(engine, sale_id)

        await wait_for(forwarded, timeout_s=FLOW_TIMEOUT_S, what="the forward's report")
        history = await engine.store.read_stream(sale_id)
        assert [e.type for e in history] == [
            "JitChannelSold", "JitHtlcIntercepted", "JitChannelOpened", "JitPaymentForwarded",
        ]  # fmt: skip
        assert history[0].payload["client_pubkey"] == stack.network.node(WALLET).pubkey
        assert history[3].payload["opening_fee_msat"] == fee
        # Within policy: the cap of 5 % and 50k sat (jit_fee_max_ppm, jit_fee_max_msat).
        assert fee * 1_000_000 <= 50_000 * FIRST_PAY_MSAT and fee <= 50_000_000
    finally:
        await wallet.close()
        await stop(lsp, lsp_task)
        await stop(payer, payer_task)
    stack.network.check_invariants()


async def test_the_same_sale_with_a_cln_lsp(engine: Engine, nc: Client, stack: JitStack) -> None:
    """Our CLN node as the LSP: its executor reads held HTLCs from Corridor's htlc_accepted
    plugin, opens with mindepth 0 and forwards with the plugin's continue (payload amount,
    extra_fee TLV, forward_to the new channel)."""
    executor = lsp_executor(stack, "us-cln-jit", name=CLN_LSP)
    task = await run_executor(executor)
    try:
        reply = await sell(nc, stack, "buy-cln", lsp=CLN_LSP)
        assert reply["ok"] and reply["state"] == "sold", reply
        sale_id = reply["intent_id"]
        fee = compute_opening_fee(AMOUNT_MSAT, 546_000, 1200)
        assert fee is not None
        await wait_for(lambda: stack.network.interception_enabled(CLN_LSP), what="interception")
        payment = await stack.network.send_payment(
            PAYER, payment_request=jit_invoice(stack, "buy-cln", fee, lsp=CLN_LSP),
            max_fee_msat=10**7, timeout_s=5,
        )  # fmt: skip
        final = await stack.network.wait_payment(PAYER, payment.payment_hash, FLOW_TIMEOUT_S)
        assert final.status == "succeeded"

        async def forwarded() -> bool:
            return "JitPaymentForwarded" in await event_types(engine, sale_id)

        await wait_for(forwarded, timeout_s=FLOW_TIMEOUT_S, what="the forward's report")
        [wallet_channel] = stack.network.channels_of(WALLET)
        assert wallet_channel.local_balance_msat == AMOUNT_MSAT - fee
        assert wallet_channel.peer == CLN_LSP and wallet_channel.zero_conf
        assert len(funding_txs(stack)) == 1
    finally:
        await stop(executor, task)
    stack.network.check_invariants()
