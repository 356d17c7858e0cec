"""One webhook command in the writer loop: decide, evolve, events to append, the reply.

The processor only routes the command here and adopts the endpoint once the batch commits
(ADR 0175), as for reconciliation (``reconciliation_planning.py``). A registration's reply
carries the endpoint's secret, derived here and kept nowhere (ADR 0176).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from schemas import errors
from schemas.records import EventMetadata
from schemas.replies import CommandRejected
from schemas.webhook_messages import (
    WEBHOOK_COMMAND_TYPES,
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    WebhookCommand,
    WebhookCommandAccepted,
    webhook_stream,
)
from services.domain.webhooks.endpoint import Endpoint, decide, evolve
from services.engine.event_codec import to_new_events
from services.eventstore.port import NewEvent

if TYPE_CHECKING:
    from services.engine.commands import CommandEnvelope
    from services.engine.webhook_book import WebhookBook

WEBHOOK_COMMANDS: Final = (
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
)
assert set(WEBHOOK_COMMANDS) == set(WEBHOOK_COMMAND_TYPES)


def endpoint_id_for(owner: str, idempotency_key: str) -> str:
    """The same owner and key name the same endpoint: a retried registration is a duplicate."""
    digest = hashlib.sha256(f"webhook\x00{owner}\x00{idempotency_key}".encode()).hexdigest()
    return f"wh_{digest[:24]}"


def endpoint_of(command: WebhookCommand) -> str:
    if isinstance(command, RegisterWebhookEndpoint):
        return endpoint_id_for(command.caller_id, command.idempotency_key)
    return command.endpoint_id


def plan_webhook_command(
    endpoint: Endpoint | None,
    command: WebhookCommand,
    envelope: CommandEnvelope,
    *,
    book: WebhookBook,
    now_ms: int,
    new_id: Callable[[], str],
    actor: str,
) -> tuple[WebhookCommandAccepted | CommandRejected, Endpoint | None, list[NewEvent]]:
    """``(reply, the endpoint after this command or None if unchanged, events to append)``."""
    endpoint_id = endpoint_of(command)
    register = isinstance(command, RegisterWebhookEndpoint)
    try:
        if register and book.secrets is None:
            raise errors.Unavailable("webhooks are not configured on this engine")
        owner = command.caller_id if isinstance(command, RegisterWebhookEndpoint) else ""
        new_events = decide(
            endpoint, command, endpoint_id=endpoint_id, owner_active=book.active_count(owner),
            rules=book.rules, now_ms=now_ms,
        )  # fmt: skip
    except errors.CorridorError as exc:
        return CommandRejected(error=exc.detail()), None, []
    after = endpoint
    for event in new_events:
        after = evolve(after, event)
    assert after is not None, "decide refuses a command on an endpoint never registered"
    secret = None
    if register and book.secrets is not None:
        # A retry with the same key gets the same reply, secret included: only the owner can
        # send it, and the secret is the same derivation (ADR 0176).
        secret = book.secrets.secret(after.endpoint_id, after.secret_rotation)
    reply = WebhookCommandAccepted(endpoint_id=endpoint_id, secret=secret, duplicate=not new_events)
    if not new_events:
        return reply, None, []
    stream = webhook_stream(endpoint_id)
    metadata = EventMetadata(
        correlation_id=envelope.correlation_id or stream,
        causation_id=envelope.causation_id or new_id(),
        actor=actor,
    )
    first_version = endpoint.version + 1 if endpoint is not None else 1
    stored = to_new_events(stream, first_version, new_events, metadata, now_ms)
    return reply, after, stored
