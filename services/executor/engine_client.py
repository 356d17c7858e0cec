"""The executor's side of the engine API: report outcomes, ask whether an attempt is current.

Both go over core NATS request/reply (``corridor.api.v1.intents.*``); the engine replies after
commit. Timeouts, missing responders and ``unavailable`` replies are retried with capped
exponential backoff; any other refusal raises ``OutcomeRefused``, final only for a status
query's ``not_found`` (ADR 0063); the worker holds and retries the order on any other.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog

from schemas.channel_messages import RecordChannelOpReport
from schemas.codec import encode
from schemas.commands import GetPaymentIntent, GetPaymentIntentStatus, RecordPaymentOutcome
from schemas.jit_messages import JitCommand
from schemas.lsp_messages import RecordLspOrderReport
from schemas.receive_messages import (
    ExpiredInvoices,
    GetExpiredInvoices,
    GetInvoiceCursor,
    InvoiceCursor,
    OpenInvoice,
    RecordInvoiceState,
)
from schemas.records import RecordedEvent
from schemas.replies import CommandAccepted, CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.bus import subjects
from services.bus.port import Bus, NoResponders
from services.domain.intent.transitions import AWAITING_EVIDENCE_STATUSES, ON_THE_WIRE_STATUSES
from services.executor.errors import EngineUnavailable, OutcomeRefused
from services.executor.limits import ExecutorLimits
from services.metrics.series import EXECUTOR_INVOICES
from services.tracing import TRACEPARENT

log = structlog.get_logger("corridor.executor")

_command_reply = msgspec.json.Decoder(CommandAccepted | CommandRejected)
_status_reply = msgspec.json.Decoder(PaymentIntentStatus | CommandRejected)
_view_reply = msgspec.json.Decoder(PaymentIntentView | CommandRejected)
_cursor_reply = msgspec.json.Decoder(InvoiceCursor | CommandRejected)
_expired_reply = msgspec.json.Decoder(ExpiredInvoices | CommandRejected)
# An outcome is reported only for an order the engine confirmed (status) first, so a
# "not_found" there means the engine has not caught up (or a store was restored behind
# JetStream): retry, never drop an outcome.
_RETRYABLE_CODES = frozenset({"unavailable", "not_found"})
# The engine commits an order before any executor can receive it, so a status query that finds
# no intent is final: the order was forged, or the log lost it. Raised as ``OutcomeRefused``
# (``not_found``), it terminates the order and records it for the operator (ADR 0063) instead
# of retrying it forever.
_STATUS_RETRYABLE_CODES = frozenset({"unavailable"})
# The only refusal an executor lets an order go for; any other is held and retried (ADR 0072).
_STATUS_FINAL_CODES = frozenset({"not_found"})


class AttemptStatus(msgspec.Struct, frozen=True, kw_only=True):
    state: str
    attempt: int  # the latest dispatched attempt, 0 if none

    def awaits_send(self, attempt: int) -> bool:
        """True if ``attempt`` is the engine's current attempt and nothing was reported yet."""
        return self.state == "dispatched" and self.attempt == attempt

    def awaits_evidence(self, attempt: int) -> bool:
        """True if the engine waits for the node's record of ``attempt``, which was reported
        (in flight, or succeeded without a valid preimage): a re-issued order asks the node."""
        reported = self.state in AWAITING_EVIDENCE_STATUSES and self.state != "dispatched"
        return reported and self.attempt == attempt

    def is_current(self, attempt: int) -> bool:
        # The engine waits for the node's evidence on the current attempt.
        return self.state in ON_THE_WIRE_STATUSES and self.attempt == attempt


