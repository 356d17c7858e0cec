"""What a caller can do with its webhook endpoints, whatever the transport (ADR 0175).

Each function builds the request a caller sends on ``corridor.api.v1.webhooks.<verb>.<id>``
and hands it to ``request`` (the CLI's engine client; an HTTP handler can pass its own, bound
to the identity its API key names). Identity is the subject's token: ``caller_id`` is the
credential's, never a field the user chooses apart from it.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from schemas.webhook_messages import SETTLEMENT_EVENT_TYPES
from services.bus import subjects

Request = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def register(
    request: Request, *, caller_id: str, url: str, event_types: Sequence[str],
    idempotency_key: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``WebhookCommandAccepted`` with the endpoint's ``secret`` (shown this once), or a
    ``CommandRejected``. The same ``idempotency_key`` names the same endpoint."""
    body = {
        "type": "RegisterWebhookEndpoint", "version": 1, "caller_id": caller_id,
        "idempotency_key": idempotency_key or f"wh-{secrets.token_hex(12)}",
        "url": url, "event_types": list(event_types),
    }  # fmt: skip
    return await request(f"{subjects.WEBHOOKS_API_PREFIX}.register.{caller_id}", body)


async def remove(request: Request, *, caller_id: str, endpoint_id: str) -> dict[str, Any]:
    body = {"type": "RemoveWebhookEndpoint", "version": 1, "caller_id": caller_id,
            "endpoint_id": endpoint_id}  # fmt: skip
    return await request(f"{subjects.WEBHOOKS_API_PREFIX}.remove.{caller_id}", body)


async def list_endpoints(request: Request, *, caller_id: str) -> dict[str, Any]:
    body = {"type": "ListWebhookEndpoints", "version": 1, "caller_id": caller_id}
    return await request(f"{subjects.WEBHOOKS_LIST}.{caller_id}", body)


def parse_event_types(text: str) -> list[str]:
    """``IntentSettled,IntentFailed`` (or ``all``) as a list; the engine checks each name."""
    if text.strip() == "all":
        return list(SETTLEMENT_EVENT_TYPES)
    return [t.strip() for t in text.split(",") if t.strip()]
