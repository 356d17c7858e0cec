"""Liquidity per region on /metrics, from the engine's health board (ADR 0241)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.domain.liquidity.targets import Target, Targets
from services.executor.health import HealthBoard, HealthReport, health_subject
from services.liquidity.metrics import LiquidityCollector

T0_MS = 1_800_000_000_000
NODES = (("us", "us-lnd"), ("us", "us-cln"), ("eu", "eu-lnd"))


def _report(region: str, node: str, outbound_msat: int, inbound_msat: int) -> HealthReport:
    return HealthReport(
        node=node, region=region, healthy=True, outbound_msat=outbound_msat,
        inbound_msat=inbound_msat, channels=1, observed_at_ms=T0_MS, executor_id=node,
    )  # fmt: skip


def _scrape(board: HealthBoard, now_ms: int) -> str:
    registry = CollectorRegistry()
    targets = Targets(default=Target(local_ratio_min_ppm=250_000, inbound_min_msat=100))
    registry.register(LiquidityCollector(board, targets, now_ms=lambda: now_ms))
    return generate_latest(registry).decode()


def test_region_gauges_and_alerts() -> None:
    board = HealthBoard(nodes=NODES, interval_ms=5_000)
    for region, node, out, inb in (("us", "us-lnd", 100, 700), ("us", "us-cln", 100, 100),
                                   ("eu", "eu-lnd", 900, 50)):  # fmt: skip
        board.observe(health_subject(region, node), _report(region, node, out, inb),
                      received_at_ms=T0_MS)  # fmt: skip
    text = _scrape(board, T0_MS + 1)
    assert 'corridor_region_outbound_msat{region="us"} 200.0' in text
    assert 'corridor_region_inbound_msat{region="us"} 800.0' in text
    assert 'corridor_region_local_ratio_ppm{region="us"} 200000.0' in text
    assert 'corridor_liquidity_alerts{kind="local_ratio_low",region="us"} 1.0' in text
    assert 'corridor_liquidity_alerts{kind="inbound_low",region="eu"} 1.0' in text
    assert 'kind="local_ratio_low",region="eu"' not in text


def test_a_stale_region_counts_no_figures_and_raises_stale() -> None:
    board = HealthBoard(nodes=NODES, interval_ms=5_000)
    board.observe(health_subject("eu", "eu-lnd"), _report("eu", "eu-lnd", 900, 900),
                  received_at_ms=T0_MS)  # fmt: skip
    text = _scrape(board, T0_MS + 15_001)
    assert 'corridor_region_outbound_msat{region="eu"} 0.0' in text
    assert 'corridor_liquidity_alerts{kind="stale",region="eu"} 1.0' in text
    assert "corridor_region_local_ratio_ppm{" not in text
