"""``PaymentIntents`` over the engine's NATS API: the LSP order's invoice is paid as an
ordinary ``SubmitPaymentIntent`` of the order's caller (policy, audit trail, the engine's
idempotency by key), and followed with ``GetPaymentIntentStatus`` (ADR 0251)."""

from __future__ import annotations

import json
from typing import Any, Final

import msgspec
from nats.aio.client import Client

from schemas.commands import GetPaymentIntentStatus, SubmitPaymentIntent
from schemas.common import Caller
from services.bus import subjects
from services.domain.intent import TERMINAL_STATUSES
from services.domain.intent.status import IntentStatus
from services.lsps.orders import IntentOutcome

# The engine answers after its commit; well below a minute even under load.
REQUEST_TIMEOUT_S: Final = 15.0


class IntentRefused(Exception):
    """The engine refused the intent (policy, limits, identity): the order is not paid."""


class EngineIntents:
    def __init__(self, nc: Client, *, caller: Caller, corridor: str) -> None:
        self._nc = nc
        self._caller = caller
        self._corridor = corridor

    async def pay(self, *, key: str, invoice: str, amount_msat: int, max_fee_msat: int) -> str:
        command = SubmitPaymentIntent(
            idempotency_key=key, caller=self._caller, corridor=self._corridor,
            amount_msat=amount_msat, max_fee_msat=max_fee_msat, payment_request=invoice,
            metadata={"purpose": "lsp-order"},
        )  # fmt: skip
        reply = await self._ask(f"{subjects.API_PREFIX}.submit.{self._caller.id}", command)
        if not reply.get("ok"):
            raise IntentRefused(str(reply.get("error", reply))[:200])
        return str(reply["intent_id"])

    async def outcome(self, intent_id: str) -> IntentOutcome | None:
        query = GetPaymentIntentStatus(intent_id=intent_id)
        reply = await self._ask(f"{subjects.API_STATUS}.caller.{self._caller.id}", query)
        state = reply.get("state") if reply.get("ok") else None
        # Settled is final; succeeded is the node's proof of payment before settlement.
        if state == IntentStatus.SETTLED or state == IntentStatus.SUCCEEDED:
            return "succeeded"
        if state in TERMINAL_STATUSES:
            return "failed"  # failed, cancelled, expired or rejected: nothing was paid
        return None

    async def _ask(self, subject: str, body: Any) -> dict[str, Any]:
        msg = await self._nc.request(subject, msgspec.json.encode(body), timeout=REQUEST_TIMEOUT_S)
        reply = json.loads(msg.data)
        assert isinstance(reply, dict)
        return reply
