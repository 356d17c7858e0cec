"""The webhook dispatcher: one delivery worker per active endpoint (ADR 0175).

It knows the endpoints by folding their events from the log (``WebhookBook.catch_up``, every
``poll_s``), starts a worker for each active endpoint it has not started, and stops (and
deletes the consumer of) each one that was removed or disabled. Its own records, an endpoint
gone (410) or a message whose retry period ran out, are commands to the engine, ``execute``d
as the engine's own: in `corridor up` the dispatcher runs beside the engine's writer loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Final

import structlog
from nats.js.client import JetStreamContext

from services.engine.webhook_book import WebhookBook
from services.eventstore.port import EventStore
from services.webhooks.delivery import RetryPolicy
from services.webhooks.endpoint_worker import EndpointWorker, Execute, delete_consumer
from services.webhooks.secrets import WebhookSecrets

log = structlog.get_logger("corridor.webhooks")

# Workers at once: the per-owner limit times the owners a deployment serves. Past it, the
# endpoints registered last wait (and are logged), rather than the process running out.
WORKERS_MAX: Final = 1000


class WebhookDispatcher:
    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: EventStore,
        secrets: WebhookSecrets,
        execute: Execute,
        policy: RetryPolicy,
        poll_s: float,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._js = js
        self._store = store
        self._secrets = secrets
        self._execute = execute
        self._policy = policy
        self._poll_s = poll_s
        self._client_factory = client_factory
        self.book = WebhookBook()
        self._workers: dict[str, tuple[EndpointWorker, asyncio.Task[None]]] = {}
        self._retired: set[str] = set()
        self._stop = asyncio.Event()

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self.sync()
                except Exception as exc:  # PostgreSQL or NATS away for a moment
                    log.warning("webhooks_sync_failed", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=self._poll_s)
        finally:
            await self._stop_all()

    def stop(self) -> None:
        self._stop.set()

    async def sync(self) -> None:
        """Bring the workers in line with the endpoints the log has now."""
        await self.book.catch_up(self._store)
        for endpoint in self.book.endpoints():
            running = self._workers.get(endpoint.endpoint_id)
            if running is not None and running[1].done():
                self._workers.pop(endpoint.endpoint_id)
                running = None
            if endpoint.active and running is None:
                if len(self._workers) >= WORKERS_MAX:
                    log.warning("webhook_workers_full", endpoint_id=endpoint.endpoint_id)
                    continue
                self._start(endpoint.endpoint_id)
            elif not endpoint.active and endpoint.endpoint_id not in self._retired:
                # Removed or gone: its worker stops and its consumer goes (once, even if the
                # endpoint was disabled while this dispatcher was down).
                if running is not None:
                    running[0].stop()
                    with contextlib.suppress(Exception):
                        await running[1]
                    self._workers.pop(endpoint.endpoint_id, None)
                await delete_consumer(self._js, endpoint.endpoint_id)
                self._retired.add(endpoint.endpoint_id)

    def _start(self, endpoint_id: str) -> None:
        endpoint = self.book.get(endpoint_id)
        assert endpoint is not None
        worker = EndpointWorker(
            endpoint, js=self._js,
            secret=self._secrets.secret(endpoint_id, endpoint.secret_rotation),
            execute=self._execute, policy=self._policy,
            current=lambda: self.book.get(endpoint_id), client_factory=self._client_factory,
        )  # fmt: skip
        task = asyncio.create_task(worker.run(), name=f"webhook-{endpoint_id}")
        task.add_done_callback(_log_crash)
        self._workers[endpoint_id] = (worker, task)
        log.info("webhook_worker_started", endpoint_id=endpoint_id)

    async def _stop_all(self) -> None:
        for worker, _ in self._workers.values():
            worker.stop()
        tasks = [task for _, task in self._workers.values()]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()


def _log_crash(task: asyncio.Task[None]) -> None:
    # A worker that died (NATS away at its start) is started again by the next sync.
    if not task.cancelled() and task.exception() is not None:
        log.warning("webhook_worker_ended", task=task.get_name(),
                    error=type(task.exception()).__name__)  # fmt: skip
