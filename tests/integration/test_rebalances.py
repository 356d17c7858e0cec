"""Rebalances through the real engine (ADR 0244, 0245): requests over NATS, the decision in
PostgreSQL, and the day's fee budget per source region enforced by the engine from its log,
so a restarted engine (or a second one) judges a move against every reservation before it.

No executor runs here: the moves stay dispatched, so their whole max fees stay reserved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from schemas.rebalance_messages import budget_day, budget_stream_id
from services.liquidity.feed import now_ms
from services.liquidity.rebalance import budget_used_msat
from tests.integration.test_executor import signing_engine

PLANNER = "liquidity-planner"
PUBKEY = "02" + "ab" * 32
BUDGET_MSAT = 100_000  # the default liquidity_fee_budget_msat_per_day


def command(key: str, *, max_fee_msat: int, **fields: Any) -> dict[str, Any]:
    return {
        "type": "RequestRebalance", "version": 1, "idempotency_key": key,
        "caller": {"id": PLANNER, "kind": "service"}, "source_region": "eu",
        "source_node": "eu-lnd", "target_region": "us", "target_node": "us-lnd",
        "destination": PUBKEY, "amount_msat": 5_000_000, "max_fee_msat": max_fee_msat,
        "explanation": {"reason": "local_ratio_low"},
    } | fields  # fmt: skip


async def request(nc: Client, body: dict[str, Any]) -> dict[str, Any]:
    subject = f"corridor.api.v1.intents.rebalance.{body['caller']['id']}"
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def test_the_day_s_budget_is_enforced_from_the_log_across_an_engine_restart(
    nats_url: str, database_url: str, tmp_path: Path, nc: Client
) -> None:
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        first = await request(nc, command("a", max_fee_msat=70_000))
        assert first["ok"] and first["state"] == "dispatched", first
        assert first["intent_id"].startswith("rbl-")
        again = await request(nc, command("a", max_fee_msat=70_000))
        assert again["intent_id"] == first["intent_id"] and again["duplicate"]
        changed = await request(nc, command("a", max_fee_msat=60_000))
        assert not changed["ok"] and changed["error"]["code"] == "idempotency_mismatch"
        human = await request(
            nc, command("h", max_fee_msat=1, caller={"id": PLANNER, "kind": "human"})
        )
        assert not human["ok"] and human["error"]["code"] == "forbidden", human
    # A new engine on the same log: the reservation of "a" is still held.
    async with signing_engine(nats_url, database_url, tmp_path) as engine:
        second = await request(nc, command("b", max_fee_msat=40_000))
        assert second["ok"] and second["state"] == "rejected", second
        assert second["reason"] == "fee_budget_exhausted"
        third = await request(nc, command("c", max_fee_msat=30_000))
        assert third["ok"] and third["state"] == "dispatched", third
        stream = budget_stream_id("eu", budget_day(now_ms()))
        budget = await engine.processor.view(stream)
        events = [{"type": e.type, "data": e.data} for e in budget.events]
        assert [e["type"] for e in events] == ["RebalanceBudgetReserved"] * 2
        assert budget_used_msat(events) == 100_000 <= BUDGET_MSAT
        rejected = await engine.processor.view(second["intent_id"])
        assert [e.type for e in rejected.events] == ["RebalanceRequested", "RebalanceRejected"]
        # Another region's day is its own budget.
        us = await request(nc, command("d", max_fee_msat=40_000, source_region="us",
                                       source_node="us-lnd", target_region="eu",
                                       target_node="eu-lnd"))  # fmt: skip
        assert us["ok"] and us["state"] == "dispatched", us
