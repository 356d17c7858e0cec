"""``SimStack``: a simulated network with every node served over its real API.

CLN nodes get a JSON-RPC unix socket, LND nodes a gRPC server (``lnd_server.py``), and the
sim itself a control socket for faults and ground truth (ADR 0102). ``endpoints()`` is the
document written to ``endpoints.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

import structlog

from services.sim.cln_server import ClnNodeServer, start_cln_node_server
from services.sim.control import ControlServer
from services.sim.errors import TopologyError
from services.sim.jsonrpc import UNIX_PATH_BYTES_MAX
from services.sim.network import HOP_DELAY_S_DEFAULT, SimNetwork
from services.sim.records import SimNode
from services.sim.topology import NodeSpec, Topology, default_topology, load_topology

log = structlog.get_logger(__name__)

CONTROL_SOCKET = "control.sock"
# A served sim mines a block this often, so that channel opens confirm without anyone mining
# by hand; regtest-fast rather than mainnet's ten minutes (ADR 0232).
BLOCK_INTERVAL_S_DEFAULT = 1.0
# Node names become socket file names; this leaves room for them under a short directory.
_NODE_SOCKET_NAME_BYTES_MAX = 40


class SimStack:
    """Build with a topology file (or the default map) and a seed; ``start()``, ``stop()``."""

    def __init__(
        self,
        *,
        state_dir: Path,
        topology_path: Path | None = None,
        seed: int = 1,
        topology: Topology | None = None,
        hop_delay_s: float = HOP_DELAY_S_DEFAULT,
        lnd_host: str = "127.0.0.1",
        block_interval_s: float | None = BLOCK_INTERVAL_S_DEFAULT,
    ) -> None:
        assert block_interval_s is None or block_interval_s > 0, block_interval_s
        if topology is None:
            topology = load_topology(topology_path) if topology_path else default_topology()
        self.network = SimNetwork.from_topology(topology, seed=seed, hop_delay_s=hop_delay_s)
        self.state_dir = state_dir.resolve()
        self._lnd_host = lnd_host
        self._cln: dict[str, ClnNodeServer] = {}
        self._lsps: list[Any] = []  # SimLsp per node of role "lsp"
        self._lnd: dict[str, Any] = {}
        self._control: ControlServer | None = None
        self._socket_dir = self._pick_socket_dir()
        self._block_interval_s = block_interval_s
        self._miner: asyncio.Task[None] | None = None

    def _pick_socket_dir(self) -> Path:
        candidate = self.state_dir / "sock"
        longest = len(str(candidate / ("x" * _NODE_SOCKET_NAME_BYTES_MAX))) + len(".sock")
        if longest <= UNIX_PATH_BYTES_MAX:
            return candidate
        # AF_UNIX paths are short; a deep state dir gets its sockets in a short temp dir.
        return Path(tempfile.mkdtemp(prefix="corridor-sim-"))

    @property
    def control_path(self) -> Path:
        return self._socket_dir / CONTROL_SOCKET

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            for node in self.network.nodes.values():
                await self._serve(node)
            for node in self.network.nodes.values():
                if node.role == "lsp":
                    from services.sim.lsp import SimLsp

                    lsp = SimLsp(self.network, node.name)
                    await lsp.start()
                    self._lsps.append(lsp)
            self._control = ControlServer(
                self.network, self.control_path, self.describe_nodes, add_node=self.add_node
            )
            await self._control.start()
            if self._block_interval_s is not None:
                self._miner = asyncio.get_running_loop().create_task(
                    self._mine_every(self._block_interval_s), name="sim-miner"
                )
        except BaseException:
            await self.stop()
            raise
        log.info("sim_stack_started", nodes=len(self.network.nodes), state_dir=str(self.state_dir))

    async def _serve(self, node: SimNode) -> None:
        from services.sim.cln_plugins import corridor_cln_plugins
        from services.sim.lnd_server import start_lnd_node_server  # grpc only when serving LND

        if node.implementation == "cln":
            self._cln[node.name] = await start_cln_node_server(
                self.network,
                node.name,
                socket_path=self._socket_dir / f"{node.name}.sock",
                # Our CLN nodes run Corridor's plugin, as production's do (ADR 0250).
                plugins=corridor_cln_plugins() if node.role == "ours" else (),
            )
        else:
            self._lnd[node.name] = await start_lnd_node_server(
                self.network, node.name, host=self._lnd_host, state_dir=self.state_dir / "lnd"
            )

    async def add_node(self, spec: NodeSpec) -> dict[str, Any]:
        """A node joining the running network, served over its real API like the others: a
        payee's wallet (ADR 0271). Its description, as ``describe_nodes`` gives it."""
        if len(spec.name) > _NODE_SOCKET_NAME_BYTES_MAX:
            raise TopologyError(f"node names have at most {_NODE_SOCKET_NAME_BYTES_MAX} bytes")
        node = self.network.add_node(spec)
        await self._serve(node)
        log.info("sim_node_added", node=node.name, implementation=node.implementation)
        return self._describe(node)

    async def _mine_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)  # a clock, not a synchronisation: blocks are periodic
            self.network.mine(1)

    async def stop(self) -> None:
        if self._miner is not None:
            self._miner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._miner
            self._miner = None
        servers: list[Any] = [*self._lsps, *self._cln.values(), *self._lnd.values()]
        if self._control is not None:
            servers.append(self._control)
        for server in servers:
            with contextlib.suppress(Exception):
                await server.stop()
        self._lsps.clear()
        self._cln.clear()
        self._lnd.clear()
        self._control = None
        await self.network.aclose()

    def endpoint_of(self, name: str) -> str:
        if name in self._cln:
            return self._cln[name].endpoint
        return str(self._lnd[name].endpoint)

    def describe_nodes(self) -> list[dict[str, Any]]:
        return [self._describe(node) for node in self.network.nodes.values()]

    def _describe(self, node: SimNode) -> dict[str, Any]:
        return {
            "name": node.name,
            "role": node.role,
            "region": node.region,
            "implementation": node.implementation,
            "endpoint": self.endpoint_of(node.name),
            "pubkey": node.pubkey,
        }

    def endpoints(self) -> dict[str, Any]:
        """The endpoints.json document: ``{"nodes": [...], "sim_control": path}``."""
        return {"nodes": self.describe_nodes(), "sim_control": str(self.control_path)}
