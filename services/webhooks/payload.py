"""One settlement event as a webhook message: its id, the raw JSON body, and how it is signed.

The body follows Standard Webhooks' recommended shape ``{"type", "timestamp", "data"}``; the
webhook id is the event's id, so a retry, a redelivery after a restart and the history all
carry the same id and a receiver dedupes by it. Signing is the ``standardwebhooks`` package's
own (``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` over ``id.timestamp.body``),
with a fresh timestamp on every attempt: receivers refuse ones older than five minutes.
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from schemas.webhook_messages import SETTLEMENT_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class WebhookMessage:
    webhook_id: str
    event_type: str
    position: int
    intent_id: str
    body: str  # the exact bytes signed and sent, as text (JSON is UTF-8)

    def as_history_entry(self) -> dict[str, Any]:
        return {"webhook_id": self.webhook_id, "position": self.position,
                "payload": json.loads(self.body)}  # fmt: skip


def from_recorded(recorded: dict[str, Any]) -> WebhookMessage | None:
    """The message for a ``RecordedEvent`` as the relay publishes it; ``None`` if it is not a
    settlement event."""
    event_type = recorded.get("type")
    if event_type not in SETTLEMENT_EVENT_TYPES:
        return None
    position = int(recorded["position"])
    intent_id = str(recorded["stream_id"])
    at = datetime.fromtimestamp(int(recorded["recorded_at_ms"]) / 1000, tz=UTC)
    body = {
        "type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": {
            "intent_id": intent_id,
            "position": position,
            "event_id": recorded["event_id"],
            "event": recorded.get("data", {}),
        },
    }
    return WebhookMessage(
        webhook_id=str(recorded["event_id"]), event_type=str(event_type), position=position,
        intent_id=intent_id, body=json.dumps(body, separators=(",", ":"), sort_keys=True),
    )  # fmt: skip


def signed_headers(message: WebhookMessage, secret: str, now: datetime) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt at ``now``."""
    signature = Webhook(secret).sign(message.webhook_id, now, message.body)
    return {
        "webhook-id": message.webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
