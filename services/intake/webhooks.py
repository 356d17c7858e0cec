"""``corridor.api.v1.webhooks.<verb>.<caller_id>``: a caller's webhook endpoints (ADR 0175).

``register`` and ``remove`` are commands, recorded in the log with the caller as actor; ``list``
answers the caller's own endpoints from the engine's view of the log. The subject's last token
is the caller, bound by its credential's publish permissions (ADR 0060).
"""

from __future__ import annotations

from typing import Any

from schemas import codec, errors
from schemas.webhook_messages import ListWebhookEndpoints, WebhookEndpointsView
from services.bus import subjects
from services.bus.port import Message
from services.engine.processor import CommandProcessor
from services.intake.identity import Authenticator
from services.intake.parsing import parse_command


async def answer_webhooks(msg: Message, auth: Authenticator, processor: CommandProcessor) -> Any:
    if msg.subject.startswith(subjects.WEBHOOKS_LIST + "."):
        token = msg.subject[len(subjects.WEBHOOKS_LIST) + 1 :]
        query = codec.decode_request(msg.data)
        if not isinstance(query, ListWebhookEndpoints):
            raise errors.UnknownType(
                f"{msg.subject} answers ListWebhookEndpoints only", field="type"
            )
        if query.caller_id != token:
            raise errors.IdentityMismatch(
                f"payload caller_id {query.caller_id!r} differs from {token!r}, which the "
                "subject's credential says",
                field="caller_id",
            )
        owner = auth.owner(token)
        book = processor.webhooks
        await book.catch_up(processor.store)
        return WebhookEndpointsView(endpoints=tuple(e.view() for e in book.owned_by(owner.id)))
    envelope = parse_command(
        msg.subject, subjects.WEBHOOKS_API_PREFIX, msg.data, msg.headers,
        authenticator=auth, verbs=subjects.WEBHOOK_VERBS,
    )  # fmt: skip
    return await processor.execute(envelope)
