"""Intents waiting for approval expire at their deadline, through a recorded command."""

from __future__ import annotations

import json

from nats.aio.client import Client

from schemas.commands import SubmitPaymentIntent
from services.bootstrap import bootstrap
from services.domain.policy import PolicyVerdict
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class ApprovalPolicy:
    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        return PolicyVerdict(tier="approval", policy_version=1, approval_window_ms=60_000)


async def test_awaiting_approval_expires_at_deadline(
    nats_url: str, database_url: str, nc: Client
) -> None:
    clock = ManualClock(1_800_000_000_000)
    policy = ApprovalPolicy()
    engine = await bootstrap(
        Settings(), nats_url=nats_url, database_url=database_url, clock=clock,
        policy=lambda: policy,
    )  # fmt: skip
    await engine.start()
    try:
        msg = await nc.request(
            "corridor.api.v1.intents.submit.alice", json.dumps(submit()).encode(), timeout=10
        )
        reply = json.loads(msg.data)
        assert reply["state"] == "awaiting_approval"
        clock.now += 59_999
        engine.deadlines.poke()
        stream = await engine.store.read_stream(reply["intent_id"])
        assert stream[-1].type == "IntentApprovalRequested"
        clock.now += 1
        engine.deadlines.poke()

        async def expired() -> bool:
            events = await engine.store.read_stream(reply["intent_id"])
            return events[-1].type == "IntentExpired"

        await wait_for(expired, what="the intent to expire")
        # An approval after expiry is refused: the intent is final.
        approve = {"type": "ApprovePaymentIntent", "version": 1,
                   "intent_id": reply["intent_id"], "operator_id": "op"}  # fmt: skip
        msg = await nc.request(
            "corridor.api.v1.intents.approve.op", json.dumps(approve).encode(), timeout=10
        )
        assert json.loads(msg.data)["error"]["code"] == "invalid_transition"
    finally:
        await engine.stop()


async def test_deadlines_survive_a_restart(nats_url: str, database_url: str, nc: Client) -> None:
    clock = ManualClock(1_800_000_000_000)
    policy = ApprovalPolicy()

    async def start():
        engine = await bootstrap(
            Settings(), nats_url=nats_url, database_url=database_url, clock=clock,
            policy=lambda: policy,
        )  # fmt: skip
        await engine.start()
        return engine

    engine = await start()
    msg = await nc.request(
        "corridor.api.v1.intents.submit.alice", json.dumps(submit()).encode(), timeout=10
    )
    intent_id = json.loads(msg.data)["intent_id"]
    await engine.stop()
    clock.now += 120_000
    engine = await start()
    try:

        async def expired() -> bool:
            events = await engine.store.read_stream(intent_id)
            return events[-1].type == "IntentExpired"

        await wait_for(expired, what="the restarted engine to expire the intent")
    finally:
        await engine.stop()
