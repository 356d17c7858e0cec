"""A payee's wallet and our region's node, as onboarding sees them (ADR 0271).

On the simulated network the payee's wallet is a node of its own, added to the running
network through the sim control socket with no channels: it holds its own keys, we only learn
its public key. A wallet outside the simulator is given by its node key. The wallet's node
name is derived from the payee id, never from the person's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from schemas import limits
from services.cli.errors import Unreachable, UsageError

# The sim answers a control call within this; a slower one is a stuck simulator.
CONTROL_TIMEOUT_S: Final = 10.0
_PUBKEY: Final = re.compile(limits.NODE_PUBKEY_PATTERN)


def wallet_node_name(payee_id: str) -> str:
    """``wallet-`` and 12 hex digits of the payee's UUID: short enough for a socket path."""
    return "wallet-" + payee_id.removeprefix("payee-").replace("-", "")[:12]


@dataclass(frozen=True)
class Wallet:
    pubkey: str
    node: str | None  # the simulated node's name; None for a wallet outside the simulator
    implementation: str | None


@dataclass(frozen=True)
class RegionNode:
    name: str
    pubkey: str
    endpoint: str

    def connection(self) -> dict[str, str]:
        """What the payee's wallet connects to: our node's key, and ``key@host:port`` where
        the node has a network address (the simulated lnd's; a CLN socket has none)."""
        shown = {"node": self.name, "pubkey": self.pubkey}
        match = re.match(r"^lnd://([^/?]+)", self.endpoint)
        if match:
            shown["uri"] = f"{self.pubkey}@{match[1]}"
        return shown


def outside_wallet(pubkey: str) -> Wallet:
    if not _PUBKEY.match(pubkey):
        raise UsageError("--wallet-pubkey: a compressed node key, 66 hex digits")
    return Wallet(pubkey=pubkey, node=None, implementation=None)


class SimNetworkAccess:
    """The running simulator's control socket, if the stack has one."""

    def __init__(self, control: Path | None) -> None:
        self._control = control

    @classmethod
    def of(cls, state_dir: Path | None) -> SimNetworkAccess:
        from services.endpoints import find_stack

        control = find_stack(state_dir).raw.get("sim_control")
        return cls(Path(control) if control else None)

    def __bool__(self) -> bool:
        return self._control is not None

    async def _call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        from services.sim.jsonrpc import RpcFailure, call_unix

        if self._control is None:
            raise UsageError("no simulator in this stack: give the wallet's --wallet-pubkey")
        try:
            return await call_unix(self._control, method, params or {}, timeout_s=CONTROL_TIMEOUT_S)
        except RpcFailure as exc:
            raise UsageError(f"the simulator refused {method}: {exc.message}") from None
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"simulator not reachable ({type(exc).__name__})") from None

    async def wallet_for(
        self, payee_id: str, *, implementation: str, lsp: str | None = None
    ) -> Wallet:
        """The payee's simulated wallet node, added now, or found if an earlier onboarding
        with the same key added it (so a retry adds no second node). With ``lsp`` the wallet
        buys a JIT channel from that node of ours when it has no inbound (ADR 0261)."""
        name = wallet_node_name(payee_id)
        nodes = await self._call("nodes")
        node = next((n for n in nodes if n["name"] == name), None)
        if node is None:
            params = {"name": name, "implementation": implementation}
            node = await self._call("add_node", params | ({"lsp": lsp} if lsp else {}))
        return Wallet(pubkey=node["pubkey"], node=name, implementation=node["implementation"])

    async def region_node(self, region: str) -> RegionNode | None:
        """Our node in ``region`` that opens the inbound channel: its lnd (the corridors' first
        choice, ``settings.DEFAULT_CORRIDORS``), else the first by name."""
        if self._control is None:
            return None
        ours = sorted(
            (n for n in await self._call("nodes") if n["role"] == "ours" and n["region"] == region),
            key=lambda n: (n["implementation"] != "lnd", n["name"]),
        )
        if not ours:
            return None
        return RegionNode(
            name=ours[0]["name"], pubkey=ours[0]["pubkey"], endpoint=ours[0]["endpoint"]
        )
