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
from services.domain.jit_channels.fees import compute_opening_fee
from services.engine.ids import jit_sale_id_for, jit_scid_for
from services.engine.jit_planning import DEFAULT_JIT_POLICY
from services.executor import Executor
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.port import ChannelOpening, NodePort
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimRouteHint
from services.sim.topology import NodeSpec, default_topology
from tests.conftest import wait_for
from tests.integration.test_executor import FAST, SEED, signing_engine

LSP = "us-lnd"
PAYER = "eu-lnd"
WALLET = "wallet-01"
AMOUNT_MSAT = 5_000_000_000  # 5M sat: the proportional fee (6000 sat) is above the minimum
FLOW_TIMEOUT_S = 20.0
NOW_MS_FAR = 4_102_444_800_000  # 2100-01-01: valid_until in the future, whatever the clock


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


@contextlib.asynccontextmanager
async def jit_stack(tmp_path: Path, nats_url: str) -> AsyncIterator[JitStack]:
    topology = default_topology()
    wallet = NodeSpec(name=WALLET, role="merchant", implementation="lnd", region="asia")
    topology = msgspec.structs.replace(topology, nodes=(*topology.nodes, wallet))
    network = SimNetwork.from_topology(topology, seed=SEED)
    servers: list[LndNodeServer] = []
    for name in (LSP, PAYER):
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
    ]
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    try:
        yield JitStack(network=network, state_dir=tmp_path, nats_url=nats_url)
    finally:
        for server in servers:
            await server.stop()
        await network.aclose()


def lsp_executor(stack: JitStack, executor_id: str, wrap: Any = None) -> Executor:
    resolved = resolve_node(f"sim://{LSP}", region="us", state_dir=stack.state_dir)
    node = adapter_for(resolved.uri)
    return Executor(
        nats_url=stack.nats_url, region="us", node_name=resolved.name,
        node=wrap(node) if wrap else node, executor_id=executor_id,
        secret=load_or_create_secret(stack.state_dir / SECRET_FILE_NAME), limits=FAST,
        verifier=FileKeyring(keys_dir(stack.state_dir) / PUBLIC_KEYS_FILE), jit_lsp=True,
    )  # fmt: skip


async def sell(nc: Client, stack: JitStack, request_id: str) -> dict[str, Any]:
    command = {
        "type": "SellJitChannel", "version": 1, "region": "us", "node": LSP,
        "client_pubkey": stack.network.node(WALLET).pubkey, "request_id": request_id,
        "params": params(),
    }  # fmt: skip
    msg = await nc.request(
        f"corridor.api.v1.intents.jit_sell.{LSP}", json.dumps(command).encode(), timeout=10
    )
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


def jit_invoice(stack: JitStack, request_id: str, fee_msat: int) -> str:
    network = stack.network
    scid = jit_scid_for(LSP, network.node(WALLET).pubkey, request_id)
    hint = SimRouteHint(
        pubkey=network.node(LSP).pubkey, short_channel_id=scid,
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
