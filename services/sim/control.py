"""The sim control endpoint: JSON-RPC on ``control.sock`` for faults and ground truth.

Same framing as the simulated CLN nodes (``jsonrpc.py``). Methods:
``nodes``, ``channels {node}``, ``payments {origin?, payment_hash?}``, ``fault {kind, ...}``,
``mine {blocks?}`` (answers ``{"height": tip}``),
``add_node {name, implementation?, region?, lsp?}`` (a payee's wallet node joins the running
network with no channels, ADR 0271; with ``lsp`` it buys a JIT channel from that node when it
has no inbound, ADR 0261; answers its entry as ``nodes`` lists it).
Fault kinds and their parameters mirror ``SimFaults``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from services.lightning.port import FailureReason
from services.sim.errors import SimError
from services.sim.jsonrpc import (
    JSONRPC_INVALID_PARAMS,
    JSONRPC_METHOD_NOT_FOUND,
    JsonRpcUnixServer,
    Params,
    RpcFailure,
)
from services.sim.network import SimNetwork
from services.sim.topology import NodeSpec

# Names of nodes added at runtime: socket-file safe and short (the CLN socket's path).
ADDED_NODE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# Error code for a refused fault or lookup (unknown node, bad argument): a user mistake.
SIM_REFUSED = 1


def _fault_actions(network: SimNetwork) -> dict[str, Callable[..., Any]]:
    faults = network.faults
    return {
        "offline": lambda node: faults.set_offline(node, offline=True),
        "online": lambda node: faults.set_offline(node, offline=False),
        "drain": lambda channel_id, toward: faults.drain_channel(channel_id, toward=toward),
        "delay": lambda seconds, node=None: faults.delay_resolution(float(seconds), node=node),
        "drop": lambda node=None, count=1, timeout_s=None: faults.drop_resolution(
            node=node, count=int(count), timeout_s=None if timeout_s is None else float(timeout_s)
        ),
        "release": lambda: faults.release_dropped(),
        "fail-route": lambda node=None, channel_id=None, reason="no_route": faults.fail_route(
            node=node, channel_id=channel_id, reason=FailureReason(reason)
        ),
        "expire-invoice": lambda payment_hash: faults.expire_invoice(payment_hash),
        "slow": lambda node, seconds: faults.slow_node(node, float(seconds)),
        "clear": lambda: faults.clear(),
    }


FAULT_KINDS = (
    "offline", "online", "drain", "delay", "drop", "release", "fail-route",
    "expire-invoice", "slow", "clear",
)  # fmt: skip


class ControlServer:
    def __init__(
        self,
        network: SimNetwork,
        path: Path,
        describe_nodes: Callable[[], list[dict[str, Any]]],
        *,
        add_node: Callable[[NodeSpec], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self._network = network
        self._add_node = add_node
        self._describe_nodes = describe_nodes
        self._faults = _fault_actions(network)
        self._rpc = JsonRpcUnixServer(path, self._handle, name="sim-control")

    @property
    def path(self) -> Path:
        return self._rpc.path

    async def start(self) -> None:
        await self._rpc.start()

    async def stop(self) -> None:
        await self._rpc.stop()

    async def _handle(self, method: str, params: Params) -> Any:
        if not isinstance(params, dict):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "params must be an object")
        try:
            if method == "nodes":
                return self._describe_nodes()
            if method == "channels":
                return msgspec.to_builtins(self._network.channels_of(str(params.get("node"))))
            if method == "payments":
                payments = self._network.payments()
                if params.get("origin") is not None:
                    payments = [p for p in payments if p.origin == params["origin"]]
                if params.get("payment_hash") is not None:
                    payments = [p for p in payments if p.payment_hash == params["payment_hash"]]
                return msgspec.to_builtins(payments)
            if method == "fault":
                return self._fault(params)
            if method == "add_node":
                return await self._added(params)
            if method == "mine":
                height = self._network.mine(int(params.get("blocks", 1)))
                return {"height": height}
        except (SimError, KeyError, ValueError, TypeError) as exc:
            # KeyError quotes its message; SimError subclasses of KeyError print cleanly.
            text = exc.args[0] if type(exc) is KeyError and exc.args else str(exc)
            raise RpcFailure(SIM_REFUSED, str(text)) from None
        raise RpcFailure(JSONRPC_METHOD_NOT_FOUND, f"unknown control method {method!r}")

    async def _added(self, params: dict[str, Any]) -> dict[str, Any]:
        if self._add_node is None:
            raise ValueError("this simulator does not add nodes")
        name = str(params.get("name", ""))
        if not ADDED_NODE_NAME_PATTERN.match(name):
            raise ValueError("name: lower-case letters, digits and '-', at most 40")
        implementation = params.get("implementation", "lnd")
        if implementation not in ("lnd", "cln"):
            raise ValueError("implementation: lnd or cln")
        region = params.get("region")
        spec = NodeSpec(
            name=name, role="wallet", implementation=implementation,
            region=None if region is None else str(region),
        )  # fmt: skip
        lsp = params.get("lsp")
        if lsp is not None:
            self._network.node(str(lsp))  # an unknown LSP is refused before the node is added
        added = await self._add_node(spec)
        if lsp is not None:
            # The wallet's LSP: it buys a JIT channel there when it has no inbound (ADR 0261).
            self._network.set_wallet_lsp(name, str(lsp))
        return added

    def _fault(self, params: dict[str, Any]) -> Any:
        kind = params.get("kind")
        action = self._faults.get(str(kind))
        if action is None:
            raise ValueError(
                f"unknown fault kind {kind!r}; one of {', '.join(sorted(self._faults))}"
            )
        arguments = {k: v for k, v in params.items() if k != "kind" and v is not None}
        result = action(**arguments)
        return {"kind": kind, "result": result}
