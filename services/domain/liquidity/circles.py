"""Circular moves the planner proposes (ADR 0281): within one node, from a channel whose local
ratio is above its target's max to a channel below its min toward another peer. Pure: the
node's channels (from the liquidity view), the targets, the rules and the fee budget left per
region come in; at most one circle per node, each with its explanation, and the reasons for
circles not made come out.

The circle pays the node's own invoice out of the full channel and back in through the drained
one (ADR 0247), so only LND nodes circle (``can_circle``). Each side aims at the middle of its
band; the amount is the smaller of the two gaps, within the move limits. The fee is estimated
and the node is told at most twice the estimate, never more than the region's budget left, as
for a cross-region move (``planner.py``): the region's one daily budget pays for both kinds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from services.domain.liquidity.planner import (
    PROPOSALS_PER_ROUND_MAX,
    PlanRules,
    Skipped,
    expected_fee_msat,
)
from services.domain.liquidity.targets import PPM, Target, Targets

REASON: Final = "channel_ratio_out_of_band"
# The short channel id a circle names (``schemas.rebalance_messages.SCID_PATTERN``): a row
# with another form of id cannot be asked for as a first hop.
_SCID: Final = re.compile(r"^[0-9]{1,8}x[0-9]{1,8}x[0-9]{1,5}$")


@dataclass(frozen=True, slots=True)
class ChannelState:
    channel_id: str
    peer_pubkey: str
    local_balance_msat: int
    remote_balance_msat: int
    active: bool

    @property
    def ratio_ppm(self) -> int | None:
        total = self.local_balance_msat + self.remote_balance_msat
        return None if total == 0 else self.local_balance_msat * PPM // total


@dataclass(frozen=True, slots=True)
class CircleNode:
    region: str
    node: str
    pubkey: str
    stale: bool
    can_circle: bool  # an LND node: a circle needs its first and last hop (ADR 0247)
    channels: tuple[ChannelState, ...]


@dataclass(frozen=True, slots=True)
class CircleProposal:
    region: str
    node: str
    pubkey: str
    outgoing_channel_id: str
    out_peer: str
    out_ratio_ppm: int
    out_ratio_max_ppm: int
    in_channel_id: str
    last_hop_pubkey: str
    in_ratio_ppm: int
    in_ratio_min_ppm: int
    amount_msat: int
    expected_fee_msat: int
    max_fee_msat: int
    budget_left_msat: int  # the region's budget after this circle's max fee

    def explain(self) -> str:
        return (
            f"{self.region}/{self.node}: channel {self.outgoing_channel_id} at "
            f"{self.out_ratio_ppm} ppm (max {self.out_ratio_max_ppm} ppm), channel "
            f"{self.in_channel_id} at {self.in_ratio_ppm} ppm (min {self.in_ratio_min_ppm} "
            f"ppm); move {self.amount_msat} msat around, expected fee "
            f"{self.expected_fee_msat} msat, at most {self.max_fee_msat} msat "
            f"({self.budget_left_msat} msat left today)"
        )

    def explanation(self) -> dict[str, str]:
        """Why the circle is made, as the log keeps it (``RebalanceRequested.explanation``)."""
        return {
            "reason": REASON,
            "summary": self.explain()[:256],
            "out_ratio_ppm": str(self.out_ratio_ppm),
            "out_ratio_max_ppm": str(self.out_ratio_max_ppm),
            "in_channel_id": self.in_channel_id,
            "in_ratio_ppm": str(self.in_ratio_ppm),
            "in_ratio_min_ppm": str(self.in_ratio_min_ppm),
            "expected_fee_msat": str(self.expected_fee_msat),
            "budget_left_msat": str(self.budget_left_msat),
        }


def _target(targets: Targets, region: str, peer: str) -> Target:
    return targets.peers.get((region, peer), targets.for_region(region))


def _goal_ppm(target: Target) -> int:
    return (target.local_ratio_min_ppm + target.local_ratio_max_ppm) // 2


def plan_circles(
    nodes: Iterable[CircleNode],
    targets: Targets,
    rules: PlanRules,
    *,
    budget_left_msat: Mapping[str, int],
) -> tuple[tuple[CircleProposal, ...], tuple[Skipped, ...]]:
    """The circles of one round; ``budget_left_msat``: each region's fee budget left today
    after what it spent, holds and the round's cross-region moves may spend."""
    left = dict(budget_left_msat)
    proposals: list[CircleProposal] = []
    skipped: list[Skipped] = []
    for node in sorted(nodes, key=lambda n: (n.region, n.node)):
        if len(proposals) >= PROPOSALS_PER_ROUND_MAX:
            break
        if node.stale or not node.can_circle or not node.pubkey:
            continue
        made = _circle(node, targets, rules, left.get(node.region, 0))
        if isinstance(made, Skipped):
            skipped.append(made)
        elif made is not None:
            left[node.region] = made.budget_left_msat
            proposals.append(made)
    return tuple(proposals), tuple(skipped)


def _circle(
    node: CircleNode, targets: Targets, rules: PlanRules, left_msat: int
) -> CircleProposal | Skipped | None:
    usable = [c for c in node.channels if c.active and _SCID.match(c.channel_id)]
    heavy: list[tuple[int, ChannelState, Target]] = []
    light: list[tuple[int, ChannelState, Target]] = []
    for channel in usable:
        ratio = channel.ratio_ppm
        if ratio is None:
            continue
        target = _target(targets, node.region, channel.peer_pubkey)
        if ratio > target.local_ratio_max_ppm:
            heavy.append((ratio, channel, target))
        elif ratio < target.local_ratio_min_ppm:
            light.append((ratio, channel, target))
    if not heavy:
        return None
    out_ratio, out, out_target = max(heavy, key=lambda h: (h[0], h[1].channel_id))
    toward_others = [x for x in light if x[1].peer_pubkey != out.peer_pubkey]
    if not toward_others:
        return None
    in_ratio, into, in_target = min(toward_others, key=lambda x: (x[0], x[1].channel_id))
    out_total = out.local_balance_msat + out.remote_balance_msat
    in_total = into.local_balance_msat + into.remote_balance_msat
    surplus = out.local_balance_msat - _goal_ppm(out_target) * out_total // PPM
    deficit = _goal_ppm(in_target) * in_total // PPM - into.local_balance_msat
    amount = min(surplus, deficit, rules.move_max_msat)
    fee = expected_fee_msat(amount, rules)
    if fee > left_msat:
        return Skipped(node.region, f"fee budget of {node.region} spent for today "
                       f"({left_msat} msat left, {fee} msat expected for a circle on "
                       f"{node.node})")  # fmt: skip
    max_fee = min(left_msat, 2 * fee)
    # The full channel pays the amount and every fee out of its own local balance.
    amount = min(amount, out.local_balance_msat - max_fee)
    if amount < rules.move_min_msat:
        return Skipped(node.region, f"the circle on {node.node} would move too little")
    return CircleProposal(
        region=node.region, node=node.node, pubkey=node.pubkey,
        outgoing_channel_id=out.channel_id, out_peer=out.peer_pubkey, out_ratio_ppm=out_ratio,
        out_ratio_max_ppm=out_target.local_ratio_max_ppm, in_channel_id=into.channel_id,
        last_hop_pubkey=into.peer_pubkey, in_ratio_ppm=in_ratio,
        in_ratio_min_ppm=in_target.local_ratio_min_ppm, amount_msat=amount,
        expected_fee_msat=expected_fee_msat(amount, rules), max_fee_msat=max_fee,
        budget_left_msat=left_msat - max_fee,
    )  # fmt: skip
