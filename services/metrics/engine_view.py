"""What the engine's process knows in memory, as series, at scrape time; and the committed-batch
observer that feeds the intent counters and the settlement latency histogram.

- ``corridor_node_healthy{region,node}``: 1 when the newest health report says healthy and is
  fresh (the router's own view, ``HealthBoard``), else 0;
- ``corridor_node_outbound_msat`` / ``corridor_node_inbound_msat``: liquidity per node, as last
  reported by its executor;
- ``corridor_node_health_report_age_seconds``: how old the newest report is: an executor that
  stopped reporting is down (the ``CorridorExecutorDown`` alert);
- ``corridor_health_reports{verdict}``: reports received, by what the board made of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.engine.committed import CommittedBatch
from services.executor.health import HealthBoard
from services.metrics.series import INTENT_EVENTS, SETTLEMENT_LATENCY


def observe_commits(batch: CommittedBatch) -> None:
    """A ``CommittedBatches`` subscriber: returns at once, keeps nothing (ADR 0095)."""
    for event in batch.events:
        INTENT_EVENTS.labels(event.type).inc()
        if event.type == "IntentSettled":
            state = batch.states.get(event.stream_id)
            if state is not None:
                seconds = max(0, event.recorded_at_ms - state.received_at_ms) / 1000
                SETTLEMENT_LATENCY.labels(state.corridor).observe(seconds)


class HealthBoardCollector(Collector):
    def __init__(self, board: HealthBoard, now_ms: Callable[[], int] | None = None) -> None:
        self._board = board
        self._now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)

    def collect(self) -> Iterable[Metric]:
        now_ms = self._now_ms()
        labels = ["region", "node"]
        healthy = GaugeMetricFamily(
            "corridor_node_healthy",
            "1 if the node's newest report is fresh and healthy.",
            labels=labels,
        )
        outbound = GaugeMetricFamily(
            "corridor_node_outbound_msat", "Outbound liquidity last reported.", labels=labels
        )
        inbound = GaugeMetricFamily(
            "corridor_node_inbound_msat", "Inbound liquidity last reported.", labels=labels
        )
        age = GaugeMetricFamily(
            "corridor_node_health_report_age_seconds",
            "Age of the newest health report from the node's executor.",
            labels=labels,
        )
        for (region, node), (report, observed_at_ms) in sorted(self._board.reports().items()):
            health = self._board.health(region, node, now_ms)
            healthy.add_metric([region, node], 1 if health is not None and health.healthy else 0)
            outbound.add_metric([region, node], report.outbound_msat)
            inbound.add_metric([region, node], report.inbound_msat)
            age.add_metric([region, node], max(0, now_ms - observed_at_ms) / 1000)
        verdicts = CounterMetricFamily(
            "corridor_health_reports", "Health reports received, by verdict.", labels=["verdict"]
        )
        for verdict, count in sorted(self._board.counts.items()):
            verdicts.add_metric([str(verdict)], count)
        return [healthy, outbound, inbound, age, verdicts]
