"""Rebalances as payment intents (ADR 0242): the planner's inputs from the liquidity view and
the corridor table, the budget its earlier moves used today, and the submit of one move.

A move from region S to region T is a keysend payment intent of the planner's caller, from the
corridor ``S-T`` (whose every candidate must be a node of S, so the engine can only pay from
S), to T's node pubkey. It inherits everything a payment has: idempotency by key, its policy
tier and spend windows (those of the planner's caller), the audit trail, the signed work order,
the node-lookup rule that never pays twice, and the node-enforced ``max_fee_msat``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from services.domain.intent.status import IntentStatus
from services.domain.intent.transitions import TERMINAL_STATUSES
from services.domain.liquidity.planner import NodeState, Proposal, RegionState

DAY_MS: Final = 86_400_000
# Ended without paying: nothing spent, nothing more to come. (Settled: its fee is known.)
_NOTHING_SPENT: Final = TERMINAL_STATUSES - {IntentStatus.SETTLED}
PURPOSE: Final = "rebalance"


def rebalance_corridors(corridors_view: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Corridor name -> its candidates (region, node), for the corridors a move may use."""
    return {
        row["corridor"]: [(c["region"], c["node"]) for c in row.get("candidates", [])]
        for row in corridors_view.get("corridors", [])
    }


def usable_corridor(
    corridors: Mapping[str, list[tuple[str, str]]], source: str, target: str
) -> bool:
    """``S-T`` exists and every candidate is in S: a fail-over could not pay from elsewhere."""
    candidates = corridors.get(f"{source}-{target}")
    return bool(candidates) and all(region == source for region, _ in candidates or ())


def planner_inputs(
    view: Mapping[str, Any], corridors_view: Mapping[str, Any]
) -> tuple[list[RegionState], list[NodeState]]:
    keysend = {
        (c["region"], c["node"])
        for row in corridors_view.get("corridors", [])
        for c in row.get("candidates", [])
        if c.get("keysend")
    }
    corridors = rebalance_corridors(corridors_view)
    regions = [
        RegionState(r["region"], r["outbound_msat"], r["inbound_msat"], r["stale"],
                    r.get("hours_until_dry"))
        for r in view["regions"]
    ]  # fmt: skip
    names = {r.region for r in regions}
    nodes = [
        NodeState(
            region=n["region"], node=n["node"], pubkey=n["node_pubkey"],
            max_sendable_msat=n["max_sendable_msat"], inbound_msat=n["inbound_msat"],
            stale=n["stale"],
            # LND keysend only (ADR 0242), and only through a corridor that pins the source.
            can_send=(n["region"], n["node"]) in keysend
            and any(usable_corridor(corridors, n["region"], t) for t in names - {n["region"]}),
        )
        for n in view["nodes"]
    ]  # fmt: skip
    return regions, nodes


@dataclass(frozen=True, slots=True)
class RebalanceRecord:
    """One of the planner caller's intents, as the log holds it."""

    corridor: str
    state: str
    received_at_ms: int
    max_fee_msat: int
    fee_msat: int | None


def spent_today(records: Iterable[RebalanceRecord], *, now_ms: int) -> dict[str, int]:
    """Per source region, the fees today's rebalances spent (settled) or may still spend (open:
    their whole ``max_fee_msat``); the day is the UTC day of ``now_ms``."""
    day_start_ms = now_ms - now_ms % DAY_MS
    spent: dict[str, int] = {}
    for r in records:
        if r.received_at_ms < day_start_ms or r.state in _NOTHING_SPENT:
            continue
        source = r.corridor.split("-", 1)[0]
        # Open (succeeded included, until it settles): its whole max fee may still be spent.
        fee = (r.fee_msat or 0) if r.state == IntentStatus.SETTLED else r.max_fee_msat
        spent[source] = spent.get(source, 0) + fee
    return spent


def idempotency_key(proposal: Proposal, *, now_ms: int, round_ms: int) -> str:
    """One key per move and planning round: a round re-run after a crash submits the same
    intents again and the engine answers with the ones it has (never a second payment)."""
    return f"{PURPOSE}:{proposal.source_region}-{proposal.target_region}:{now_ms // round_ms}"


def submit_body(
    proposal: Proposal, *, caller_id: str, caller_kind: str, key: str
) -> dict[str, Any]:
    """``SubmitPaymentIntent``: the explanation travels in the metadata, so the log's
    ``IntentReceived`` says why the move was made."""
    explanation = {
        "purpose": PURPOSE,
        "target_region": proposal.target_region,
        "target_node": proposal.target_node,
        "reason": proposal.reason,
        "target_ratio_ppm": str(proposal.target_ratio_ppm),
        "target_ratio_min_ppm": str(proposal.target_ratio_min_ppm),
        "hours_until_dry": str(proposal.hours_until_dry),
        "source_node": proposal.source_node,
        "source_surplus_msat": str(proposal.source_surplus_msat),
        "expected_fee_msat": str(proposal.expected_fee_msat),
        "budget_left_msat": str(proposal.budget_left_msat),
    }
    return {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": key,
        "caller": {"id": caller_id, "kind": caller_kind},
        "corridor": f"{proposal.source_region}-{proposal.target_region}",
        "amount_msat": proposal.amount_msat,
        "max_fee_msat": proposal.max_fee_msat,
        "destination": proposal.target_pubkey,
        "metadata": explanation,
    }
