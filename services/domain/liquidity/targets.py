"""Liquidity targets per region and per peer, and the breaches they raise (ADR 0241).

A target bounds a scope's local ratio (outbound over outbound plus inbound, in parts per
million so no float touches money) and its inbound. Pure: totals come in, alerts come out.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

PPM: Final = 1_000_000


class AlertKind(enum.StrEnum):
    LOCAL_RATIO_LOW = "local_ratio_low"  # outbound is running out: payments will fail
    LOCAL_RATIO_HIGH = "local_ratio_high"  # inbound is running out: receives will fail
    INBOUND_LOW = "inbound_low"
    RUNS_DRY_SOON = "runs_dry_soon"  # the forecast: outflow empties outbound within the horizon
    STALE = "stale"  # no fresh snapshot: the figures cannot be judged


@dataclass(frozen=True, slots=True)
class Target:
    local_ratio_min_ppm: int = 0
    local_ratio_max_ppm: int = PPM
    inbound_min_msat: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.local_ratio_min_ppm <= self.local_ratio_max_ppm <= PPM, self
        assert self.inbound_min_msat >= 0, self


@dataclass(frozen=True, slots=True)
class Targets:
    default: Target = field(default_factory=Target)
    regions: Mapping[str, Target] = field(default_factory=dict)
    # (region, peer pubkey) -> target for our channels with that peer in that region.
    peers: Mapping[tuple[str, str], Target] = field(default_factory=dict)
    # Alert when the forecast says outbound runs dry within this many hours (0: never).
    dry_within_hours: int = 0

    def for_region(self, region: str) -> Target:
        return self.regions.get(region, self.default)


@dataclass(frozen=True, slots=True)
class Totals:
    """A scope's figures: a region's active channels, or ours with one peer in a region."""

    region: str
    outbound_msat: int
    inbound_msat: int
    stale: bool = False
    peer: str | None = None

    @property
    def local_ratio_ppm(self) -> int | None:
        total = self.outbound_msat + self.inbound_msat
        return None if total == 0 else self.outbound_msat * PPM // total


@dataclass(frozen=True, slots=True)
class LiquidityAlert:
    region: str
    kind: AlertKind
    observed: int  # ppm for the ratios, msat for inbound, hours for the forecast
    limit: int
    peer: str | None = None

    @property
    def detail(self) -> str:
        scope = self.region if self.peer is None else f"{self.region}/{self.peer[:16]}"
        return f"{scope} {self.kind.value}: {self.observed} (target {self.limit})"


def breaches(totals: Totals, target: Target) -> list[LiquidityAlert]:
    """What ``totals`` break of ``target``; a stale scope is one STALE alert and nothing else:
    old figures would raise (or hide) breaches that are no longer true."""
    region, peer = totals.region, totals.peer
    if totals.stale:
        return [LiquidityAlert(region, AlertKind.STALE, 1, 0, peer)]
    alerts = []
    ratio = totals.local_ratio_ppm
    if ratio is not None and ratio < target.local_ratio_min_ppm:
        alerts.append(
            LiquidityAlert(
                region, AlertKind.LOCAL_RATIO_LOW, ratio, target.local_ratio_min_ppm, peer
            )
        )
    if ratio is not None and ratio > target.local_ratio_max_ppm:
        alerts.append(
            LiquidityAlert(
                region, AlertKind.LOCAL_RATIO_HIGH, ratio, target.local_ratio_max_ppm, peer
            )
        )
    if totals.inbound_msat < target.inbound_min_msat:
        alerts.append(
            LiquidityAlert(
                region, AlertKind.INBOUND_LOW, totals.inbound_msat, target.inbound_min_msat, peer
            )
        )
    return alerts


def evaluate(
    regions: Iterable[Totals],
    peers: Iterable[Totals],
    targets: Targets,
    *,
    dry_in_hours: Mapping[str, int | None] | None = None,
) -> list[LiquidityAlert]:
    """Every breach: per region, per peer that has a target of its own, and the forecast."""
    alerts: list[LiquidityAlert] = []
    for totals in regions:
        alerts += breaches(totals, targets.for_region(totals.region))
        hours = (dry_in_hours or {}).get(totals.region)
        soon = hours is not None and hours < targets.dry_within_hours
        if soon and not totals.stale and hours is not None:
            alerts.append(
                LiquidityAlert(
                    totals.region, AlertKind.RUNS_DRY_SOON, hours, targets.dry_within_hours
                )
            )
    for totals in peers:
        assert totals.peer is not None
        target = targets.peers.get((totals.region, totals.peer))
        if target is not None:
            alerts += breaches(totals, target)
    return sorted(alerts, key=lambda a: (a.region, a.peer or "", a.kind.value))
