"""The newest node health report per node, heard on ``corridor.health.v1.<region>.<node>``:
what the console's nodes page shows (health and liquidity per region).

The gateway hears what the engine hears; it keeps only reports whose payload names the node of
their subject, at most ``HEALTH_NODES_MAX`` nodes, and times them by its own clock.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from nats.aio.client import Client

from services.bus import subjects
from services.domain.routing import NodeKey
from services.executor.health import HEALTH_NODES_MAX, HealthReport, decode_report, subject_node

# A report older than this says the executor has gone quiet (3 of its default intervals).
STALE_AFTER_MS = 15_000


class NodeHealthFeed:
    def __init__(self) -> None:
        self._reports: dict[NodeKey, tuple[HealthReport, int]] = {}

    async def start(self, nc: Client) -> None:
        await nc.subscribe(subjects.HEALTH_WILDCARD, cb=self._on_report)

    async def _on_report(self, msg: Any) -> None:
        self.receive(msg.subject, msg.data, received_at_ms=time.time_ns() // 1_000_000)

    def receive(self, subject: str, raw: bytes, *, received_at_ms: int) -> bool:
        key = subject_node(subject)
        if key is None or (key not in self._reports and len(self._reports) >= HEALTH_NODES_MAX):
            return False
        try:
            report = decode_report(raw)
        except (msgspec.DecodeError, ValueError):
            return False
        if (report.region, report.node) != key:
            return False
        self._reports[key] = (report, received_at_ms)
        return True

    def snapshot(self, now_ms: int) -> list[dict[str, Any]]:
        rows = []
        for (region, node), (report, at_ms) in sorted(self._reports.items()):
            age_ms = max(0, now_ms - at_ms)
            rows.append({
                "region": region, "node": node,
                "healthy": report.healthy and age_ms <= STALE_AFTER_MS,
                "stale": age_ms > STALE_AFTER_MS, "report_age_ms": age_ms,
                "outbound_msat": report.outbound_msat, "inbound_msat": report.inbound_msat,
                "channels": report.channels, "executor_id": report.executor_id,
            })  # fmt: skip
        return rows
