"""The ``adapter_env`` fixture: one NodePort adapter for an 'ours' node, plus what tests need.

Each kind of environment is a factory registered in ``ENV_FACTORIES`` (simulated nodes) or
``REAL_ENV_FACTORIES`` (real nodes, skipped unless their environment variables are set). The
contract suite (test_adapter_contract.py) runs against every simulated kind; test_real_nodes.py
re-runs the same bodies against the real kinds. CLN runs twice: paying with ``xpay`` (the
default) and with ``pay`` (the opt-in), and every request the adapter sent to the simulated
CLN node is checked against CLN's request schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.lightning.cln import ClnAdapter, PayCommand
from services.lightning.cln_plugin import CUSTOMMSG_PLUGIN
from services.lightning.lnd import LndAdapter
from services.lightning.port import Invoice, NodePort
from services.lightning.sim_direct import SimNodeAdapter
from services.sim.cln_server import ClnNodeServer, start_cln_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimPayment
from services.sim.topology import ChannelSpec, NodeSpec, PolicySpec, Topology
from tests.lightning.lnd_harness import served_lnd_node
from tests.sim.cln_schema import schema_errors, schemas_available

SEED = 23
CAPACITY_MSAT = 2_000_000_000  # 0.02 BTC per channel
OUR_BALANCE_MSAT = 1_500_000_000
MAX_FEE_MSAT = 50_000
ADAPTER_TIMEOUT_S = 5.0
# Generous for loopback; a test that waits this long has found a bug.
CONDITION_TIMEOUT_S = 5.0


def contract_topology(our_implementation: str) -> Topology:
    """alice and dave (ours) -> hub -> bob (lnd) | carol (cln). alice is the adapter's node."""
    hub = PolicySpec(fee_base_msat=1000, fee_ppm=100, cltv_delta=40)
    edge = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)

    def ours(name: str) -> ChannelSpec:
        return ChannelSpec(
            a=name,
            b="hub",
            capacity_msat=CAPACITY_MSAT,
            a_balance_msat=OUR_BALANCE_MSAT,
            a_policy=edge,
            b_policy=hub,
        )

    return Topology(
        nodes=(
            NodeSpec(name="alice", role="ours", implementation=our_implementation, region="us"),  # type: ignore[arg-type]
            NodeSpec(name="dave", role="ours", implementation="lnd", region="eu"),
            NodeSpec(name="hub", role="hub", implementation="lnd"),
            NodeSpec(name="bob", role="merchant", implementation="lnd", region="us"),
            NodeSpec(name="carol", role="merchant", implementation="cln", region="eu"),
        ),
        channels=(
            ours("alice"),
            ours("dave"),
            ChannelSpec(a="hub", b="bob", capacity_msat=CAPACITY_MSAT, a_policy=hub, b_policy=edge),
            ChannelSpec(
                a="hub", b="carol", capacity_msat=CAPACITY_MSAT, a_policy=hub, b_policy=edge
            ),
        ),
    )


async def wait_until(
    condition: Callable[[], bool], *, timeout_s: float = CONDITION_TIMEOUT_S
) -> None:
    """Wait for ``condition`` to hold, yielding to the loop in between; fail at the deadline."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.005)


@dataclass
class AdapterEnv:
    """What a contract test gets: the adapter, and (simulated kinds) the network behind it."""

    kind: str
    adapter: NodePort
    node: str = "alice"
    network: SimNetwork | None = None
    # Waits until the node's API reflects an offline/online switch (server stopped listening).
    _api_reflects: Callable[[bool], bool] = field(default=lambda offline: True)
    _payee: NodePort | None = None

    @property
    def sim(self) -> SimNetwork:
        """The simulated network; skips the test on real nodes (no fault controls there)."""
        if self.network is None:
            pytest.skip("needs the simulator's fault controls and ground truth")
        return self.network

    async def merchant_invoice(
        self, amount_msat: int | None = 100_000, *, expiry_s: int = 3600, payee: str = "bob"
    ) -> Invoice:
        """An invoice from a merchant node, for the adapter's node to pay."""
        if self.network is not None:
            created = self.network.create_invoice(payee, amount_msat, "contract", expiry_s)
            assert created.bolt11 is not None
            return Invoice(
                payment_request=created.bolt11,
                payment_hash=created.payment_hash,
                amount_msat=created.amount_msat,
                expiry_s=created.expiry_s,
                created_at_s=created.created_at_s,
            )
        if self._payee is None:
            pytest.skip("set a payee node (CORRIDOR_PAYEE_CLN_RPC) to run payment cases")
        return await self._payee.create_invoice(amount_msat, "contract", expiry_s)

    def attempts(self, payment_hash: str) -> list[SimPayment]:
        """Ground truth: every attempt the network saw for this hash, from any node."""
        return [p for p in self.sim.payments() if p.payment_hash == payment_hash]

    async def set_offline(self, offline: bool) -> None:
        self.sim.faults.set_offline(self.node, offline=offline)
        await wait_until(lambda: self._api_reflects(offline))


@contextlib.asynccontextmanager
async def short_socket_dir() -> AsyncIterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="cz", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def hook_schema_errors(hook: str, part: str, document: Any) -> list[str]:
    """A simulated lightningd's plugin hook call or answer against cln/schemas/hook/."""
    if not schemas_available():
        return []
    return schema_errors(f"hook/{hook}", document, part=part)


