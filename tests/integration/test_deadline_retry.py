"""An expiry the store could not commit is sent again (issue 13, finding 2; ADR 0071).

Before, the scheduler popped the deadline, sent ``ExpirePaymentIntent``, and forgot it whatever
the answer: an ``unavailable`` during a PostgreSQL restart left the intent waiting for approval
until the engine next started.
"""

from __future__ import annotations

import json

import pytest
from nats.aio.client import Client

from schemas import errors
from schemas.commands import ExpirePaymentIntent
from schemas.replies import CommandRejected
from services.bootstrap import bootstrap
from services.engine.processor import CommandEnvelope, Reply
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_deadlines import ApprovalPolicy, ManualClock

RETRY_MS = 1_000  # services.engine.deadlines.EXPIRY_RETRY_MS


async def test_an_expiry_answered_unavailable_is_sent_again(
    nats_url: str, database_url: str, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = ManualClock(1_800_000_000_000)
    policy = ApprovalPolicy()
    engine = await bootstrap(
        Settings(), nats_url=nats_url, database_url=database_url, clock=clock,
        policy=lambda: policy,
    )  # fmt: skip
    await engine.start()
    refused: list[str] = []
    execute = engine.processor.execute

    async def unavailable_once(envelope: CommandEnvelope) -> Reply:
        if isinstance(envelope.command, ExpirePaymentIntent) and not refused:
            refused.append(envelope.command.intent_id)
            return CommandRejected(error=errors.Unavailable("event store unavailable").detail())
        return await execute(envelope)

    monkeypatch.setattr(engine.processor, "execute", unavailable_once)
    try:
        msg = await nc.request(
            "corridor.api.v1.intents.submit.alice", json.dumps(submit()).encode(), timeout=10
        )
        intent_id = json.loads(msg.data)["intent_id"]
        clock.now += 60_000
        engine.deadlines.poke()
        await wait_for(lambda: refused == [intent_id], what="the expiry to meet the outage")
        clock.now += RETRY_MS
        engine.deadlines.poke()

        async def expired() -> bool:
            events = await engine.store.read_stream(intent_id)
            return events[-1].type == "IntentExpired"

        await wait_for(expired, what="the expiry to be sent again")
    finally:
        await engine.stop()
