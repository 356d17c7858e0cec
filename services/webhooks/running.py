"""The webhook parts wired from the settings: the engine's book and the dispatcher beside it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from services.domain.webhooks.endpoint import WebhookRules
from services.engine.commands import CommandEnvelope
from services.engine.webhook_book import WebhookBook
from services.settings import Settings
from services.webhooks import secrets
from services.webhooks.delivery import RetryPolicy
from services.webhooks.dispatcher import WebhookDispatcher

if TYPE_CHECKING:
    from services.bootstrap import Engine


def engine_book(settings: Settings) -> WebhookBook:
    """The engine's view of the endpoints, with the URL rules and the master key (ADR 0176)."""
    return WebhookBook(
        rules=WebhookRules(allow_loopback=settings.webhooks_allow_loopback),
        secrets=secrets.LazyWebhookSecrets(settings.state_dir),
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        period_s=settings.webhooks_retry_period_s,
        first_s=min(settings.webhooks_backoff_first_s, settings.webhooks_backoff_max_s),
        max_s=settings.webhooks_backoff_max_s,
        timeout_s=settings.webhooks_timeout_s,
    )


@contextlib.asynccontextmanager
async def running_dispatcher(
    engine: Engine, settings: Settings, **options: Any
) -> AsyncIterator[WebhookDispatcher]:
    """The dispatcher on the engine's NATS connection and log; its records go to the engine's
    writer loop as the engine's own commands."""
    assert engine.js is not None, "the dispatcher's consumers are JetStream's"

    async def execute(command: Any) -> Any:
        return await engine.processor.execute(CommandEnvelope(command=command))

    dispatcher = WebhookDispatcher(
        js=engine.js, store=engine.store, secrets=secrets.load_or_create(settings.state_dir),
        execute=execute, policy=retry_policy(settings), poll_s=settings.webhooks_poll_s,
        **options,
    )  # fmt: skip
    task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        await asyncio.gather(task, return_exceptions=True)
