"""Node health reports: what executors publish, and a pure board that reads them.

Each worker publishes a ``HealthReport`` on core NATS ``corridor.health.v1.<region>.<node>``
every ``health_interval_s``. ``HealthBoard`` keeps the newest report per node and turns them
into the router's ``NodeHealth``; a report older than ``stale_intervals`` intervals counts as
unhealthy, so a dead executor (or a dead node) drains traffic away by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from services.bus import subjects
from services.domain.routing import NodeHealth

HEALTH_PREFIX: Final = subjects.HEALTH_PREFIX
HEALTH_WILDCARD: Final = subjects.HEALTH_WILDCARD
# A report is a few hundred bytes; refuse anything that cannot be one.
HEALTH_REPORT_BYTES_MAX: Final = 4096


def health_subject(region: str, node: str) -> str:
    return f"{HEALTH_PREFIX}.{region}.{node}"


class HealthReport(msgspec.Struct, frozen=True, kw_only=True):
    node: str
    region: str
    healthy: bool
    outbound_msat: int  # sum of local balances on active channels
    inbound_msat: int
    channels: int  # active channels
    observed_at_ms: int
    executor_id: str

    def __post_init__(self) -> None:
        if self.outbound_msat < 0 or self.inbound_msat < 0 or self.channels < 0:
            raise ValueError("health amounts and counts are never negative")


_decoder = msgspec.json.Decoder(HealthReport)


def decode_report(raw: bytes) -> HealthReport:
    """Raises ``msgspec.DecodeError`` (or ``ValueError``) for anything but a report."""
    if len(raw) > HEALTH_REPORT_BYTES_MAX:
        raise ValueError(f"health report is {len(raw)} bytes, limit is {HEALTH_REPORT_BYTES_MAX}")
    return _decoder.decode(raw)


class HealthBoard:
    """Newest report per (region, node); pure: reports and the clock come from outside."""

    def __init__(self, *, interval_ms: int, stale_intervals: int = 3) -> None:
        assert interval_ms > 0 and stale_intervals >= 1
        self._stale_after_ms = interval_ms * stale_intervals
        self._latest: dict[tuple[str, str], HealthReport] = {}

    def observe(self, report: HealthReport) -> None:
        key = (report.region, report.node)
        current = self._latest.get(key)
        # Several workers report on one node; an older report arriving late changes nothing.
        if current is None or report.observed_at_ms >= current.observed_at_ms:
            self._latest[key] = report

    def is_stale(self, report: HealthReport, now_ms: int) -> bool:
        return now_ms - report.observed_at_ms > self._stale_after_ms

    def health(self, region: str, node: str, now_ms: int) -> NodeHealth | None:
        """``None`` when no report was ever seen (the router then treats the node as usable)."""
        report = self._latest.get((region, node))
        if report is None:
            return None
        if self.is_stale(report, now_ms):
            return NodeHealth(healthy=False, outbound_msat=None)
        return NodeHealth(healthy=report.healthy, outbound_msat=report.outbound_msat)

    def snapshot(self, now_ms: int) -> Mapping[tuple[str, str], NodeHealth]:
        """Every known node's health at ``now_ms``, in the shape ``OrderedRouter`` takes."""
        snapshot = {}
        for region, node in self._latest:
            health = self.health(region, node, now_ms)
            assert health is not None
            snapshot[(region, node)] = health
        return snapshot
