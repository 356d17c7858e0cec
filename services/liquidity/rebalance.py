"""Rebalances as intents of their own kind (ADR 0244): the planner's inputs from the liquidity
view and the corridor table, the budget the day has used per source region (read from the
engine's budget streams, ADR 0245), and the ``RequestRebalance`` of one move.

A move from region S to region T is a ``RequestRebalance`` of the planner's caller naming the
source node of S and the target node of T; the engine records it with the planner's
explanation, judges its tier and reserves its whole ``max_fee_msat`` on the day's budget of S
before it dispatches a signed order to S's node. A dry run is requested too, with
``dry_run``: the engine records the proposal (``RebalanceProposed``) and sends nothing
(ADR 0246), so every move's explanation is in the log whether or not it was made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from schemas.events import EventData
from schemas.rebalance_messages import (
    RebalanceBudgetReleased,
    RebalanceBudgetReserved,
    budget_day,
    budget_stream_id,
)
from services.domain.liquidity.circles import ChannelState, CircleNode, CircleProposal
from services.domain.liquidity.planner import NodeState, Proposal, RegionState
from services.domain.rebalance import fold_budget

PURPOSE: Final = "rebalance"
PROPOSAL: Final = "proposal"


def planner_inputs(
    view: Mapping[str, Any], corridors_view: Mapping[str, Any]
) -> tuple[list[RegionState], list[NodeState]]:
    """The view's regions and nodes. Every node of ours in the corridor table may send a move:
    an LND node by keysend (the preimage is ours, ADR 0008, 0202), any other (CLN) by paying
    an invoice the target issues through a receive intent (ADR 0248, ``keysend_nodes``)."""
    ours = {
        (c["region"], c["node"])
        for row in corridors_view.get("corridors", [])
        for c in row.get("candidates", [])
    }
    regions = [
        RegionState(r["region"], r["outbound_msat"], r["inbound_msat"], r["stale"],
                    r.get("hours_until_dry"))
        for r in view["regions"]
    ]  # fmt: skip
    nodes = [
        NodeState(
            region=n["region"], node=n["node"], pubkey=n["node_pubkey"],
            max_sendable_msat=n["max_sendable_msat"], inbound_msat=n["inbound_msat"],
            stale=n["stale"], can_send=(n["region"], n["node"]) in ours,
        )
        for n in view["nodes"]
    ]  # fmt: skip
    return regions, nodes


def keysend_nodes(corridors_view: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(region, node) of the nodes that pay a move by keysend; the others need an invoice."""
    return {
        (c["region"], c["node"])
        for row in corridors_view.get("corridors", [])
        for c in row.get("candidates", [])
        if c.get("keysend")
    }


_BUDGET_EVENTS: Final[dict[str, type[EventData]]] = {
    "RebalanceBudgetReserved": RebalanceBudgetReserved,
    "RebalanceBudgetReleased": RebalanceBudgetReleased,
}


def budget_used_msat(recorded: Iterable[Mapping[str, Any]]) -> int:
    """What a day's budget stream (its ``intents get`` events) has spent or still holds for
    rebalances: settled fees plus every open move's whole ``max_fee_msat``, as the engine judges
    a rebalance. Channel fees on the same stream have their own limit (ADR 0285)."""
    events = [
        msgspec.convert(e["data"], _BUDGET_EVENTS[e["type"]])
        for e in recorded
        if e.get("type") in _BUDGET_EVENTS
    ]
    state = fold_budget(events)
    return 0 if state is None else state.rebalance_used_msat


def budget_streams(regions: Iterable[str], *, now_ms: int) -> dict[str, str]:
    """Region -> today's budget stream id."""
    return {region: budget_stream_id(region, budget_day(now_ms)) for region in regions}


def idempotency_key(proposal: Proposal, *, now_ms: int, round_ms: int, dry_run: bool) -> str:
    """One key per move and planning round: a round re-run after a crash requests the same
    rebalances again and the engine answers with the ones it has (never a second payment).
    A dry run's key is another, so proposing never blocks the move later."""
    kind = PROPOSAL if dry_run else PURPOSE
    return f"{kind}:{proposal.source_region}-{proposal.target_region}:{now_ms // round_ms}"


def explanation(proposal: Proposal) -> dict[str, str]:
    """Why the move is made, as the log keeps it (``RebalanceRequested.explanation``)."""
    return {
        "reason": proposal.reason,
        "summary": proposal.explain()[:256],
        "target_ratio_ppm": str(proposal.target_ratio_ppm),
        "target_ratio_min_ppm": str(proposal.target_ratio_min_ppm),
        "goal_ratio_ppm": str(proposal.goal_ratio_ppm),
        "hours_until_dry": str(proposal.hours_until_dry),
        "source_surplus_msat": str(proposal.source_surplus_msat),
        "expected_fee_msat": str(proposal.expected_fee_msat),
        "budget_left_msat": str(proposal.budget_left_msat),
    }


