"""One webhook endpoint: its registration, who owns it, whether it is still delivered to.

``decide`` judges a command against the endpoint as the log has it (``None``: never registered)
and returns the events to record; ``evolve`` folds one event. Both are pure: time arrives as
``now_ms``, the endpoint id is derived by the engine before (``webhook_planning``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schemas import errors
from schemas.events import EventData
from schemas.webhook_messages import (
    WEBHOOK_ENDPOINTS_PER_OWNER_MAX,
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
    WebhookCommand,
    WebhookDeliveryFailed,
    WebhookEndpointDisabled,
    WebhookEndpointRegistered,
    WebhookEndpointView,
)
from services.domain.webhooks.url_rules import check_url


@dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: str
    owner: str
    url: str
    event_types: tuple[str, ...]
    secret_rotation: int
    registered_at_ms: int
    version: int
    active: bool = True
    disabled_reason: str | None = None
    failed_deliveries: int = 0

    def view(self) -> WebhookEndpointView:
        return WebhookEndpointView(
            endpoint_id=self.endpoint_id, url=self.url, event_types=self.event_types,
            active=self.active, disabled_reason=self.disabled_reason,
            registered_at_ms=self.registered_at_ms, failed_deliveries=self.failed_deliveries,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class WebhookRules:
    # Loopback URLs only where the deployment says so (ADR 0177).
    allow_loopback: bool = False


def decide(
    endpoint: Endpoint | None,
    command: WebhookCommand,
    *,
    endpoint_id: str,
    owner_active: int,
    rules: WebhookRules,
    now_ms: int,
) -> list[EventData]:
    """The events ``command`` records on ``endpoint_id``; ``[]`` when nothing is new.
    ``owner_active``: how many active endpoints the command's owner has now."""
    match command:
        case RegisterWebhookEndpoint():
            return _register(endpoint, command, endpoint_id, owner_active, rules, now_ms)
        case RemoveWebhookEndpoint():
            # Another caller's endpoint is answered as a missing one: ids are not disclosed.
            if endpoint is None or endpoint.owner != command.caller_id:
                raise errors.NotFound("no such webhook endpoint", field="endpoint_id")
            if not endpoint.active:
                return []
            return [_disabled(endpoint, "removed", None, now_ms)]
        case DisableWebhookEndpoint():
            if endpoint is None:
                raise errors.NotFound("no such webhook endpoint", field="endpoint_id")
            if not endpoint.active:
                return []
            return [_disabled(endpoint, command.reason, command.http_status, now_ms)]
        case RecordWebhookDeliveryFailed():
            if endpoint is None:
                raise errors.NotFound("no such webhook endpoint", field="endpoint_id")
            return [
                WebhookDeliveryFailed(
                    endpoint_id=endpoint.endpoint_id,
                    owner=endpoint.owner,
                    webhook_id=command.webhook_id,
                    position=command.position,
                    event_type=command.event_type,
                    attempts=command.attempts,
                    last_error=command.last_error,
                    failed_at_ms=now_ms,
                )
            ]
    raise AssertionError(f"unhandled webhook command {type(command).__name__}")


def _register(
    endpoint: Endpoint | None, command: RegisterWebhookEndpoint, endpoint_id: str,
    owner_active: int, rules: WebhookRules, now_ms: int,
) -> list[EventData]:  # fmt: skip
    event_types = tuple(sorted(set(command.event_types)))
    if endpoint is not None:
        assert endpoint.owner == command.caller_id, "the endpoint id is derived from the owner"
        if endpoint.url != command.url or endpoint.event_types != event_types:
            raise errors.IdempotencyMismatch(
                "this idempotency_key registered a different url or event types",
                field="idempotency_key",
            )
        return []
    check_url(command.url, allow_loopback=rules.allow_loopback)
    if owner_active >= WEBHOOK_ENDPOINTS_PER_OWNER_MAX:
        raise errors.Forbidden(
            f"at most {WEBHOOK_ENDPOINTS_PER_OWNER_MAX} active webhook endpoints per caller",
            field="url",
        )
    return [
        WebhookEndpointRegistered(
            endpoint_id=endpoint_id,
            owner=command.caller_id,
            url=command.url,
            event_types=event_types,
            secret_rotation=0,
            registered_at_ms=now_ms,
        )
    ]


def _disabled(
    endpoint: Endpoint, reason: str, http_status: int | None, now_ms: int
) -> WebhookEndpointDisabled:
    assert reason in ("removed", "gone")
    return WebhookEndpointDisabled(
        endpoint_id=endpoint.endpoint_id, owner=endpoint.owner, reason=reason,  # type: ignore[arg-type]
        http_status=http_status, disabled_at_ms=now_ms,
    )  # fmt: skip


def evolve(endpoint: Endpoint | None, event: EventData) -> Endpoint:
    match event:
        case WebhookEndpointRegistered():
            assert endpoint is None, "an endpoint is registered once"
            return Endpoint(
                endpoint_id=event.endpoint_id, owner=event.owner, url=event.url,
                event_types=tuple(event.event_types), secret_rotation=event.secret_rotation,
                registered_at_ms=event.registered_at_ms, version=1,
            )  # fmt: skip
        case WebhookEndpointDisabled():
            assert endpoint is not None and endpoint.endpoint_id == event.endpoint_id
            return replace(
                endpoint, active=False, disabled_reason=event.reason, version=endpoint.version + 1
            )
        case WebhookDeliveryFailed():
            assert endpoint is not None and endpoint.endpoint_id == event.endpoint_id
            return replace(
                endpoint,
                failed_deliveries=endpoint.failed_deliveries + 1,
                version=endpoint.version + 1,
            )
    raise AssertionError(f"not a webhook event: {type(event).__name__}")
