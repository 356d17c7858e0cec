"""A scripted operator: approves (or, for a seeded few, rejects) intents waiting for approval."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import structlog
from nats.aio.client import Client

from services.bus import subjects

log = structlog.get_logger("corridor.demo.operator")

REJECT_SHARE_PCT = 10
OPERATOR_ID = "pilot-operator"


class ScriptedOperator:
    def __init__(self, nc: Client, *, seed: int) -> None:
        self._nc = nc
        self._seed = seed
        self.approved = 0
        self.rejected = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None

    async def start(self) -> None:
        # Every caller's approval requests, live (ADR 0067): started before the workload, so
        # no request is published before this subscription exists.
        self._sub = await self._nc.subscribe(
            subjects.intent_event_subject("*", "IntentApprovalRequested"), cb=self._on_event
        )
        await self._nc.flush()

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_event(self, msg: Any) -> None:
        event = json.loads(msg.data)
        task = asyncio.create_task(self._decide(event["stream_id"]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, intent_id: str) -> None:
        digest = hashlib.sha256(f"{self._seed}:{intent_id}".encode()).digest()
        reject = digest[0] * 100 // 256 < REJECT_SHARE_PCT
        verb = "reject" if reject else "approve"
        body: dict[str, Any] = {
            "type": "RejectPaymentIntent" if reject else "ApprovePaymentIntent",
            "version": 1,
            "intent_id": intent_id,
            "operator_id": OPERATOR_ID,
        }
        body["reason" if reject else "note"] = "pilot script"
        reply = await self._nc.request(
            f"{subjects.API_PREFIX}.{verb}.{OPERATOR_ID}", json.dumps(body).encode(), timeout=30
        )
        if json.loads(reply.data).get("ok"):
            if reject:
                self.rejected += 1
            else:
                self.approved += 1