def request_body(
    proposal: Proposal, *, caller_id: str, caller_kind: str, key: str, dry_run: bool
) -> dict[str, Any]:
    """``RequestRebalance``: a cross-region move from the source node to the target node."""
    return {
        "type": "RequestRebalance",
        "version": 1,
        "idempotency_key": key,
        "caller": {"id": caller_id, "kind": caller_kind},
        "mode": "cross_region",
        "source_region": proposal.source_region,
        "source_node": proposal.source_node,
        "target_region": proposal.target_region,
        "target_node": proposal.target_node,
        "destination": proposal.target_pubkey,
        "amount_msat": proposal.amount_msat,
        "max_fee_msat": proposal.max_fee_msat,
        "explanation": explanation(proposal),
        "dry_run": dry_run,
    }


def receive_body(
    proposal: Proposal, *, caller_id: str, caller_kind: str, key: str
) -> dict[str, Any]:
    """``CreateReceiveIntent`` on the target region for a move whose source cannot keysend:
    its invoice is what the source pays (ADR 0248). Keyed by the move's key, so a repeated
    round gets the same receive and so the same invoice, and requests the same move."""
    return {
        "type": "CreateReceiveIntent",
        "version": 1,
        "idempotency_key": f"{key}:invoice",
        "caller": {"id": caller_id, "kind": caller_kind},
        "amount_msat": proposal.amount_msat,
        "memo": f"rebalance {proposal.source_region}-{proposal.target_region}",
        "expiry_s": INVOICE_EXPIRY_S,
        "region": proposal.target_region,
    }


# A move's invoice: minutes are enough for the request that follows it in the same round.
INVOICE_EXPIRY_S: Final = 3_600


def paying_invoice(
    body: dict[str, Any], *, payment_request: str, payee: str, node: str
) -> dict[str, Any]:
    """The move's request, paying the target's invoice: the node that issued it is the
    target, its pubkey the destination."""
    return {**body, "payment_request": payment_request, "destination": payee, "target_node": node}


# -- circular moves (ADR 0281) ---------------------------------------------------------------


def circle_inputs(view: Mapping[str, Any], corridors_view: Mapping[str, Any]) -> list[CircleNode]:
    """Each node of the view with its channels. Only a node that keysends (LND) circles: a
    circle needs lnd's first and last hop (ADR 0247)."""
    can_circle = keysend_nodes(corridors_view)
    channels: dict[tuple[str, str], list[ChannelState]] = {}
    for row in view["channels"]:
        channels.setdefault((row["region"], row["node"]), []).append(
            ChannelState(
                channel_id=row["channel_id"],
                peer_pubkey=row["peer_pubkey"],
                local_balance_msat=row["local_balance_msat"],
                remote_balance_msat=row["remote_balance_msat"],
                active=row["active"],
            )
        )
    return [
        CircleNode(
            region=n["region"],
            node=n["node"],
            pubkey=n["node_pubkey"],
            stale=n["stale"],
            can_circle=(n["region"], n["node"]) in can_circle,
            channels=tuple(channels.get((n["region"], n["node"]), ())),
        )
        for n in view["nodes"]
    ]


def budget_left_after(
    budget_msat_per_day: int,
    spent_today_msat: Mapping[str, int],
    proposals: Iterable[Proposal],
    regions: Iterable[str],
) -> dict[str, int]:
    """Each region's budget left for circles: after what the day spent or holds (a region
    absent from ``spent_today_msat`` has spent nothing) and what the round's cross-region
    moves may spend: one daily budget per region pays for both kinds."""
    left = {r: max(0, budget_msat_per_day - spent_today_msat.get(r, 0)) for r in regions}
    for p in proposals:
        left[p.source_region] = max(0, left.get(p.source_region, 0) - p.max_fee_msat)
    return left


def circle_key(circle: CircleProposal, *, now_ms: int, round_ms: int, dry_run: bool) -> str:
    """One key per node and round, as a cross-region move's (``idempotency_key``)."""
    kind = PROPOSAL if dry_run else PURPOSE
    return f"{kind}:circle:{circle.region}-{circle.node}:{now_ms // round_ms}"


def circle_body(
    circle: CircleProposal, *, caller_id: str, caller_kind: str, key: str, dry_run: bool
) -> dict[str, Any]:
    """``RequestRebalance`` of a circle: the node back to itself (its own pubkey), out of
    ``outgoing_channel_id`` and back in from ``last_hop_pubkey``."""
    return {
        "type": "RequestRebalance", "version": 1, "idempotency_key": key,
        "caller": {"id": caller_id, "kind": caller_kind}, "mode": "circular",
        "source_region": circle.region, "source_node": circle.node,
        "target_region": circle.region, "target_node": circle.node,
        "destination": circle.pubkey, "amount_msat": circle.amount_msat,
        "max_fee_msat": circle.max_fee_msat,
        "outgoing_channel_id": circle.outgoing_channel_id,
        "last_hop_pubkey": circle.last_hop_pubkey,
        "explanation": circle.explanation(), "dry_run": dry_run,
    }  # fmt: skip
