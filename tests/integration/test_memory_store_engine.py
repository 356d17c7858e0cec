"""The whole engine on the in-memory event store, built by the production ``bootstrap``.

Nothing in the engine knows which store it runs on (ADR 0090): the same object graph, with only
the store swapped, takes a submit over real NATS, commits it to the twin, replies, and the
relay (leading through the twin's lease) publishes the log to JetStream in position order.
"""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from services.bootstrap import bootstrap
from services.bus import subjects
from services.engine.clock import SystemClock
from services.eventstore.memory import InMemoryEventStore
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import SUBMIT, request


async def test_the_engine_runs_on_the_in_memory_store(
    nats_url: str, nc: Client, tmp_path: Path
) -> None:
    clock = SystemClock()
    store = InMemoryEventStore(now_ms=clock.now_ms)
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=tmp_path), nats_url=nats_url, store=store
    )
    await engine.start()
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead on the twin's lease")
        reply = await request(nc, SUBMIT.format(caller="alice"), submit())
        assert reply["ok"] is True and reply["state"] == "dispatched"
        stream = await store.read_stream(reply["intent_id"])
        assert [e.type for e in stream] == [
            "IntentReceived", "IntentPolicyChecked", "IntentRouted", "IntentDispatched",
        ]  # fmt: skip
        again = await request(nc, SUBMIT.format(caller="alice"), submit())
        assert again["duplicate"] is True and again["intent_id"] == reply["intent_id"]
        head = await store.head_position()
        await wait_for(lambda: engine.relay.position == head, what="the relay to publish all")
        info = await nc.jetstream().stream_info(subjects.EVT_STREAM)
        assert info.state.messages == head
        assert (await store.verify_chain()).ok
    finally:
        await engine.stop()
    assert store.closed
