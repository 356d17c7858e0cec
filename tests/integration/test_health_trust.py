"""The engine's health board against forged reports, over a real nats-server (ADR 0062).

Reports are published here the way an executor publishes them; the forged ones are what an
attacker who could publish on ``corridor.health.v1.>`` sent against ``corridor up``. The
engine handles one subscription's messages in order, so once a genuine report published
after the forged ones is visible, every forged one has been handled.
"""

from __future__ import annotations

import json
import time

from nats.aio.client import Client

from schemas.codec import encode
from services.bootstrap import Engine
from services.executor.health import HealthReport, health_subject
from tests.conftest import wait_for
from tests.factories import submit

YEAR_3000_MS = 32_503_680_000_000
US_EU = (("us", "us-lnd"), ("eu", "eu-lnd"), ("us", "us-cln"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _report(region: str, node: str, *, healthy: bool, observed_at_ms: int) -> bytes:
    return encode(
        HealthReport(
            node=node, region=region, healthy=healthy, outbound_msat=10**12,
            inbound_msat=10**12, channels=2, observed_at_ms=observed_at_ms,
            executor_id=node,
        )
    )  # fmt: skip


async def _genuine_report_seen(engine: Engine, nc: Client, region: str, node: str) -> None:
    """Publish a healthy, current report, again every interval as an executor does, until the
    board shows it: under a flood the engine's bounded subscription may drop one (a slow
    consumer), and the next interval's report is what makes the node healthy again."""
    interval_s = 0.2
    last_sent = float("-inf")

    async def healthy() -> bool:
        nonlocal last_sent
        health = engine.health.health(region, node, _now_ms())
        if health is not None and health.healthy:
            return True
        now = time.monotonic()
        if now - last_sent >= interval_s:
            last_sent = now
            report = _report(region, node, healthy=True, observed_at_ms=_now_ms())
            await nc.publish(health_subject(region, node), report)
            await nc.flush()
        return False

    await wait_for(healthy, what=f"the genuine report on {region}/{node}")


async def test_year_3000_reports_do_not_block_routing_while_genuine_reports_arrive(
    engine: Engine, nc: Client
) -> None:
    for region, node in US_EU:
        forged = _report(region, node, healthy=False, observed_at_ms=YEAR_3000_MS)
        await nc.publish(health_subject(region, node), forged)
    for region, node in US_EU:
        await _genuine_report_seen(engine, nc, region, node)
    msg = await nc.request(
        "corridor.api.v1.intents.submit.alice",
        json.dumps(submit(key="h-3000")).encode(),
        timeout=10,
    )
    reply = json.loads(msg.data)
    assert reply["ok"] and reply["state"] == "dispatched", reply


async def test_unknown_node_names_do_not_grow_the_board(engine: Engine, nc: Client) -> None:
    forged_names = 2_000
    for number in range(forged_names):
        node = f"forged-{number}"
        await nc.publish(
            health_subject("us", node),
            _report("us", node, healthy=False, observed_at_ms=_now_ms()),
        )
    await _genuine_report_seen(engine, nc, "us", "us-lnd")
    assert list(engine.health.snapshot(_now_ms())) == [("us", "us-lnd")]


async def test_a_report_about_another_node_than_its_subject_is_dropped(
    engine: Engine, nc: Client
) -> None:
    # On us-lnd's subject (only us-lnd's executor may publish there) but about eu-lnd.
    disguised = _report("eu", "eu-lnd", healthy=False, observed_at_ms=_now_ms())
    await nc.publish(health_subject("us", "us-lnd"), disguised)
    await _genuine_report_seen(engine, nc, "us", "us-lnd")
    assert engine.health.health("eu", "eu-lnd", _now_ms()) is None
