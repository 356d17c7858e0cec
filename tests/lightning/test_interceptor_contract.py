"""The InterceptorPort contract, one body over every adapter that implements it: the
simulator's own API (SimNodeAdapter), lnd's gRPC (LndAdapter against the simulated lnd's
HtlcInterceptor) and Core Lightning through Corridor's htlc_accepted plugin (ClnAdapter
against the simulated lightningd running the plugin; every hook call and answer checked
against cln/schemas/hook/htlc_accepted.json) (ADR 0260)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.lightning.cln import ClnAdapter
from services.lightning.interceptor_port import (
    FailHtlc,
    HeldHtlc,
    InterceptorPort,
    ResumeHtlc,
    SettleHtlc,
)
from services.lightning.lnd import LndAdapter
from services.lightning.port import NodeError, NodePort
from services.lightning.sim_direct import SimNodeAdapter
from services.sim.cln_plugins import corridor_cln_plugins
from services.sim.cln_server import start_cln_node_server
from services.sim.lnd_server import start_lnd_node_server
from services.sim.network import SimNetwork
from tests.lightning.conftest import hook_schema_errors, request_schema_errors, short_socket_dir
from tests.lightning.lnd_harness import wait_until
from tests.sim.test_interception import AMOUNT_MSAT, FEE_MSAT, JIT_SCID, jit_invoice, jit_topology

WAIT_S = 5.0


@dataclass
class LspEnv:
    network: SimNetwork
    adapter: NodePort
    port: InterceptorPort

    async def pay(self) -> str:
        payment = await self.network.send_payment(
            "payer", payment_request=jit_invoice(self.network), max_fee_msat=10_000, timeout_s=5
        )
        return payment.payment_hash


@contextlib.asynccontextmanager
async def sim_env(tmp_path: Path) -> AsyncIterator[LspEnv]:
    network = SimNetwork.from_topology(jit_topology(), seed=9)
    adapter = SimNodeAdapter(network, "lsp")
    try:
        yield LspEnv(network, adapter, adapter)
    finally:
        await adapter.close()
        await network.aclose()


@contextlib.asynccontextmanager
async def lnd_env(tmp_path: Path) -> AsyncIterator[LspEnv]:
    network = SimNetwork.from_topology(jit_topology(), seed=9)
    server = await start_lnd_node_server(network, "lsp", state_dir=tmp_path)
    adapter = LndAdapter.from_uri(server.endpoint, timeout_s=WAIT_S)
    try:
        yield LspEnv(network, adapter, adapter)
    finally:
        await adapter.close()
        await server.stop()
        await network.aclose()


@contextlib.asynccontextmanager
async def cln_env(tmp_path: Path) -> AsyncIterator[LspEnv]:
    network = SimNetwork.from_topology(jit_topology("cln"), seed=9)
    async with short_socket_dir() as sockets:
        server = await start_cln_node_server(
            network, "lsp", socket_path=sockets / "lsp.sock", plugins=corridor_cln_plugins(),
            hook_check=hook_schema_errors,
        )  # fmt: skip
        adapter = ClnAdapter(server.socket_path, timeout_s=WAIT_S)
        try:
            yield LspEnv(network, adapter, adapter)
            calls = [name for name, _, _ in server.plugins.hook_log]
            assert "htlc_accepted" in calls
            assert not server.plugins.errors, server.plugins.errors
            assert not request_schema_errors(server), request_schema_errors(server)
        finally:
            await adapter.close()
            await server.stop()
            await network.aclose()


ENVS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[LspEnv]]] = {
    "sim": sim_env,
    "lnd": lnd_env,
    "cln": cln_env,
}


@pytest.fixture(params=sorted(ENVS))
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LspEnv]:
    async with ENVS[request.param](tmp_path) as built:
        yield built


class Intercepting:
    """Reads ``held_htlcs`` in a task, as the LSPS2 service does."""

    def __init__(self, port: InterceptorPort) -> None:
        self.seen: list[HeldHtlc] = []
        self._task = asyncio.ensure_future(self._read(port))

    async def _read(self, port: InterceptorPort) -> None:
        async for htlc in port.held_htlcs():
            self.seen.append(htlc)

    async def next(self, count: int = 1) -> HeldHtlc:
        await wait_until(lambda: len(self.seen) >= count, timeout_s=WAIT_S)
        return self.seen[count - 1]

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, NodeError):
            await self._task


async def test_held_then_zero_conf_open_then_resumed_less_the_fee(env: LspEnv) -> None:
    reader = Intercepting(env.port)
    try:
        await wait_until(lambda: env.network.interception_enabled("lsp"), timeout_s=WAIT_S)
        payment_hash = await env.pay()
        held = await reader.next()
        assert (held.payment_hash, held.outgoing_scid) == (payment_hash, JIT_SCID)
        assert held.outgoing_amount_msat == AMOUNT_MSAT
        # lnd fails a held HTLC itself before its expiry; lightningd has no such height (0).
        assert 0 <= held.auto_fail_height < held.incoming_expiry
        assert held.outgoing_expiry < held.incoming_expiry
        await env.adapter.open_channel(
            peer_pubkey=env.network.node("wallet").pubkey,
            local_amount_msat=100_000_000,
            sat_per_vbyte=2,
            zero_conf=True,
            private=True,
        )
        channels = await env.adapter.list_channels()
        assert [c.active for c in channels if c.peer_pubkey == env.network.node("wallet").pubkey]
        await env.port.resolve_htlc(
            held,
            ResumeHtlc(
                out_amount_msat=AMOUNT_MSAT - FEE_MSAT, extra_fee_msat=FEE_MSAT,
                next_peer_pubkey=env.network.node("wallet").pubkey,
            ),
        )  # fmt: skip
        final = await env.network.wait_payment("payer", payment_hash, WAIT_S)
        assert final.status == "succeeded"
        [wallet] = env.network.channels_of("wallet")
        assert wallet.local_balance_msat == AMOUNT_MSAT - FEE_MSAT
    finally:
        await reader.stop()
    env.network.check_invariants()


async def test_a_reconnecting_reader_is_offered_the_held_htlc_again(env: LspEnv) -> None:
    first = Intercepting(env.port)
    await wait_until(lambda: env.network.interception_enabled("lsp"), timeout_s=WAIT_S)
    payment_hash = await env.pay()
    held = await first.next()
    await first.stop()
    second = Intercepting(env.port)
    try:
        again = await second.next()
        assert again == held  # same circuit key, same HTLC: the caller must be idempotent
        await env.port.resolve_htlc(again, FailHtlc())
        final = await env.network.wait_payment("payer", payment_hash, WAIT_S)
        assert final.status == "failed"
    finally:
        await second.stop()
    assert env.network.intercepted_htlcs("lsp") == []


async def test_settle_needs_the_right_preimage(env: LspEnv) -> None:
    reader = Intercepting(env.port)
    try:
        await wait_until(lambda: env.network.interception_enabled("lsp"), timeout_s=WAIT_S)
        payment_hash = await env.pay()
        held = await reader.next()
        invoice = env.network.lookup_invoice("wallet", payment_hash)
        assert invoice is not None
        await env.port.resolve_htlc(held, SettleHtlc(preimage=invoice.preimage))
        final = await env.network.wait_payment("payer", payment_hash, WAIT_S)
        assert final.status == "succeeded"
    finally:
        await reader.stop()
