"""The rebalance planner (ADR 0243): which outbound to move from which region to which, within
a fee budget per day and source region, and why. Pure: the view, the targets, the budget spent
and the clock come in; proposals (each with its explanation) and the reasons for every move not
made come out.

A region needs outbound when its local ratio is below its target's minimum or its forecast says
it runs dry within the horizon. The move aims at the middle of the target band; the source is
the region with the largest surplus above its own band's middle, through its node with the most
to send; the expected fee is the fee estimate, and the node is told the whole remaining budget
at most (``max_fee_msat``), so no move can spend past the day's budget even at the worst route.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from services.domain.liquidity.targets import PPM, Target, Targets

# Proposals per round: each is one payment on the network; a few per round keep a planner bug
# from sending a flood, and the next round proposes again if a region still needs it.
PROPOSALS_PER_ROUND_MAX: Final = 8


@dataclass(frozen=True, slots=True)
class RegionState:
    region: str
    outbound_msat: int
    inbound_msat: int
    stale: bool
    hours_until_dry: int | None = None


@dataclass(frozen=True, slots=True)
class NodeState:
    region: str
    node: str
    pubkey: str
    max_sendable_msat: int  # largest local balance on one active channel
    inbound_msat: int
    stale: bool
    can_send: bool  # a source the planner may use (an LND node: keysend, ADR 0244)


@dataclass(frozen=True, slots=True)
class PlanRules:
    fee_budget_msat_per_day: int  # per source region
    fee_ppm_estimate: int
    fee_base_msat_estimate: int
    move_min_msat: int
    move_max_msat: int

    def __post_init__(self) -> None:
        assert self.fee_budget_msat_per_day >= 0 and self.fee_ppm_estimate >= 0
        assert self.fee_base_msat_estimate >= 0 and 0 < self.move_min_msat <= self.move_max_msat


@dataclass(frozen=True, slots=True)
class Proposal:
    source_region: str
    source_node: str
    target_region: str
    target_node: str
    target_pubkey: str
    amount_msat: int
    expected_fee_msat: int
    max_fee_msat: int
    # The explanation: what was breached, by how much, and what the forecast said.
    reason: str  # local_ratio_low | runs_dry_soon
    target_ratio_ppm: int | None
    target_ratio_min_ppm: int
    goal_ratio_ppm: int
    hours_until_dry: int | None
    source_surplus_msat: int
    budget_left_msat: int  # the source region's budget after this move's max fee

    def explain(self) -> str:
        ratio = "-" if self.target_ratio_ppm is None else f"{self.target_ratio_ppm} ppm"
        dry = "-" if self.hours_until_dry is None else f"{self.hours_until_dry} h"
        return (
            f"{self.target_region}: {self.reason} (ratio {ratio}, min "
            f"{self.target_ratio_min_ppm} ppm, dry in {dry}); move {self.amount_msat} msat from "
            f"{self.source_region}/{self.source_node} (surplus {self.source_surplus_msat} msat) "
            f"to {self.target_node}, expected fee {self.expected_fee_msat} msat, at most "
            f"{self.max_fee_msat} msat ({self.budget_left_msat} msat left today)"
        )


@dataclass(frozen=True, slots=True)
class Skipped:
    region: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    proposals: tuple[Proposal, ...]
    skipped: tuple[Skipped, ...]


def _goal_ppm(target: Target) -> int:
    return (target.local_ratio_min_ppm + target.local_ratio_max_ppm) // 2


def _ratio(state: RegionState) -> int | None:
    total = state.outbound_msat + state.inbound_msat
    return None if total == 0 else state.outbound_msat * PPM // total


def expected_fee_msat(amount_msat: int, rules: PlanRules) -> int:
    # Rounded up: the estimate errs toward spending the budget, never beyond it.
    return rules.fee_base_msat_estimate + -(-amount_msat * rules.fee_ppm_estimate // PPM)


def plan(
    regions: Iterable[RegionState],
    nodes: Iterable[NodeState],
    targets: Targets,
    rules: PlanRules,
    *,
    spent_today_msat: Mapping[str, int],
) -> Plan:
    """The moves of one round. ``spent_today_msat``: fees the source region's rebalances
    already spent or may still spend today (settled fees plus open ones' max fees)."""
    by_region = {r.region: r for r in regions}
    node_list: Sequence[NodeState] = sorted(nodes, key=lambda n: (n.region, n.node))
    outbound = {r: s.outbound_msat for r, s in by_region.items()}
    budget_left = {
        r: max(0, rules.fee_budget_msat_per_day - spent_today_msat.get(r, 0)) for r in by_region
    }
    sendable = {(n.region, n.node): n.max_sendable_msat for n in node_list}
    proposals: list[Proposal] = []
    skipped: list[Skipped] = []
    for state in sorted(by_region.values(), key=lambda s: (_ratio(s) or 0, s.region)):
        target = targets.for_region(state.region)
        ratio = _ratio(state)
        if state.stale or ratio is None:
            continue
        low = ratio < target.local_ratio_min_ppm
        dry = (
            targets.dry_within_hours > 0
            and state.hours_until_dry is not None
            and state.hours_until_dry < targets.dry_within_hours
        )
        if not (low or dry):
            continue
        total = state.outbound_msat + state.inbound_msat
        goal = max(_goal_ppm(target), target.local_ratio_min_ppm)
        wanted = goal * total // PPM - outbound[state.region]
        if wanted < rules.move_min_msat:
            # Forecast-only need with the ratio at the goal already: the move would be tiny.
            skipped.append(Skipped(state.region, "already at the goal of its band"))
            continue
        receivers = [n for n in node_list if n.region == state.region and n.pubkey and not n.stale]
        if not receivers:
            skipped.append(Skipped(state.region, "no fresh node with a known pubkey to receive"))
            continue
        receiver = max(receivers, key=lambda n: (n.inbound_msat, n.node))
        made = _from_best_source(
            state, receiver, wanted, low=low, ratio=ratio, goal=goal, target=target,
            by_region=by_region, nodes=node_list, targets=targets, rules=rules,
            outbound=outbound, budget_left=budget_left, sendable=sendable,
        )  # fmt: skip
        if isinstance(made, Skipped):
            skipped.append(made)
            continue
        proposals.append(made)
        if len(proposals) >= PROPOSALS_PER_ROUND_MAX:
            break
    return Plan(tuple(proposals), tuple(skipped))


def _from_best_source(
    state: RegionState,
    receiver: NodeState,
    wanted: int,
    *,
    low: bool,
    ratio: int,
    goal: int,
    target: Target,
    by_region: Mapping[str, RegionState],
    nodes: Sequence[NodeState],
    targets: Targets,
    rules: PlanRules,
    outbound: dict[str, int],
    budget_left: dict[str, int],
    sendable: dict[tuple[str, str], int],
) -> Proposal | Skipped:
    """The move from the region with the largest surplus; updates the running figures."""
    best: tuple[int, NodeState] | None = None
    for source in by_region.values():
        if source.region == state.region or source.stale:
            continue
        src_total = source.outbound_msat + source.inbound_msat
        surplus = (
            outbound[source.region]
            - _goal_ppm(targets.for_region(source.region)) * (src_total) // PPM
        )
        if surplus < rules.move_min_msat:
            continue
        senders = [
            n
            for n in nodes
            if n.region == source.region and n.can_send and not n.stale and n.pubkey
        ]
        if not senders:
            continue
        sender = max(senders, key=lambda n: (sendable[(n.region, n.node)], n.node))
        if best is None or surplus > best[0]:
            best = (surplus, sender)
    if best is None:
        return Skipped(state.region, "no region has outbound to spare through a node that sends")
    surplus, sender = best
    amount = min(wanted, surplus, sendable[(sender.region, sender.node)], rules.move_max_msat)
    if amount < rules.move_min_msat:
        return Skipped(state.region, f"the best source {sender.node} can send too little")
    fee = expected_fee_msat(amount, rules)
    left = budget_left[sender.region]
    if fee > left:
        return Skipped(
            state.region,
            f"fee budget of {sender.region} spent for today ({left} msat left, "
            f"{fee} msat expected)",
        )
    # The node may spend up to twice the estimate (a worse route), never past the budget.
    max_fee = min(left, 2 * fee)
    budget_left[sender.region] = left - max_fee
    outbound[sender.region] -= amount + max_fee
    outbound[state.region] += amount
    sendable[(sender.region, sender.node)] -= amount + max_fee
    return Proposal(
        source_region=sender.region,
        source_node=sender.node,
        target_region=state.region,
        target_node=receiver.node,
        target_pubkey=receiver.pubkey,
        amount_msat=amount,
        expected_fee_msat=fee,
        max_fee_msat=max_fee,
        reason="local_ratio_low" if low else "runs_dry_soon",
        target_ratio_ppm=ratio,
        target_ratio_min_ppm=target.local_ratio_min_ppm,
        goal_ratio_ppm=goal,
        hours_until_dry=state.hours_until_dry,
        source_surplus_msat=surplus,
        budget_left_msat=budget_left[sender.region],
    )