class EngineClient:
    def __init__(self, bus: Bus, *, node: str, limits: ExecutorLimits) -> None:
        self._bus = bus
        # The subject's last token is the node: the one token an executor's credential may
        # publish outcomes under, so the engine knows which node reported (ADR 0060).
        self._subject = f"{subjects.API_PREFIX}.outcome.{node}"
        # A read names its reader: the executor of this node (ADR 0061).
        self._status_subject = f"{subjects.API_STATUS}.executor.{node}"
        self._invoice_subject = f"{subjects.API_PREFIX}.invoice.{node}"
        self._node = node
        self._channel_subject = f"{subjects.API_PREFIX}.channel_report.{node}"  # ADR 0234
        self._jit_subjects = {  # ADR 0261
            verb_type: f"{subjects.API_PREFIX}.{verb}.{node}"
            for verb, verb_type in subjects.JIT_VERBS.items()
        }
        self._limits = limits

    async def record(
        self,
        outcome: RecordPaymentOutcome,
        *,
        causation_id: str,
        correlation_id: str,
        traceparent: str | None = None,
    ) -> CommandAccepted:
        """Commit ``outcome``; returns once the engine has it durably (duplicates included)."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        if traceparent is not None:
            headers[TRACEPARENT] = traceparent
        reply = await self._request(
            self._subject, encode(outcome), headers, _command_reply, retryable=_RETRYABLE_CODES
        )
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

    async def record_invoice(
        self, report: RecordInvoiceState, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted:
        """Commit a receive's invoice report (ADR 0220); ``OutcomeRefused`` if refused."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        reply = await self._request(
            self._invoice_subject, encode(report), headers, _command_reply,
            retryable=frozenset({"unavailable"}),
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, CommandAccepted)
        EXECUTOR_INVOICES.labels(report.region, report.node, report.state).inc()
        log.info("invoice_report_committed", report=report.state, state=reply.state,
                 duplicate=reply.duplicate)  # fmt: skip
        return reply

    async def invoice_cursor(self) -> int:
        """Where this node's settlement follower resumes (ADR 0221)."""
        query = GetInvoiceCursor(node=self._node)
        reply = await self._request(
            self._status_subject, encode(query), {}, _cursor_reply,
            retryable=_STATUS_RETRYABLE_CODES,
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, InvoiceCursor)
        return reply.pay_index

    async def expired_invoices(self, *, before_s: int) -> tuple[OpenInvoice, ...]:
        """This node's open invoices past their expiry, as the log has them (ADR 0221)."""
        query = GetExpiredInvoices(node=self._node, before_s=before_s)
        reply = await self._request(
            self._status_subject, encode(query), {}, _expired_reply,
            retryable=_STATUS_RETRYABLE_CODES,
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, ExpiredInvoices)
        return reply.invoices

    async def record_channel_op(
        self, report: RecordChannelOpReport, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted:
        """Commit a channel operation's report (ADR 0234); duplicates are answered, not
        recorded again."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        reply = await self._request(
            self._channel_subject, encode(report), headers, _command_reply,
            retryable=_RETRYABLE_CODES,
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, CommandAccepted)
        log.info("channel_report_committed", stage=report.stage, state=reply.state)
        return reply

    async def record_jit(
        self, command: JitCommand, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted:
        """Commit a JIT channel sale's command (ADR 0261); a duplicate is answered, not
        recorded again. Raises ``OutcomeRefused`` with the engine's refusal."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        reply = await self._request(
            self._jit_subjects[type(command).__name__], encode(command), headers,
            _command_reply, retryable=frozenset({"unavailable"}),
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, CommandAccepted)
        log.info("jit_command_committed", command=type(command).__name__, state=reply.state)
        return reply

    async def record_lsp_report(
        self, report: RecordLspOrderReport, *, causation_id: str, correlation_id: str
    ) -> CommandAccepted:
        """Commit an LSP order's report (ADR 0252) on this node's own report subject."""
        headers = {subjects.HDR_MSG_ID: causation_id, subjects.HDR_CORRELATION_ID: correlation_id}
        reply = await self._request(
            f"{subjects.LSP_API_PREFIX}.report.{self._node}", encode(report), headers,
            _command_reply, retryable=_STATUS_RETRYABLE_CODES,
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, CommandAccepted)
        log.info("lsp_report_committed", stage=report.stage, state=reply.state)
        return reply

    async def lsp_order_events(self, lsp_order_id: str) -> list[RecordedEvent]:
        """The log's record of an LSP order of this node (ADR 0252)."""
        reply = await self._request(
            f"{subjects.LSP_GET}.executor.{self._node}",
            encode(GetPaymentIntent(intent_id=lsp_order_id)), {}, _view_reply,
            retryable=_STATUS_RETRYABLE_CODES,
        )  # fmt: skip
        if isinstance(reply, CommandRejected):
            raise OutcomeRefused(reply.error.code, reply.error.message)
        assert isinstance(reply, PaymentIntentView)
        return list(reply.events)

    async def attempt_status(self, intent_id: str) -> AttemptStatus:
        query = GetPaymentIntentStatus(intent_id=intent_id)
        reply = await self._request(
            self._status_subject,
            encode(query),
            {},
            _status_reply,
            retryable=_STATUS_RETRYABLE_CODES,
        )
        if isinstance(reply, CommandRejected):
            final = reply.error.code in _STATUS_FINAL_CODES
            raise OutcomeRefused(reply.error.code, reply.error.message, final=final)
        assert isinstance(reply, PaymentIntentStatus)
        return AttemptStatus(state=reply.state, attempt=reply.attempt)

    async def _request(
        self,
        subject: str,
        body: bytes,
        headers: dict[str, str],
        decoder: msgspec.json.Decoder[Any],
        *,
        retryable: frozenset[str],
    ) -> Any:
        limits = self._limits
        for attempt in range(1, limits.engine_attempts_max + 1):
            try:
                msg = await self._bus.request(
                    subject, body, headers=headers, timeout_s=limits.engine_request_timeout_s
                )
                reply = decoder.decode(msg.data)
            except (TimeoutError, NoResponders) as exc:
                log.warning("engine_request_retry", attempt=attempt, error=type(exc).__name__)
            else:
                if not (isinstance(reply, CommandRejected) and reply.error.code in retryable):
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
