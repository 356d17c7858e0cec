"""Deliveries to one endpoint, from its own durable consumer on CORRIDOR_EVT (ADR 0175, 0178).

Each endpoint has a durable consumer ``webhook-<endpoint id>`` filtered on its owner's subtree
(``corridor.evt.v2.intent.<owner>.>``, ADR 0067), starting at the registration's time. The
server keeps each endpoint's backlog: a receiver that is down or slow holds back only its own
consumer, never another endpoint's, and the dispatcher holds at most ``FETCH_MAX`` messages
per endpoint in memory. A message is acknowledged once it is delivered, its retry period has
run out and the failure is recorded, or it is not for this endpoint; while it is retried the
worker tells the server it is still in progress, so it is not redelivered meanwhile.
Positions only grow: one the worker has handled already (a redelivery) is acknowledged unsent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from schemas.replies import CommandRejected
from schemas.webhook_messages import (
    DisableWebhookEndpoint,
    RecordWebhookDeliveryFailed,
    WebhookCommand,
)
from services.bus import subjects
from services.domain.webhooks.endpoint import Endpoint
from services.metrics.series import WEBHOOK_DELIVERIES
from services.webhooks import delivery
from services.webhooks.delivery import RetryPolicy
from services.webhooks.payload import WebhookMessage, from_recorded

log = structlog.get_logger("corridor.webhooks")

CONSUMER_PREFIX: Final = "webhook-"
# Messages pulled at once per endpoint: delivery is in order, one at a time; a few more keep
# the next ones at hand without holding much.
FETCH_MAX: Final = 8
FETCH_WAIT_S: Final = 1.0
# Unacknowledged this long, a message is redelivered; a retry in progress says so every
# ACK_WAIT_S / 3, so only a dead dispatcher's messages come back.
ACK_WAIT_S: Final = 30.0
# A new endpoint's consumer starts this long before its registration's time: the time is the
# engine's clock, the stream's timestamps the NATS server's, and a few seconds of events from
# before the registration (at least once) beat missing the first one after it.
START_MARGIN_MS: Final = 5_000

Execute = Callable[[WebhookCommand], Awaitable[Any]]


def consumer_name(endpoint_id: str) -> str:
    return f"{CONSUMER_PREFIX}{endpoint_id}"


async def ensure_consumer(js: JetStreamContext, endpoint: Endpoint) -> str:
    name = consumer_name(endpoint.endpoint_id)
    try:
        await js.consumer_info(subjects.EVT_STREAM, name)  # resume where its acks left off
    except NotFoundError:
        await js.add_consumer(
            subjects.EVT_STREAM,
            ConsumerConfig(
                name=name, durable_name=name,
                filter_subject=subjects.owner_events(endpoint.owner),
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.fromtimestamp(
                    (endpoint.registered_at_ms - START_MARGIN_MS) / 1000, tz=UTC
                ),
                ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT_S, max_ack_pending=FETCH_MAX,
            ),
        )  # fmt: skip
    return name


async def delete_consumer(js: JetStreamContext, endpoint_id: str) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_consumer(subjects.EVT_STREAM, consumer_name(endpoint_id))


class EndpointWorker:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        js: JetStreamContext,
        secret: str,
        execute: Execute,
        policy: RetryPolicy,
        current: Callable[[], Endpoint | None],
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        """``current``: the endpoint as the dispatcher knows it now (a removal stops retries)."""
        self.endpoint = endpoint
        self._js = js
        self._secret = secret
        self._execute = execute
        self._policy = policy
        self._current = current
        self._client = (client_factory or (lambda: delivery.new_client(policy.timeout_s)))()
        # Seeded by the endpoint: repeatable, and different endpoints spread their retries.
        self._rng = random.Random(zlib.crc32(endpoint.endpoint_id.encode()))
        self._last_position = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def _active(self) -> bool:
        now = self._current()
        return now is not None and now.active and not self._stop.is_set()

    async def run(self) -> None:
        name = await ensure_consumer(self._js, self.endpoint)
        sub = await self._js.pull_subscribe_bind(durable=name, stream=subjects.EVT_STREAM)
        try:
            while self._active():
                try:
                    batch = await sub.fetch(FETCH_MAX, timeout=FETCH_WAIT_S)
                except TimeoutError:
                    continue
                for msg in batch:
                    if not self._active():
                        return  # unacknowledged: redelivered if the endpoint comes back
                    try:
                        await self._handle(msg)
                    except Exception:
                        # A bug or a message it cannot read must not end this endpoint's
                        # deliveries; the server offers the message again later.
                        log.exception(
                            "webhook_message_error", endpoint_id=self.endpoint.endpoint_id
                        )
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=ACK_WAIT_S)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await self._client.aclose()

    async def _handle(self, msg: Any) -> None:
        headers = msg.headers or {}
        position = int(headers.get(subjects.HDR_POSITION, "0") or 0)
        event_type = headers.get(subjects.HDR_EVENT_TYPE) or subjects.event_type_of(msg.subject)
        if position <= self._last_position or event_type not in self.endpoint.event_types:
            await msg.ack()
            return
        message = from_recorded(json.loads(msg.data))
        if message is not None and not await self._deliver(message, msg):
            return  # interrupted: not acknowledged, so it is offered again (at least once)
        self._last_position = position
        await msg.ack()

    async def _deliver(self, message: WebhookMessage, msg: Any) -> bool:
        """``True`` once the message is done with: delivered, or its endpoint disabled, or its
        failure recorded; ``False`` if the worker stopped before."""
        deadline = time.monotonic() + self._policy.period_s
        log_ctx = {"endpoint_id": self.endpoint.endpoint_id, "webhook_id": message.webhook_id}
        tries = 0
        while True:
            tries += 1
            result = await delivery.attempt(self._client, self.endpoint.url, message, self._secret)
            if result.result == "delivered":
                WEBHOOK_DELIVERIES.labels(result="delivered").inc()
                log.info("webhook_delivered", attempts=tries, **log_ctx)
                return True
            if result.result == "gone":
                WEBHOOK_DELIVERIES.labels(result="disabled").inc()
                log.warning("webhook_endpoint_gone", **log_ctx)
                done = await self._record(
                    DisableWebhookEndpoint(
                        endpoint_id=self.endpoint.endpoint_id, reason="gone",
                        http_status=result.status,
                    )
                )  # fmt: skip
                self._stop.set()
                return done
            WEBHOOK_DELIVERIES.labels(result="failed").inc()
            delay_s = delivery.backoff_s(self._policy, tries, self._rng)
            if time.monotonic() + delay_s > deadline:
                log.warning("webhook_retries_exhausted", attempts=tries, error=result.error,
                            **log_ctx)  # fmt: skip
                return await self._record(
                    RecordWebhookDeliveryFailed(
                        endpoint_id=self.endpoint.endpoint_id, webhook_id=message.webhook_id,
                        position=message.position, event_type=message.event_type,  # type: ignore[arg-type]
                        attempts=min(tries, 10_000), last_error=result.error,
                    )
                )  # fmt: skip
            log.info("webhook_retry", attempt=tries, error=result.error, delay_s=round(delay_s, 3),
                     **log_ctx)  # fmt: skip
            if not await self._pause(delay_s, msg):
                return False

    async def _record(self, command: WebhookCommand) -> bool:
        """Record ``command`` in the log; ``False`` if the engine refused it for now (the
        message stays unacknowledged and comes back)."""
        reply = await self._execute(command)
        if isinstance(reply, CommandRejected):
            log.warning("webhook_record_refused", endpoint_id=self.endpoint.endpoint_id,
                        command=type(command).__name__, code=reply.error.code)  # fmt: skip
            return False
        return True

    async def _pause(self, delay_s: float, msg: Any) -> bool:
        """Wait ``delay_s``, keeping ``msg`` ours; ``False`` if the endpoint stopped meanwhile."""
        end = time.monotonic() + delay_s
        while (left := end - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=min(left, ACK_WAIT_S / 3))
            if not self._active():
                return False
            await msg.in_progress()
        return True
