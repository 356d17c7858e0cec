"""The liquidity view: every channel of our nodes per region, from the executors' channel
snapshots (ADR 0240), with the age of each node's data and the breaches of the targets
(ADR 0241).

Pure: snapshots and the clock come from outside. One function builds the view for every window
onto it (``corridor liquidity``, the console, the planner), so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from services.domain.liquidity.forecast import Outflow, hours_until_dry
from services.domain.liquidity.targets import Targets, Totals, evaluate
from services.executor.channel_snapshot import ChannelSnapshot, decode_snapshot, subject_node

# Nodes the book holds, at most: one snapshot each (the same bound as the health board's).
LIQUIDITY_NODES_MAX: Final = 1_024
# Snapshots older than this many health intervals are stale (as a health report is, ADR 0204).
STALE_INTERVALS: Final = 3

NodeKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Held:
    snapshot: ChannelSnapshot  # the newest one with rows the node gave (reachable)
    observed_at_ms: int  # on the receiver's clock: never later than it was received
    reachable: bool  # whether the newest snapshot of all found the node answering


class LiquidityBook:
    """The newest channel snapshot per node; a snapshot of an unreachable node keeps the rows
    held (they age, and are flagged stale) instead of blanking them."""

    def __init__(self, *, interval_ms: int, nodes_max: int = LIQUIDITY_NODES_MAX) -> None:
        assert interval_ms > 0 and nodes_max > 0
        self._stale_after_ms = interval_ms * STALE_INTERVALS
        self._nodes_max = nodes_max
        self._held: dict[NodeKey, _Held] = {}

    def receive(self, subject: str, raw: bytes, *, received_at_ms: int) -> bool:
        """One message from ``corridor.liquidity.v1.>``; False when it was dropped."""
        key = subject_node(subject)
        if key is None:
            return False
        if key not in self._held and len(self._held) >= self._nodes_max:
            return False
        try:
            snapshot = decode_snapshot(raw)
        except (msgspec.DecodeError, ValueError):
            return False
        if (snapshot.region, snapshot.node) != key:
            return False
        return self.observe(snapshot, received_at_ms=received_at_ms)

    def observe(self, snapshot: ChannelSnapshot, *, received_at_ms: int) -> bool:
        key = (snapshot.region, snapshot.node)
        observed_at_ms = min(snapshot.observed_at_ms, received_at_ms)
        held = self._held.get(key)
        if held is not None and observed_at_ms < held.observed_at_ms:
            return False  # an older snapshot arriving late
        if not snapshot.reachable and held is not None:
            self._held[key] = _Held(held.snapshot, held.observed_at_ms, reachable=False)
            return True
        self._held[key] = _Held(snapshot, observed_at_ms, reachable=snapshot.reachable)
        assert len(self._held) <= self._nodes_max
        return True

    def nodes(self) -> frozenset[NodeKey]:
        return frozenset(self._held)

    def view(
        self,
        now_ms: int,
        targets: Targets | None = None,
        outflows: Mapping[str, Outflow] | None = None,
    ) -> dict[str, Any]:
        """``regions`` (totals, ratio, forecast), ``nodes``, ``channels`` (one row each),
        ``pending`` and ``alerts``: what every window onto liquidity shows."""
        channels: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        pending: list[dict[str, Any]] = []
        regions: dict[str, dict[str, Any]] = {}
        peers: dict[tuple[str, str], list[int]] = {}
        for (region, node), held in sorted(self._held.items()):
            age_ms = max(0, now_ms - held.observed_at_ms)
            stale = age_ms > self._stale_after_ms or not held.reachable
            snap = held.snapshot
            totals = regions.setdefault(region, _region_row(region))
            totals["nodes"] += 1
            totals["stale"] = totals["stale"] or stale
            totals["data_age_ms"] = max(totals["data_age_ms"], age_ms)
            totals["truncated"] = totals["truncated"] or snap.truncated
            for row in snap.channels:
                channels.append({
                    "region": region, "node": node, **msgspec.to_builtins(row),
                    "data_age_ms": age_ms, "stale": stale,
                })  # fmt: skip
                totals["channels"] += 1
                totals["capacity_msat"] += row.capacity_msat
                totals["pending_htlcs_msat"] += row.pending_htlcs_msat
                if row.active:
                    totals["active_channels"] += 1
                    totals["outbound_msat"] += row.local_balance_msat
                    totals["inbound_msat"] += row.remote_balance_msat
                    peer = peers.setdefault((region, row.peer_pubkey), [0, 0, 0])
                    peer[0] += row.local_balance_msat
                    peer[1] += row.remote_balance_msat
                    peer[2] = peer[2] or int(stale)
            active = [row for row in snap.channels if row.active]
            nodes.append({
                "region": region, "node": node, "node_pubkey": snap.node_pubkey,
                "outbound_msat": sum(r.local_balance_msat for r in active),
                "inbound_msat": sum(r.remote_balance_msat for r in active),
                "max_sendable_msat": max((r.local_balance_msat for r in active), default=0),
                "data_age_ms": age_ms, "stale": stale, "reachable": held.reachable,
            })  # fmt: skip
            for p in snap.pending:
                pending.append({"region": region, "node": node, **msgspec.to_builtins(p)})
            totals["pending_known"] = totals["pending_known"] and snap.pending_known
        dry_in: dict[str, int | None] = {}
        for region, totals in regions.items():
            ratio = Totals(region, totals["outbound_msat"], totals["inbound_msat"]).local_ratio_ppm
            totals["local_ratio_ppm"] = ratio
            outflow = (outflows or {}).get(region)
            totals["outflow_msat_per_hour"] = outflow.msat_per_hour if outflow else 0
            dry_in[region] = hours_until_dry(totals["outbound_msat"], outflow)
            totals["hours_until_dry"] = dry_in[region]
        alerts = []
        if targets is not None:
            found = evaluate(
                (Totals(r, t["outbound_msat"], t["inbound_msat"], t["stale"])
                 for r, t in sorted(regions.items())),
                (Totals(r, v[0], v[1], bool(v[2]), peer=p) for (r, p), v in sorted(peers.items())),
                targets,
                dry_in_hours=dry_in,
            )  # fmt: skip
            alerts = [
                {"region": a.region, "peer": a.peer, "kind": a.kind.value,
                 "observed": a.observed, "limit": a.limit, "detail": a.detail}
                for a in found
            ]  # fmt: skip
            for a in found:
                regions[a.region]["alerts"] += 1
        return {
            "regions": [regions[r] for r in sorted(regions)],
            "nodes": nodes,
            "channels": channels,
            "pending": pending,
            "alerts": alerts,
        }


def _region_row(region: str) -> dict[str, Any]:
    return {
        "region": region, "nodes": 0, "channels": 0, "active_channels": 0,
        "capacity_msat": 0, "outbound_msat": 0, "inbound_msat": 0, "pending_htlcs_msat": 0,
        "local_ratio_ppm": None, "outflow_msat_per_hour": 0, "hours_until_dry": None,
        "data_age_ms": 0, "stale": False, "truncated": False, "pending_known": True,
        "alerts": 0,
    }  # fmt: skip
