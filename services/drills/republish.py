"""The relay over a restored log, into a fresh JetStream (ADR 0190).

A fresh nats-server on a free loopback port, with its own registry and engine credential,
holds empty streams: the relay's start check finds that the stream lacks the message its
restored checkpoint names, rewinds, and republishes the whole restored log (ADR 0062, 0075).
The live stack's JetStream is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.bus import subjects
from services.bus.jetstream import connect, ensure_streams
from services.bus.nats_adapter import NatsBus
from services.devstack.nats import NatsServer
from services.eventstore.postgres import PostgresEventStore
from services.identity import nats_auth
from services.identity.registry import load_registry, registry_path
from services.relay.outbox import OutboxRelay

# The streams' duplicate window, as the engine's default setting; only dedup depends on it.
DUPLICATE_WINDOW_S: Final = 120
# In-flight publishes of the drill's relay; a restored drill log is small.
INFLIGHT_MAX: Final = 1_000
POLL_S: Final = 0.05


@dataclass(frozen=True)
class Republished:
    published_through: int
    evt_messages: int
    republish_ms: int


async def republish(database_url: str, work: Path, *, head: int, timeout_s: float) -> Republished:
    """Run the relay on the log at ``database_url`` into a fresh nats-server under ``work``
    until it has published through ``head``; ``TimeoutError`` past ``timeout_s``."""
    creds = nats_auth.ensure(work, role="engine", ident="drill-relay")
    server = NatsServer(
        work / "nats", registry=load_registry(registry_path(work)), sync_interval="2m"
    )
    await asyncio.to_thread(server.start)
    store = await PostgresEventStore.connect(database_url, pool_max=2)
    nc = None
    task: asyncio.Task[None] | None = None
    try:
        nc = await connect(server.url, name="corridor-drill-relay", creds=creds)
        js = nc.jetstream(publish_async_max_pending=INFLIGHT_MAX)
        bus = NatsBus(nc, js)

        async def declare() -> None:
            await ensure_streams(js, duplicate_window_s=DUPLICATE_WINDOW_S)

        await declare()
        relay = OutboxRelay(store, js, bus=bus, fenced=bus, ensure_streams=declare)
        began = time.monotonic()
        task = asyncio.create_task(relay.run(), name="drill-relay")
        deadline = began + timeout_s
        while relay.position < head:
            if task.done():
                task.result()  # raises what stopped it
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the relay published through {relay.position} of {head}")
            await asyncio.sleep(POLL_S)  # a poll interval, not synchronisation
        republish_ms = int((time.monotonic() - began) * 1000)
        state = await bus.stream_state(subjects.EVT_STREAM)
        return Republished(
            published_through=relay.position,
            evt_messages=state.messages,
            republish_ms=republish_ms,
        )
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if nc is not None:
            await nc.close()
        await store.close()
        await asyncio.to_thread(server.stop)
