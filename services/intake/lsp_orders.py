"""``corridor.api.v1.lsp.*`` (ADR 0252): LSP orders through the engine. ``order.<id>`` from an
operator or a service caller, ``report.<node>`` from the order's node's executor (the engine
drives the order's payment first, ``services/engine/lsp_order_payments.py``), and
``get.<role>.<id>`` to read an order: operators, auditors and the engine every order, a caller
its own, an executor its node's."""

from __future__ import annotations

from typing import Any

import structlog

from schemas import codec, errors
from schemas import lsp_messages as lm
from schemas.commands import GetPaymentIntent
from schemas.replies import CommandRejected, PaymentIntentView
from services.bus import subjects
from services.bus.port import Message
from services.domain.lsp_orders import LspOrder, replay
from services.domain.principal import Principal
from services.engine.commands import rejected
from services.engine.event_codec import to_domain, to_recorded
from services.engine.lsp_order_payments import before_report
from services.engine.processor import CommandProcessor
from services.intake.identity import Authenticator
from services.intake.parsing import parse_command, query_reader


def may_read_lsp_order(reader: Principal | None, order: LspOrder) -> bool:
    if reader is None or reader.role in ("engine", "operator", "auditor"):
        return True
    if reader.role == "executor":
        return reader.id == order.node
    return reader.id == order.caller.id


async def answer_lsp(msg: Message, auth: Authenticator, processor: CommandProcessor) -> Any:
    subject = msg.subject
    if subject == subjects.LSP_GET or subject.startswith(subjects.LSP_GET + "."):
        rest = subject[len(subjects.LSP_GET) :]
        reader = query_reader("status", tuple(rest[1:].split(".")) if rest else (), auth)
        query = codec.decode_request(msg.data)
        if not isinstance(query, GetPaymentIntent):
            raise errors.UnknownType(f"{subject} answers GetPaymentIntent only", field="type")
        return await lsp_order_view(processor, query.intent_id, reader)
    envelope = parse_command(
        subject, subjects.LSP_API_PREFIX, msg.data, msg.headers, authenticator=auth,
        verbs=subjects.LSP_VERBS,
    )  # fmt: skip
    structlog.contextvars.bind_contextvars(correlation_id=envelope.correlation_id)
    command = envelope.command
    if isinstance(command, lm.RecordLspOrderReport) and lm.is_lsp_order_stream(
        command.lsp_order_id
    ):
        waiting = await before_report(processor, command, envelope.principal)
        if waiting is not None:
            return rejected(waiting)
    return await processor.execute(envelope)


async def lsp_order_view(
    processor: CommandProcessor, lsp_order_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    if not lm.is_lsp_order_stream(lsp_order_id):
        return rejected(errors.NotFound(f"no LSP order {lsp_order_id}", field="intent_id"))
    history = await processor.store.read_stream(lsp_order_id)
    state = replay(to_domain(e) for e in history)
    if state is None or not may_read_lsp_order(reader, state):
        return rejected(errors.NotFound(f"no LSP order {lsp_order_id}", field="intent_id"))
    return PaymentIntentView(
        intent_id=lsp_order_id, state=str(state.status), stream_version=state.version,
        events=[to_recorded(e) for e in history], reason=state.outcome,
    )  # fmt: skip
