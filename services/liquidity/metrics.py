"""Liquidity per region on ``/metrics``, from the engine's health board (ADR 0241).

- ``corridor_region_outbound_msat`` / ``corridor_region_inbound_msat``: the sums over the
  region's nodes with a fresh report (a stale node's figures are not counted as still there);
- ``corridor_region_local_ratio_ppm``: outbound over outbound plus inbound, in ppm (absent
  while the region has no balance at all);
- ``corridor_liquidity_alerts{region,kind}``: the breaches of the region targets in force, 1 a
  breach (a region with a stale node raises ``stale``).

The per-peer rows and the forecast need the channel snapshots and the intent documents: they
are in ``corridor liquidity`` and the console, not here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.domain.liquidity.targets import Targets, Totals, evaluate
from services.executor.health import HealthBoard


def region_totals(board: HealthBoard, now_ms: int) -> list[Totals]:
    sums: dict[str, list[int]] = {}
    for (region, node), (report, _) in sorted(board.reports().items()):
        health = board.health(region, node, now_ms)
        row = sums.setdefault(region, [0, 0, 0])
        if health is None or health.outbound_msat is None:  # stale: no figures to count
            row[2] = 1
            continue
        row[0] += report.outbound_msat
        row[1] += report.inbound_msat
    return [Totals(r, v[0], v[1], stale=bool(v[2])) for r, v in sorted(sums.items())]


class LiquidityCollector(Collector):
    def __init__(
        self, board: HealthBoard, targets: Targets, now_ms: Callable[[], int] | None = None
    ) -> None:
        self._board = board
        self._targets = targets
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def collect(self) -> Iterable[Metric]:
        totals = region_totals(self._board, self._now_ms())
        outbound = GaugeMetricFamily(
            "corridor_region_outbound_msat",
            "Outbound liquidity of the region's freshly reported nodes.",
            labels=["region"],
        )
        inbound = GaugeMetricFamily(
            "corridor_region_inbound_msat",
            "Inbound liquidity of the region's freshly reported nodes.",
            labels=["region"],
        )
        ratio = GaugeMetricFamily(
            "corridor_region_local_ratio_ppm",
            "Outbound share of the region's active balances, parts per million.",
            labels=["region"],
        )
        alerts = GaugeMetricFamily(
            "corridor_liquidity_alerts",
            "1 per breach of the region's liquidity targets, by kind.",
            labels=["region", "kind"],
        )
        for t in totals:
            outbound.add_metric([t.region], t.outbound_msat)
            inbound.add_metric([t.region], t.inbound_msat)
            if t.local_ratio_ppm is not None:
                ratio.add_metric([t.region], t.local_ratio_ppm)
        for alert in evaluate(totals, (), self._targets):
            alerts.add_metric([alert.region, alert.kind.value], 1)
        return [outbound, inbound, ratio, alerts]
