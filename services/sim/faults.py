"""Fault controls: the scriptable ways tests and the CLI make the network misbehave.

Rules (delay, drop, fail-route, slow) are plain state the payment engine consults; actions
(offline, drain, release, expire) are forwarded to the engine so they take effect at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.lightning.port import FailureReason

# A fault that parks HTLCs or RPCs for longer than a day is a scripting mistake.
FAULT_SECONDS_MAX = 86_400.0


class FaultHost(Protocol):
    def require_node(self, name: str) -> None: ...
    def require_channel(self, channel_id: str) -> None: ...
    def set_node_online(self, name: str, online: bool) -> None: ...
    def drain_channel(self, channel_id: str, toward: str) -> None: ...
    def release_dropped(self) -> int: ...
    def expire_invoice(self, payment_hash: str) -> int: ...
    def offline_nodes(self) -> list[str]: ...


@dataclass(slots=True)
class DropRule:
    node: str | None
    remaining: int
    timeout_s: float | None  # after this, a dropped HTLC fails with TIMEOUT


@dataclass(frozen=True, slots=True)
class FailRule:
    node: str | None
    channel_id: str | None
    reason: FailureReason


class SimFaults:
    def __init__(self, host: FaultHost) -> None:
        self._host = host
        self.delays: dict[str | None, float] = {}
        self.drops: list[DropRule] = []
        self.fail_rules: list[FailRule] = []
        self.latency_s: dict[str, float] = {}

    def set_offline(self, node: str, offline: bool = True) -> None:
        """An offline node refuses RPCs, and its channels are inactive."""
        self._host.require_node(node)
        self._host.set_node_online(node, not offline)

    def drain_channel(self, channel_id: str, toward: str) -> None:
        """Move all unlocked liquidity of the channel to ``toward``'s side."""
        self._host.require_channel(channel_id)
        self._host.require_node(toward)
        self._host.drain_channel(channel_id, toward)

    def delay_resolution(self, seconds: float, node: str | None = None) -> None:
        """Hold every later HTLC resolution whose route touches ``node`` (or all) ``seconds``."""
        _check_seconds(seconds)
        if node is not None:
            self._host.require_node(node)
        self.delays[node] = seconds

    def drop_resolution(
        self, node: str | None = None, count: int = 1, timeout_s: float | None = None
    ) -> None:
        """Park the next ``count`` HTLC resolutions touching ``node`` (or any).

        A parked HTLC stays in flight until ``release_dropped()``; with ``timeout_s`` it fails
        with reason TIMEOUT that long after it was parked (an HTLC timing out).
        """
        if count <= 0:
            raise ValueError("count must be positive")
        if timeout_s is not None:
            _check_seconds(timeout_s)
        if node is not None:
            self._host.require_node(node)
        self.drops.append(DropRule(node=node, remaining=count, timeout_s=timeout_s))

    def release_dropped(self) -> int:
        """Let every parked HTLC resolve normally; returns how many were released."""
        return self._host.release_dropped()

    def fail_route(
        self,
        node: str | None = None,
        channel_id: str | None = None,
        reason: FailureReason = FailureReason.NO_ROUTE,
    ) -> None:
        """Make ``node`` (or ``channel_id``) refuse to forward.

        Senders route around it like real nodes do; a payment that cannot avoid it fails with
        ``reason``. A destination node that refuses fails the payment with ``reason`` directly.
        """
        if (node is None) == (channel_id is None):
            raise ValueError("give exactly one of node or channel_id")
        if node is not None:
            self._host.require_node(node)
        if channel_id is not None:
            self._host.require_channel(channel_id)
        self.fail_rules.append(FailRule(node=node, channel_id=channel_id, reason=reason))

    def expire_invoice(self, payment_hash: str) -> None:
        """Make the invoice count as expired for payee and senders alike."""
        if self._host.expire_invoice(payment_hash) == 0:
            raise KeyError(f"no open invoice with payment hash {payment_hash}")

    def slow_node(self, node: str, seconds: float) -> None:
        """Add ``seconds`` of latency to every RPC answer of ``node`` (0 removes it)."""
        _check_seconds(seconds)
        self._host.require_node(node)
        if seconds:
            self.latency_s[node] = seconds
        else:
            self.latency_s.pop(node, None)

    def clear(self) -> None:
        """Back to normal: nodes online, rules removed, parked HTLCs released."""
        self.delays.clear()
        self.drops.clear()
        self.fail_rules.clear()
        self.latency_s.clear()
        self._host.release_dropped()
        for node in self._host.offline_nodes():
            self._host.set_node_online(node, True)

    # Queries used by the payment engine.

    def delay_for(self, route_nodes: tuple[str, ...]) -> float:
        delays = [s for node, s in self.delays.items() if node is None or node in route_nodes]
        return max(delays, default=0.0)

    def take_drop(self, route_nodes: tuple[str, ...]) -> DropRule | None:
        for rule in self.drops:
            if rule.node is None or rule.node in route_nodes:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self.drops.remove(rule)
                return rule
        return None

    def refusal(self, *, node: str | None = None, channel_id: str | None = None) -> FailRule | None:
        for rule in self.fail_rules:
            if (node is not None and rule.node == node) or (
                channel_id is not None and rule.channel_id == channel_id
            ):
                return rule
        return None

    def latency_for(self, node: str) -> float:
        return self.latency_s.get(node, 0.0)


def _check_seconds(seconds: float) -> None:
    if not 0 <= seconds <= FAULT_SECONDS_MAX:
        raise ValueError(f"seconds must be within [0, {FAULT_SECONDS_MAX}]")
