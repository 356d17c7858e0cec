"""Corridor routing as the aggregate sees it: a region and node, why, and what was refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import msgspec

from schemas.events import RejectedCandidate


class RouteCandidate(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    node: str
    # Keysend needs a caller-chosen preimage (so a retry reuses the hash); not every node
    # implementation accepts one (Core Lightning's keysend picks its own).
    keysend: bool = True


class RouteDecision(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    node: str
    reason: str
    rejected: tuple[RejectedCandidate, ...] = ()


# A candidate is named by its (region, node) pair: node names are only unique within a region.
NodeKey = tuple[str, str]


class NodeHealth(msgspec.Struct, frozen=True, kw_only=True):
    healthy: bool
    outbound_msat: int | None = None


class Router(Protocol):
    def choose(
        self,
        corridor: str,
        *,
        amount_msat: int,
        exclude_nodes: frozenset[NodeKey],
        keysend: bool = False,
    ) -> RouteDecision | tuple[RejectedCandidate, ...]:
        """A decision, or every rejected candidate (in corridor order) when none is usable.

        ``exclude_nodes`` are the nodes that proved they did not pay this intent: only they
        are skipped, so another node in the same region may still be chosen (ADR 0014).
        """
        ...

    def choose_in_region(
        self, region: str, *, amount_msat: int
    ) -> RouteDecision | tuple[RejectedCandidate, ...]:
        """A node of ``region`` to receive on (ADR 0220): the first usable one in corridor
        order, or every refused node of the region."""
        ...


class CorridorTable(msgspec.Struct, frozen=True):
    """Corridor name -> ordered candidates (first is preferred)."""

    corridors: Mapping[str, tuple[RouteCandidate, ...]]


class OrderedRouter:
    """Takes the first candidate that is not excluded and, when health is known, is healthy
    with enough outbound liquidity. Health snapshots arrive as data, never fetched here."""

    def __init__(
        self,
        table: CorridorTable,
        health: Mapping[tuple[str, str], NodeHealth] | None = None,
        *,
        blocked: frozenset[NodeKey] = frozenset(),
    ) -> None:
        self._table = table
        self._health = health or {}
        # Nodes whose reconciliation breaker is tripped (ADR 0151): no new sends there.
        self._blocked = blocked

    def choose(
        self,
        corridor: str,
        *,
        amount_msat: int,
        exclude_nodes: frozenset[NodeKey],
        keysend: bool = False,
    ) -> RouteDecision | tuple[RejectedCandidate, ...]:
        rejected: list[RejectedCandidate] = []
        candidates = self._table.corridors.get(corridor, ())
        for candidate in candidates:
            reason = self._refusal(candidate, amount_msat, exclude_nodes, keysend)
            if reason is None:
                position = "first" if not rejected else f"after {len(rejected)} rejected"
                return RouteDecision(
                    region=candidate.region,
                    node=candidate.node,
                    reason=f"{position} candidate for corridor {corridor}",
                    rejected=tuple(rejected),
                )
            rejected.append(
                RejectedCandidate(region=candidate.region, node=candidate.node, reason=reason)
            )
        return tuple(rejected)

    def choose_in_region(
        self, region: str, *, amount_msat: int
    ) -> RouteDecision | tuple[RejectedCandidate, ...]:
        # Receiving needs no outbound liquidity: a node is usable when it is healthy and not
        # behind a tripped breaker, whatever it could send.
        rejected: list[RejectedCandidate] = []
        seen: set[NodeKey] = set()
        for name in sorted(self._table.corridors):
            for candidate in self._table.corridors[name]:
                key = (candidate.region, candidate.node)
                if candidate.region != region or key in seen:
                    continue
                seen.add(key)
                health = self._health.get(key)
                if key in self._blocked:
                    reason = "reconciliation_breaker"
                elif health is not None and not health.healthy:
                    reason = "unhealthy"
                else:
                    return RouteDecision(
                        region=candidate.region, node=candidate.node,
                        reason=f"receiving node of region {region}", rejected=tuple(rejected),
                    )  # fmt: skip
                rejected.append(
                    RejectedCandidate(region=candidate.region, node=candidate.node, reason=reason)
                )
        return tuple(rejected)

    def _refusal(
        self,
        candidate: RouteCandidate,
        amount_msat: int,
        exclude_nodes: frozenset[NodeKey],
        keysend: bool,
    ) -> str | None:
        if (candidate.region, candidate.node) in exclude_nodes:
            return "already_tried"
        if keysend and not candidate.keysend:
            return "keysend_unsupported"
        if (candidate.region, candidate.node) in self._blocked:
            return "reconciliation_breaker"
        health = self._health.get((candidate.region, candidate.node))
        if health is None:
            return None
        if not health.healthy:
            return "unhealthy"
        if health.outbound_msat is not None and health.outbound_msat < amount_msat:
            return "insufficient_liquidity"
        return None
