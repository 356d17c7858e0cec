"""Policy changes are event-sourced and need a second operator (two-person rule)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from nats.aio.client import Client

from services.bootstrap import bootstrap
from services.policy.loader import load_default_policy
from services.settings import Settings
from tests.factories import submit


async def _request(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    return json.loads(msg.data)


def _stricter_document() -> dict[str, Any]:
    document = msgspec.to_builtins(load_default_policy())
    document["version"] = 2
    document["autonomy"]["levels"]["supervised"]["auto_max_msat"] = 100_000
    return document


async def test_two_person_rule_then_new_version_judges_intents(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        agent_submit = submit(key="a-1", caller_id="bot", kind="agent", amount_msat=500_000,
                              max_fee_msat=10_000)  # fmt: skip
        before = await _request(nc, "corridor.api.v1.intents.submit.bot", agent_submit)
        assert before["state"] == "dispatched"  # v1: agents run auto up to 1,000 sat

        propose = {"type": "ProposePolicy", "version": 1, "policy_version": 2,
                   "document": _stricter_document(), "proposer_id": "op-a"}  # fmt: skip
        proposed = await _request(nc, "corridor.api.v1.policy.propose.op-a", propose)
        assert proposed["ok"] and proposed["active_version"] is None, proposed

        approve = {"type": "ApprovePolicy", "version": 1, "policy_version": 2}
        same = await _request(
            nc, "corridor.api.v1.policy.approve.op-a", {**approve, "approver_id": "op-a"}
        )
        assert same["error"]["code"] == "two_person_rule"
        spoofed = await _request(
            nc, "corridor.api.v1.policy.approve.op-a", {**approve, "approver_id": "op-b"}
        )
        assert spoofed["error"]["code"] == "identity_mismatch"
        assert spoofed["error"]["field"] == "approver_id"
        approved = await _request(
            nc, "corridor.api.v1.policy.approve.op-b", {**approve, "approver_id": "op-b"}
        )
        assert approved["ok"] and approved["active_version"] == 2

        after = await _request(
            nc, "corridor.api.v1.intents.submit.bot", {**agent_submit, "idempotency_key": "a-2"}
        )
        assert after["state"] != "dispatched"
        checked = (await engine.store.read_stream(after["intent_id"]))[1]
        assert checked.type == "IntentPolicyChecked"
        assert checked.payload["policy_version"] == 2
        assert checked.metadata["policy_version"] == 2
        lower = await _request(nc, "corridor.api.v1.policy.propose.op-a", propose)
        assert lower["error"]["code"] == "policy_version_not_increasing"
    finally:
        await engine.stop()

    # A restarted engine judges with the activated version.
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        assert engine.processor.active_policy_version == 2
    finally:
        await engine.stop()


async def test_invalid_policy_document_is_refused_with_its_field(engine: Any, nc: Client) -> None:
    document = _stricter_document()
    document["fees"]["cap_ppm"] = -5
    propose = {"type": "ProposePolicy", "version": 1, "policy_version": 2,
               "document": document, "proposer_id": "op-a"}  # fmt: skip
    reply = await _request(nc, "corridor.api.v1.policy.propose.op-a", propose)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "schema_violation"
    assert reply["error"]["field"] == "document.fees.cap_ppm"
