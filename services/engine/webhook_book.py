"""Every webhook endpoint as the log has it, for the engine and the dispatcher (ADR 0175).

Webhook commands are rare, so the writer reads an endpoint's stream before deciding one
(``refresh``), as for reconciliation; the append's stream version catches any race left. The
per-owner limit is judged from this view. The dispatcher keeps one too, brought up to date by
``catch_up``: only the webhook events after the last position it folded.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from schemas.webhook_messages import WEBHOOK_EVENT_TYPES, WEBHOOK_STREAM_PREFIX, webhook_stream
from services.domain.webhooks.endpoint import Endpoint, WebhookRules, evolve
from services.engine.event_codec import to_domain
from services.eventstore.port import EventStore
from services.webhooks.secrets import WebhookSecrets

# Events per read while folding: one query per this many.
LOAD_PAGE_EVENTS: Final = 5_000


class WebhookBook:
    def __init__(
        self, *, rules: WebhookRules | None = None, secrets: WebhookSecrets | None = None
    ) -> None:
        """``secrets``: where the engine derives a new endpoint's secret to show its owner
        (ADR 0176); without it registrations are refused."""
        self.rules = rules or WebhookRules()
        self.secrets = secrets
        self._endpoints: dict[str, Endpoint] = {}
        self.position = 0  # the last log position ``catch_up`` folded

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._endpoints.get(endpoint_id)

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())

    def owned_by(self, owner: str) -> list[Endpoint]:
        return sorted(
            (e for e in self._endpoints.values() if e.owner == owner),
            key=lambda e: (e.registered_at_ms, e.endpoint_id),
        )

    def active_count(self, owner: str) -> int:
        return sum(e.active for e in self._endpoints.values() if e.owner == owner)

    def adopt(self, endpoint: Endpoint) -> None:
        held = self._endpoints.get(endpoint.endpoint_id)
        if held is None or endpoint.version >= held.version:
            self._endpoints[endpoint.endpoint_id] = endpoint

    async def refresh(self, store: EventStore, endpoint_ids: Collection[str]) -> None:
        """Each endpoint as the log has it now."""
        streams = await store.read_streams([webhook_stream(i) for i in endpoint_ids])
        for endpoint_id in endpoint_ids:
            endpoint: Endpoint | None = None
            for stored in streams.get(webhook_stream(endpoint_id), []):
                endpoint = evolve(endpoint, to_domain(stored))
            if endpoint is not None:
                self._endpoints[endpoint_id] = endpoint

    async def catch_up(self, store: EventStore) -> int:
        """Fold the webhook events recorded since the last call; returns how many."""
        head = await store.head_position()
        folded = 0
        while self.position < head:
            page = await store.read_from(
                after_position=self.position, through_position=head,
                types=WEBHOOK_EVENT_TYPES, limit=LOAD_PAGE_EVENTS,
            )  # fmt: skip
            if not page:
                break
            for stored in page:
                endpoint_id = stored.stream_id.removeprefix(WEBHOOK_STREAM_PREFIX)
                held = self._endpoints.get(endpoint_id)
                if held is not None and stored.stream_version <= held.version:
                    continue  # adopted from a commit already
                self._endpoints[endpoint_id] = evolve(held, to_domain(stored))
            folded += len(page)
            self.position = page[-1].position
        if folded == 0:
            self.position = max(self.position, head)
        return folded
