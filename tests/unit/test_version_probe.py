"""The read side's version probe: questions asked together share one round trip, and each
gets the log's version (services/engine/version_probe.py)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.engine.version_probe import VersionProbe
from services.eventstore.memory import InMemoryEventStore
from tests.contract.test_event_store_contract import new_event


async def test_a_lone_question_is_one_round_trip_with_the_logs_answer() -> None:
    store = InMemoryEventStore()
    await store.append([new_event("a", 1), new_event("a", 2)])
    probe = VersionProbe(store)
    assert await probe.version("a") == 2
    assert await probe.version("none") == 0
    assert probe.round_trips == 2


async def test_questions_asked_together_share_round_trips() -> None:
    store = InMemoryEventStore()
    await store.append([new_event(f"s{i}", 1) for i in range(50)])
    probe = VersionProbe(store, batch_max=20)
    asked = [f"s{i}" for i in range(50)] + ["s0", "missing"]
    answers = await asyncio.gather(*(probe.version(s) for s in asked))
    assert answers == [1] * 51 + [0]
    # All 52 are waiting before the first round trip starts: 51 streams, 20 per round trip.
    assert probe.round_trips == 3


async def test_a_store_error_reaches_every_question_of_its_round_and_not_the_next() -> None:
    store = InMemoryEventStore()
    await store.append([new_event("a", 1)])
    probe = VersionProbe(store)
    store.closed = True
    results = await asyncio.gather(probe.version("a"), probe.version("b"), return_exceptions=True)
    assert all(isinstance(r, asyncpg.InterfaceError) for r in results)
    store.closed = False
    assert await probe.version("a") == 1


@pytest.mark.parametrize("batch_max", [1, 7])
async def test_every_question_is_answered_whatever_the_batch(batch_max: int) -> None:
    store = InMemoryEventStore()
    await store.append([new_event(f"s{i}", v) for i in range(10) for v in (1, 2)][:10])
    probe = VersionProbe(store, batch_max=batch_max)
    got = await asyncio.gather(*(probe.version(f"s{i}") for i in range(10)))
    want = [len(await store.read_stream(f"s{i}")) for i in range(10)]
    assert got == want
