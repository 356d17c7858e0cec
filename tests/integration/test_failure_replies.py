"""What a caller learns from a reply: why policy refused, and which nodes a failure tried.

A real submit over NATS to a real engine on PostgreSQL (ADR 0014).
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.policy.loader import load_default_policy
from services.settings import Settings
from tests.factories import invoice, submit

SUBMIT = "corridor.api.v1.intents.submit.alice"
OUTCOME = "corridor.api.v1.intents.outcome.{node}"
GET = "corridor.api.v1.intents.get"
AMOUNT_MSAT = 50_000


async def request(nc: Client, subject: str, body: Any) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    reply: dict[str, Any] = json.loads(msg.data)
    return reply


async def get(nc: Client, intent_id: str) -> dict[str, Any]:
    return await request(nc, GET, {"type": "GetPaymentIntent", "version": 1,
                                   "intent_id": intent_id})  # fmt: skip


def over_the_fee_cap() -> dict[str, Any]:
    cap_msat = load_default_policy().fees.allowed_msat(AMOUNT_MSAT)
    return submit(key="fee-1", amount_msat=AMOUNT_MSAT, max_fee_msat=cap_msat + 1)


def assert_names_the_fee_cap(reply: dict[str, Any]) -> None:
    fees = load_default_policy().fees
    assert reply["ok"] is True and reply["state"] == "rejected", reply
    assert reply["reason"] == "fee_cap_exceeded"
    rules = {r["rule"]: r for r in reply["explanation"]}
    assert rules["fee.cap"] == {
        "rule": "fee.cap",
        "effect": "reject",
        "inputs": {
            "max_fee_msat": fees.allowed_msat(AMOUNT_MSAT) + 1,
            "allowed_msat": fees.allowed_msat(AMOUNT_MSAT),
            "cap_msat": fees.cap_msat,
            "cap_ppm": fees.cap_ppm,
            "floor_msat": fees.floor_msat,
        },
    }
    assert reply["explanation"][-1]["rule"] == "fee.cap", "the refusal ends the evaluation"
    assert reply["failures"] == []


async def test_a_policy_rejection_reply_names_the_rule_and_its_numbers(
    engine: Engine, nc: Client
) -> None:
    first = await request(nc, SUBMIT, over_the_fee_cap())
    assert_names_the_fee_cap(first)
    assert first["duplicate"] is False
    again = await request(nc, SUBMIT, over_the_fee_cap())
    assert again == {**first, "duplicate": True}
    view = await get(nc, first["intent_id"])
    assert view["reason"] == "fee_cap_exceeded" and view["failures"] == []


async def test_a_duplicate_of_a_rejection_the_engine_does_not_cache_still_explains(
    nats_url: str, database_url: str, nc: Client
) -> None:
    first_engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await first_engine.start(relay=False)
    try:
        first = await request(nc, SUBMIT, over_the_fee_cap())
    finally:
        await first_engine.stop()
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)  # caches nothing: the duplicate is answered from the log
    try:
        again = await request(nc, SUBMIT, over_the_fee_cap())
    finally:
        await engine.stop()
    assert again == {**first, "duplicate": True}
    assert_names_the_fee_cap(again)


async def test_a_reply_for_an_intent_that_runs_carries_no_reason(
    engine: Engine, nc: Client
) -> None:
    reply = await request(nc, SUBMIT, submit())
    assert reply["state"] == "dispatched"
    assert (reply["reason"], reply["explanation"], reply["failures"]) == (None, [], [])


async def test_a_reply_for_an_intent_that_waits_for_approval_says_why(
    engine: Engine, nc: Client
) -> None:
    body = submit(key="big", caller_id="bot-1", kind="agent", amount_msat=2_000_000,
                  max_fee_msat=20_000)  # fmt: skip
    reply = await request(nc, "corridor.api.v1.intents.submit.bot-1", body)
    assert reply["state"] == "awaiting_approval", reply
    assert reply["reason"] is None
    effects = {r["rule"]: r["effect"] for r in reply["explanation"]}
    assert effects["autonomy.level"] in ("review", "approval")
    assert effects["approval.window"] == "approval"


async def test_a_failed_at_submit_reply_names_every_refused_candidate(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # Only a Core Lightning node in the corridor, and a keysend intent: nothing can pay it.
    settings = Settings(corridors={"us-eu": ["us/us-cln"]})
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        first = await request(nc, SUBMIT, submit(key="ks-1"))
        again = await request(nc, SUBMIT, submit(key="ks-1"))
        view = await get(nc, first["intent_id"])
    finally:
        await engine.stop()
    assert first["state"] == "failed", first
    assert first["reason"] == "no_route_candidate"
    assert first["failures"] == [
        {"region": "us", "node": "us-cln", "reason": "keysend_unsupported", "attempt": None}
    ]
    assert again == {**first, "duplicate": True}
    assert (view["state"], view["reason"], view["failures"]) == (
        "failed", first["reason"], first["failures"],
    )  # fmt: skip


async def test_proof_from_us_lnd_falls_back_to_eu_lnd_then_us_cln(
    engine: Engine, nc: Client
) -> None:
    """The default corridor us-eu is us/us-lnd, eu/eu-lnd, us/us-cln: all three are tried."""
    bolt11, payment_hash, _ = invoice(amount_msat=AMOUNT_MSAT, label="fallback")
    submitted = await request(
        nc, SUBMIT, submit(key="fb-1", payment_request=bolt11, destination=None)
    )
    assert submitted["state"] == "dispatched"
    intent_id = submitted["intent_id"]
    tried = [("us", "us-lnd"), ("eu", "eu-lnd"), ("us", "us-cln")]
    replies = []
    for attempt, (region, node) in enumerate(tried, start=1):
        outcome = {
            "type": "RecordPaymentOutcome", "version": 1, "intent_id": intent_id,
            "attempt": attempt, "outcome": "failed", "region": region, "node": node,
            "payment_hash": payment_hash, "failure_reason": "no_route",
            "confirmed_not_paid": True,
        }  # fmt: skip
        replies.append(await request(nc, OUTCOME.format(node=node), outcome))
    stream = await engine.store.read_stream(intent_id)
    dispatched = [(e.payload["region"], e.payload["node"])
                  for e in stream if e.type == "IntentDispatched"]  # fmt: skip
    assert dispatched == tried
    assert [r["state"] for r in replies] == ["dispatched", "dispatched", "failed"]
    expected = [
        {"region": region, "node": node, "reason": "no_route", "attempt": attempt}
        for attempt, (region, node) in enumerate(tried, start=1)
    ]
    assert replies[-1]["reason"] == "retry_budget_exhausted"
    assert replies[-1]["failures"] == expected
    view = await get(nc, intent_id)
    assert (view["state"], view["reason"], view["failures"]) == (
        "failed", "retry_budget_exhausted", expected,
    )  # fmt: skip
    assert view["events"][-1]["data"]["failures"] == expected