# Our CLN nodes run Corridor's plugin (ADR 0250), as lightningd would with ``plugin=``.
CORRIDOR_PLUGINS = ((sys.executable, str(CUSTOMMSG_PLUGIN)),)


def request_schema_errors(server: ClnNodeServer) -> list[tuple[str, str]]:
    """Every logged request that CLN's request schema for its method refuses."""
    if not schemas_available():
        return []
    return [
        (method, error)
        for method, params in server.requests
        for error in schema_errors(method, params, part="request")
    ]


@contextlib.asynccontextmanager
async def cln_env(tmp_path: Path, *, pay_command: PayCommand) -> AsyncIterator[AdapterEnv]:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    async with short_socket_dir() as sockets:
        server: ClnNodeServer = await start_cln_node_server(
            network,
            "alice",
            socket_path=sockets / "alice.sock",
            plugins=CORRIDOR_PLUGINS,
            hook_check=hook_schema_errors,
        )
        adapter = ClnAdapter(
            server.socket_path, timeout_s=ADAPTER_TIMEOUT_S, pay_command=pay_command
        )
        try:
            yield AdapterEnv(
                kind=f"cln-{pay_command}",
                adapter=adapter,
                network=network,
                _api_reflects=lambda offline: server.listening != offline,
            )
            sent = {method for method, _ in server.requests}
            assert not sent & ({"pay", "xpay"} - {pay_command}), sent  # only the chosen command
            assert not request_schema_errors(server), request_schema_errors(server)
            assert not server.plugins.errors, server.plugins.errors
        finally:
            await adapter.close()
            await server.stop()
            await network.aclose()


@contextlib.asynccontextmanager
async def real_cln_env(tmp_path: Path, *, pay_command: PayCommand) -> AsyncIterator[AdapterEnv]:
    rpc_path = os.environ.get("CORRIDOR_CLN_RPC")
    if not rpc_path:
        pytest.skip("set CORRIDOR_CLN_RPC to run the contract against a real CLN node")
    payee_path = os.environ.get("CORRIDOR_PAYEE_CLN_RPC")
    adapter = ClnAdapter(rpc_path, timeout_s=30.0, pay_command=pay_command)
    payee = ClnAdapter(payee_path, timeout_s=30.0) if payee_path else None
    try:
        yield AdapterEnv(kind=f"real-cln-{pay_command}", adapter=adapter, _payee=payee)
    finally:
        await adapter.close()
        if payee is not None:
            await payee.close()


@contextlib.asynccontextmanager
async def lnd_env(tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    network = SimNetwork.from_topology(contract_topology("lnd"), seed=SEED)
    try:
        served = served_lnd_node(network, "alice", tmp_path, timeout_s=ADAPTER_TIMEOUT_S)
        async with served as (_, adapter):
            # The simulated lnd answers UNAVAILABLE at once when offline: no wait needed.
            yield AdapterEnv(kind="lnd", adapter=adapter, network=network)
    finally:
        await network.aclose()


@contextlib.asynccontextmanager
async def sim_direct_env(tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    """The in-process adapter of the deterministic simulation (ADR 0114): no server at all."""
    network = SimNetwork.from_topology(contract_topology("lnd"), seed=SEED)
    adapter = SimNodeAdapter(network, "alice", timeout_s=ADAPTER_TIMEOUT_S)
    try:
        yield AdapterEnv(kind="sim-direct", adapter=adapter, network=network)
    finally:
        await adapter.close()
        await network.aclose()


@contextlib.asynccontextmanager
async def real_lnd_env(tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    uri = os.environ.get("CORRIDOR_LND_URI")
    if not uri:
        pytest.skip("set CORRIDOR_LND_URI (lnd://host:port?tlscert=..&macaroon=..) to run")
    payee_path = os.environ.get("CORRIDOR_PAYEE_CLN_RPC")
    adapter = LndAdapter.from_uri(uri, timeout_s=30.0)
    payee = ClnAdapter(payee_path, timeout_s=30.0) if payee_path else None
    try:
        yield AdapterEnv(kind="real-lnd", adapter=adapter, _payee=payee)
    finally:
        await adapter.close()
        if payee is not None:
            await payee.close()


EnvFactory = Callable[[Path], contextlib.AbstractAsyncContextManager[AdapterEnv]]
# Simulated kinds run in test_adapter_contract.py: CLN paying with xpay (the default) and with
# pay (the opt-in), LND, and the in-process adapter the deterministic simulation uses.
ENV_FACTORIES: dict[str, EnvFactory] = {
    "cln-xpay": functools.partial(cln_env, pay_command="xpay"),
    "cln-pay": functools.partial(cln_env, pay_command="pay"),
    "lnd": lnd_env,
    "sim-direct": sim_direct_env,
}
# Real kinds run in test_real_nodes.py and skip unless configured.
REAL_ENV_FACTORIES: dict[str, EnvFactory] = {
    "real-cln-xpay": functools.partial(real_cln_env, pay_command="xpay"),
    "real-cln-pay": functools.partial(real_cln_env, pay_command="pay"),
    "real-lnd": real_lnd_env,
}


@pytest.fixture(params=sorted(ENV_FACTORIES))
async def adapter_env(request: Any, tmp_path: Path) -> AsyncIterator[AdapterEnv]:
    async with ENV_FACTORIES[request.param](tmp_path) as env:
        yield env
