"""The loop that asks the node for its liquidity and publishes a ``HealthReport``."""

from __future__ import annotations

import asyncio
import time

import structlog

from schemas.codec import encode
from services.bus.port import Bus
from services.executor.channel_snapshot import observe_channels, snapshot_subject
from services.executor.health import HealthReport, health_subject
from services.executor.limits import ExecutorLimits
from services.lightning.port import NodeError, NodePort

log = structlog.get_logger("corridor.executor")


async def observe_node(
    node: NodePort, *, region: str, node_name: str, executor_id: str, timeout_s: float
) -> HealthReport:
    """One report; a node that does not answer within ``timeout_s`` is unhealthy."""
    try:
        async with asyncio.timeout(timeout_s):
            summary = await node.liquidity_summary()
    except (NodeError, TimeoutError) as exc:
        log.info("node_health_check_failed", error=type(exc).__name__)
        return HealthReport(
            node=node_name,
            region=region,
            healthy=False,
            outbound_msat=0,
            inbound_msat=0,
            channels=0,
            observed_at_ms=_now_ms(),
            executor_id=executor_id,
        )
    return HealthReport(
        node=node_name,
        region=region,
        healthy=summary.active_channels > 0,
        outbound_msat=summary.outbound_msat,
        inbound_msat=summary.inbound_msat,
        channels=summary.active_channels,
        observed_at_ms=_now_ms(),
        executor_id=executor_id,
    )


async def publish_health(
    bus: Bus,
    node: NodePort,
    *,
    region: str,
    node_name: str,
    executor_id: str,
    limits: ExecutorLimits,
) -> None:
    """Publish a report and a channel snapshot (ADR 0240) every ``limits.health_interval_s``
    until cancelled."""
    subject = health_subject(region, node_name)
    channels_subject = snapshot_subject(region, node_name)
    while True:
        report = await observe_node(
            node,
            region=region,
            node_name=node_name,
            executor_id=executor_id,
            timeout_s=limits.health_call_timeout_s,
        )
        # The health report first: the router must not wait on the slower channel calls.
        await _send(bus, subject, encode(report))
        snapshot = await observe_channels(
            node,
            region=region,
            node_name=node_name,
            executor_id=executor_id,
            timeout_s=limits.health_call_timeout_s,
        )
        await _send(bus, channels_subject, encode(snapshot))
        await asyncio.sleep(limits.health_interval_s)


async def _send(bus: Bus, subject: str, data: bytes) -> None:
    try:
        await bus.send(subject, data)
    except Exception as exc:  # a reconnecting client must not end the loop
        log.warning("health_publish_failed", error=type(exc).__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
