"""The liquidity targets in force, from settings (ADR 0241)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from services.domain.liquidity.planner import PlanRules
from services.domain.liquidity.targets import Target, Targets

if TYPE_CHECKING:
    from services.settings import Settings

TARGET_KEYS: Final = frozenset({"local_ratio_min_ppm", "local_ratio_max_ppm", "inbound_min_msat"})
# Entries in liquidity_targets: one per region and per peer we hold targets for; far above
# what an operator writes by hand, low enough that a generated file cannot grow unbounded.
TARGETS_MAX: Final = 1_024


def parse_targets(
    default: Target, entries: Mapping[str, Mapping[str, int]], *, dry_within_hours: int = 0
) -> Targets:
    """Raises ``ValueError`` naming the key for an entry that is not a target."""
    if len(entries) > TARGETS_MAX:
        raise ValueError(f"liquidity_targets: {len(entries)} entries, limit is {TARGETS_MAX}")
    regions: dict[str, Target] = {}
    peers: dict[tuple[str, str], Target] = {}
    for key, values in entries.items():
        unknown = set(values) - TARGET_KEYS
        if unknown:
            raise ValueError(f"liquidity_targets[{key!r}]: unknown {sorted(unknown)}")
        fields = {
            "local_ratio_min_ppm": values.get("local_ratio_min_ppm", default.local_ratio_min_ppm),
            "local_ratio_max_ppm": values.get("local_ratio_max_ppm", default.local_ratio_max_ppm),
            "inbound_min_msat": values.get("inbound_min_msat", default.inbound_min_msat),
        }
        if not (
            0 <= fields["local_ratio_min_ppm"] <= fields["local_ratio_max_ppm"] <= 1_000_000
            and fields["inbound_min_msat"] >= 0
        ):
            raise ValueError(f"liquidity_targets[{key!r}]: not 0 <= min <= max <= 1000000")
        region, _, peer = key.partition("/")
        if not region:
            raise ValueError(f"liquidity_targets[{key!r}]: the key names no region")
        if peer:
            peers[(region, peer)] = Target(**fields)
        else:
            regions[region] = Target(**fields)
    return Targets(default=default, regions=regions, peers=peers, dry_within_hours=dry_within_hours)


def targets_from(settings: Settings) -> Targets:
    if settings.liquidity_local_ratio_min_ppm > settings.liquidity_local_ratio_max_ppm:
        raise ValueError("liquidity_local_ratio_min_ppm is above liquidity_local_ratio_max_ppm")
    default = Target(
        local_ratio_min_ppm=settings.liquidity_local_ratio_min_ppm,
        local_ratio_max_ppm=settings.liquidity_local_ratio_max_ppm,
        inbound_min_msat=settings.liquidity_inbound_min_msat,
    )
    return parse_targets(
        default, settings.liquidity_targets, dry_within_hours=settings.liquidity_dry_within_hours
    )


def plan_rules(settings: Settings) -> PlanRules:
    if settings.liquidity_move_min_msat > settings.liquidity_move_max_msat:
        raise ValueError("liquidity_move_min_msat is above liquidity_move_max_msat")
    return PlanRules(
        fee_budget_msat_per_day=settings.liquidity_fee_budget_msat_per_day,
        fee_ppm_estimate=settings.liquidity_fee_ppm_estimate,
        fee_base_msat_estimate=settings.liquidity_fee_base_estimate_msat,
        move_min_msat=settings.liquidity_move_min_msat,
        move_max_msat=settings.liquidity_move_max_msat,
    )
