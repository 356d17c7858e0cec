"""Deadlines outlive the engine that accepted the intent: a live engine on the same log
expires a dead engine's intents (issue 13 follow-up, ADR 0097)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from schemas.codec import decode_request
from schemas.commands import SubmitPaymentIntent
from schemas.replies import CommandAccepted
from services.bootstrap import corridor_table
from services.domain.policy import PolicyVerdict
from services.domain.routing import OrderedRouter
from services.engine import deadlines
from services.engine.clock import RandomIds
from services.engine.deadlines import DeadlineScheduler
from services.engine.processor import CommandEnvelope, CommandProcessor
from services.eventstore.postgres import PostgresEventStore
from services.settings import DEFAULT_CORRIDORS
from tests.conftest import wait_for
from tests.factories import submit

APPROVAL_WINDOW_MS = 60_000


class ManualClock:
    def __init__(self, now_ms: int) -> None:
        self.now = now_ms

    def now_ms(self) -> int:
        return self.now


class ApprovalPolicy:
    def judge(
        self, command: SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        return PolicyVerdict(
            tier="approval", policy_version=1, approval_window_ms=APPROVAL_WINDOW_MS
        )


def _processor(store: PostgresEventStore, clock: ManualClock) -> CommandProcessor:
    policy = ApprovalPolicy()
    table = corridor_table(DEFAULT_CORRIDORS)
    return CommandProcessor(
        store, clock=clock, ids=RandomIds(), policy=lambda: policy,
        router=lambda: OrderedRouter(table), network="regtest", baseline_policy_version=1,
    )  # fmt: skip


async def test_a_live_engine_expires_the_intents_of_a_dead_one(store: PostgresEventStore) -> None:
    clock = ManualClock(1_800_000_000_000)
    a, b = _processor(store, clock), _processor(store, clock)
    b_deadlines = DeadlineScheduler(b, clock)
    # B starts before A accepts anything: its start-up scan cannot find A's intent.
    await b_deadlines.load(store)
    a_task = asyncio.create_task(a.run())
    tasks = [asyncio.create_task(b.run()), asyncio.create_task(b_deadlines.run())]
    try:
        command = decode_request(json.dumps(submit(key="orphan")).encode())
        reply = await a.execute(CommandEnvelope(command=command))
        assert isinstance(reply, CommandAccepted) and reply.state == "awaiting_approval"
        # A dies with the intent waiting: nobody restarts it.
        a_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await a_task
        clock.now += APPROVAL_WINDOW_MS + deadlines.ADOPTED_GRACE_MS
        b_deadlines.poke()

        async def expired() -> bool:
            events = await store.read_stream(reply.intent_id)
            return events[-1].type == "IntentExpired"

        await wait_for(expired, what="the live engine to expire the dead engine's intent")
        assert b_deadlines.adopted == 1
        # Expiring it again (as its own engine would, were it alive) changes nothing.
        expire = decode_request(
            json.dumps(
                {"type": "ExpirePaymentIntent", "version": 1, "intent_id": reply.intent_id}
            ).encode()
        )
        again = await b.execute(CommandEnvelope(command=expire))
        assert again.ok
        assert [e.type for e in await store.read_stream(reply.intent_id)].count(
            "IntentExpired"
        ) == 1
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
