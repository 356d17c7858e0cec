"""The executor's side of the engine API: report outcomes, ask whether an attempt is current.

Both go over core NATS request/reply (``corridor.api.v1.intents.*``); the engine replies after
commit. Timeouts, missing responders and ``unavailable`` replies are retried with capped
exponential backoff; any other refusal is a bug on one side and raises ``OutcomeRefused``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client

from schemas.codec import encode
from schemas.commands import GetPaymentIntentStatus, RecordPaymentOutcome
from schemas.replies import CommandAccepted, CommandRejected, PaymentIntentStatus
from services.bus import subjects
from services.executor.errors import EngineUnavailable, OutcomeRefused
from services.executor.limits import ExecutorLimits

log = structlog.get_logger("corridor.executor")

_command_reply = msgspec.json.Decoder(CommandAccepted | CommandRejected)
_status_reply = msgspec.json.Decoder(PaymentIntentStatus | CommandRejected)
# A work order proves its intent exists, so "not_found" means the engine has not caught up
# (or a store was restored behind JetStream): retry, never drop the work order.
_RETRYABLE_CODES = frozenset({"unavailable", "not_found"})
# States in which the engine waits for the node's evidence on the current attempt.
_ON_THE_WIRE = frozenset({"dispatched", "in_flight"})


class AttemptStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    attempt: int  # the latest dispatched attempt, 0 if none

    def awaits_send(self, attempt: int) -> bool:
        """True if ``attempt`` is the engine's current attempt and nothing was reported yet."""
        return self.state == "dispatched" and self.attempt == attempt

    def is_current(self, attempt: int) -> bool:
        return self.state in _ON_THE_WIRE and self.attempt == attempt


class EngineClient:
    def __init__(self, nc: Client, *, executor_id: str, limits: ExecutorLimits) -> None:
        self._nc = nc
        self._subject = f"{subjects.API_PREFIX}.outcome.{executor_id}"
        self._limits = limits

    async def record(
        self, outcome: RecordPaymentOutcome, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted:
        """Commit ``outcome``; returns once the engine has it durably (duplicates included)."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        reply = await self._request(self._subject, encode(outcome), headers, _command_reply)
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, CommandAccepted)
        log.info(
            "outcome_committed",
            outcome=outcome.outcome,
            state=reply.state,
            duplicate=reply.duplicate,
        )
        return reply

    async def attempt_status(self, intent_id: str) -> AttemptStatus:
        query = GetPaymentIntentStatus(intent_id=intent_id)
        reply = await self._request(subjects.API_STATUS, encode(query), {}, _status_reply)
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, PaymentIntentStatus)
        return AttemptStatus(state=reply.state, attempt=reply.attempt)

    async def _request(
        self, subject: str, body: bytes, headers: dict[str, str], decoder: msgspec.json.Decoder[Any]
    ) -> Any:
        limits = self._limits
        for attempt in range(1, limits.engine_attempts_max + 1):
            try:
                msg = await self._nc.request(
                    subject, body, timeout=limits.engine_request_timeout_s, headers=headers
                )
                reply = decoder.decode(msg.data)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                log.warning("engine_request_retry", attempt=attempt, error=type(exc).__name__)
            else:
                if not (
                    isinstance(reply, CommandRejected) and reply.error.code in _RETRYABLE_CODES
                ):
                    return reply
                log.warning("engine_request_retry", attempt=attempt, error=reply.error.code)
            if attempt < limits.engine_attempts_max:
                await asyncio.sleep(
                    min(
                        limits.engine_backoff_s_first * 2 ** (attempt - 1),
                        limits.engine_backoff_s_max,
                    )
                )
        raise EngineUnavailable(
            f"no committed reply from {subject} after {limits.engine_attempts_max} attempts"
        )
