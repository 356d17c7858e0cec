"""Commands, events and replies of webhook endpoints for settlement events (issue 16, ADR 0175).

A caller registers a URL for some settlement event types of its own intents; the engine records
the endpoint on its own stream ``webhook-<endpoint_id>``. The dispatcher (``services/webhooks``)
delivers, disables an endpoint that answers 410 and records a delivery whose retry period ran
out. No secret is in any of these: each endpoint's signing secret is derived from a master key
when needed (ADR 0176).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import CallerId, Message
from schemas.events import EventData

# Browsers and most HTTP servers refuse URLs much past 2,000 characters; a webhook URL longer
# than this is a mistake, and it is stored in the log for ever.
WEBHOOK_URL_CHARS_MAX: Final = 2048
# One caller's endpoints: a few per environment is the use; each one is a JetStream consumer
# and a delivery task in the dispatcher, so the bound is on resources too.
WEBHOOK_ENDPOINTS_PER_OWNER_MAX: Final = 16
WEBHOOK_STREAM_PREFIX: Final = "webhook-"
# "wh_" and 24 hex digits of a hash (services/engine/webhook_planning.py endpoint_id_for).
WEBHOOK_ENDPOINT_ID_PATTERN: Final = r"^wh_[0-9a-f]{24}$"
# A delivery error is recorded as a short code ("http_503", "timeout", "connect"), never a
# response body or an exception text, which could carry anything.
WEBHOOK_ERROR_CHARS_MAX: Final = 32

# The settlement events a webhook can carry: an intent's final outcomes, a send's and a
# receive's (ADR 0220: paid, expired, or no invoice issued).
SettlementEventType = Literal[
    "IntentSettled",
    "IntentFailed",
    "IntentCancelled",
    "IntentExpired",
    "IntentRejected",
    "InvoicePaid",
    "InvoiceExpired",
    "ReceiveFailed",
]
SETTLEMENT_EVENT_TYPES: Final[tuple[str, ...]] = (
    "IntentSettled",
    "IntentFailed",
    "IntentCancelled",
    "IntentExpired",
    "IntentRejected",
    "InvoicePaid",
    "InvoiceExpired",
    "ReceiveFailed",
)
WebhookUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=WEBHOOK_URL_CHARS_MAX)]
EndpointId = Annotated[str, msgspec.Meta(pattern=WEBHOOK_ENDPOINT_ID_PATTERN)]
EventTypes = Annotated[
    tuple[SettlementEventType, ...],
    msgspec.Meta(min_length=1, max_length=len(SETTLEMENT_EVENT_TYPES)),
]
IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
DeliveryError = Annotated[str, msgspec.Meta(max_length=WEBHOOK_ERROR_CHARS_MAX)]
DisableReason = Literal["removed", "gone"]


def webhook_stream(endpoint_id: str) -> str:
    return f"{WEBHOOK_STREAM_PREFIX}{endpoint_id}"


class RegisterWebhookEndpoint(Message, frozen=True, kw_only=True):
    """A caller asks for its settlement events at ``url``. The same ``idempotency_key`` gives
    the same endpoint; the reply carries its signing secret (ADR 0176)."""

    caller_id: CallerId
    idempotency_key: IdempotencyKey
    url: WebhookUrl
    event_types: EventTypes
    version: Literal[1] = 1


class RemoveWebhookEndpoint(Message, frozen=True, kw_only=True):
    """A caller stops one of its own endpoints."""

    caller_id: CallerId
    endpoint_id: EndpointId
    version: Literal[1] = 1


class ListWebhookEndpoints(Message, frozen=True, kw_only=True):
    """A caller's own endpoints (a query: nothing is recorded)."""

    caller_id: CallerId
    version: Literal[1] = 1


class DisableWebhookEndpoint(Message, frozen=True, kw_only=True):
    """The dispatcher's: the endpoint answered 410 Gone (Standard Webhooks: stop sending)."""

    endpoint_id: EndpointId
    reason: DisableReason
    http_status: int | None = None
    version: Literal[1] = 1


class RecordWebhookDeliveryFailed(Message, frozen=True, kw_only=True):
    """The dispatcher's: one message's retry period ran out; the receiver catches up from the
    event history (``position``)."""

    endpoint_id: EndpointId
    webhook_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    position: Annotated[int, msgspec.Meta(ge=1)]
    event_type: SettlementEventType
    attempts: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    last_error: DeliveryError
    version: Literal[1] = 1


class WebhookEndpointRegistered(EventData, frozen=True, kw_only=True):
    endpoint_id: str
    owner: str
    url: str
    event_types: tuple[str, ...]
    # Which derivation of the master key signs for it (ADR 0176); a rotation would add one.
    secret_rotation: int = 0
    registered_at_ms: int


class WebhookEndpointDisabled(EventData, frozen=True, kw_only=True):
    endpoint_id: str
    owner: str
    reason: DisableReason
    http_status: int | None = None
    disabled_at_ms: int


class WebhookDeliveryFailed(EventData, frozen=True, kw_only=True):
    endpoint_id: str
    owner: str
    webhook_id: str
    position: int
    event_type: str
    attempts: int
    last_error: str
    failed_at_ms: int


class WebhookEndpointView(msgspec.Struct, frozen=True, kw_only=True):
    endpoint_id: str
    url: str
    event_types: tuple[str, ...]
    active: bool
    disabled_reason: str | None = None
    registered_at_ms: int
    failed_deliveries: int = 0


class WebhookCommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """A webhook command is committed. ``secret``: on a registration only, to its owner; the
    engine keeps no copy (ADR 0176)."""

    ok: Literal[True] = True
    endpoint_id: str
    secret: str | None = None
    duplicate: bool = False
    version: Literal[1] = 1


class WebhookEndpointsView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[True] = True
    endpoints: tuple[WebhookEndpointView, ...]
    version: Literal[1] = 1


# Commands a caller sends, by subject verb (``subjects.WEBHOOK_VERBS``), and the dispatcher's.
CallerWebhookCommand = RegisterWebhookEndpoint | RemoveWebhookEndpoint
DispatcherWebhookCommand = DisableWebhookEndpoint | RecordWebhookDeliveryFailed
WebhookCommand = CallerWebhookCommand | DispatcherWebhookCommand
WebhookEvent = WebhookEndpointRegistered | WebhookEndpointDisabled | WebhookDeliveryFailed
WEBHOOK_COMMAND_TYPES: tuple[type[WebhookCommand], ...] = (
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
)
WEBHOOK_QUERY_TYPES: tuple[type[ListWebhookEndpoints], ...] = (ListWebhookEndpoints,)
WEBHOOK_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls
    for cls in (WebhookEndpointRegistered, WebhookEndpointDisabled, WebhookDeliveryFailed)
}
