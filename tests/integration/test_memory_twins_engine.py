"""The whole engine on the in-memory store and the in-memory bus, built by the production
``bootstrap`` (issue 14, ADR 0098): no NATS, no PostgreSQL.

A submit sent as a request on the twin bus is committed to the twin store and answered after
commit; the relay, leading through the store's lease, publishes the log to the twin's event
stream and the work order to its dispatch stream; a repeated submit is answered as a duplicate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.bootstrap import bootstrap
from services.bus import subjects
from services.bus.memory import MemoryBus
from services.bus.nats_adapter import NatsBus
from services.engine.clock import SystemClock
from services.eventstore.memory import InMemoryEventStore
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_api import SUBMIT

REQUEST_TIMEOUT_S = 10.0


async def _request(bus: MemoryBus, subject: str, body: Any) -> dict[str, Any]:
    reply = await bus.request(subject, json.dumps(body).encode(), timeout_s=REQUEST_TIMEOUT_S)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def test_the_engine_runs_on_the_in_memory_store_and_bus(tmp_path: Path) -> None:
    clock = SystemClock()
    store = InMemoryEventStore(now_ms=clock.now_ms)
    bus = MemoryBus(lambda: clock.now_ms() / 1000)
    engine = await bootstrap(Settings(relay_poll_s=0.2, state_dir=tmp_path), store=store, bus=bus)
    assert engine.nc is None and engine.js is None and engine.bus is bus
    assert not isinstance(engine.bus, NatsBus)
    await engine.start()
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead on the twin's lease")
        reply = await _request(bus, SUBMIT.format(caller="alice"), submit())
        assert reply["ok"] is True and reply["state"] == "dispatched"
        stream = await store.read_stream(reply["intent_id"])
        assert [e.type for e in stream] == [
            "IntentReceived", "IntentPolicyChecked", "IntentRouted", "IntentDispatched",
        ]  # fmt: skip
        again = await _request(bus, SUBMIT.format(caller="alice"), submit())
        assert again["duplicate"] is True and again["intent_id"] == reply["intent_id"]
        head = await store.head_position()
        await wait_for(lambda: engine.relay.position == head, what="the relay to publish all")
        assert (await bus.stream_state(subjects.EVT_STREAM)).messages == head
        assert (await bus.stream_state(subjects.DISPATCH_STREAM)).messages == 1
        assert (await store.verify_chain()).ok
    finally:
        await engine.stop()
    assert store.closed
