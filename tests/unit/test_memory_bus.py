"""What only the in-memory bus can show exactly, because its clock moves only when told to:
the ack timer that ``in_progress`` resets, deadlines of waiting fetches and requests, the edge
of the duplicate window, and that a seeded run replays the same (ADR 0093). The behaviour it
shares with JetStream is pinned by tests/contract/test_bus_contract.py."""

from __future__ import annotations

import asyncio
import random
import selectors
from typing import Any

import pytest

from services.bus.memory import MemoryBus, subject_matches
from services.bus.port import HDR_MSG_ID, BusError, Durable, Message, StreamSpec
from services.sim.clock import ManualClock

ACK_WAIT_S = 10.0
WINDOW_S = 120.0


async def _bus() -> tuple[MemoryBus, ManualClock]:
    clock = ManualClock()
    bus = MemoryBus(clock)
    await bus.add_stream(StreamSpec("S", ("s.>",), WINDOW_S))
    return bus, clock


def _advance(bus: MemoryBus, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    bus.tick()


@pytest.mark.parametrize(
    ("pattern", "subject", "matches"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.b.c", False),
        ("a.>", "a.b", True),
        ("a.>", "a", False),
        ("a.b", "a.b.c", False),
        ("*", "a", True),
        (">", "a.b", True),
    ],
)
def test_subject_matching(pattern: str, subject: str, matches: bool) -> None:
    assert subject_matches(pattern, subject) is matches


async def test_in_progress_restarts_the_ack_wait_from_now() -> None:
    bus, clock = await _bus()
    await bus.publish("s.a", b"x", timeout_s=1)
    consumer = await bus.consumer(Durable("S", "w", "s.>", ACK_WAIT_S))
    [delivery] = await consumer.fetch(1, timeout_s=0)
    _advance(bus, clock, 6)
    await delivery.in_progress()
    _advance(bus, clock, 6)  # 12 s after delivery: past the first ack wait, not the second
    with pytest.raises(TimeoutError):
        await consumer.fetch(1, timeout_s=0)
    _advance(bus, clock, 4)  # 10 s after in_progress
    [again] = await consumer.fetch(1, timeout_s=0)
    assert again.num_delivered == 2


async def test_the_duplicate_window_ends_exactly_on_the_clock() -> None:
    bus, clock = await _bus()
    await bus.publish("s.a", b"x", headers={HDR_MSG_ID: "m"}, timeout_s=1)
    _advance(bus, clock, WINDOW_S - 0.001)
    assert (await bus.publish("s.a", b"x", headers={HDR_MSG_ID: "m"}, timeout_s=1)).duplicate
    _advance(bus, clock, 0.001)
    assert not (await bus.publish("s.a", b"x", headers={HDR_MSG_ID: "m"}, timeout_s=1)).duplicate


async def test_a_waiting_fetch_takes_a_message_published_meanwhile() -> None:
    bus, _ = await _bus()
    consumer = await bus.consumer(Durable("S", "w", "s.>", ACK_WAIT_S))
    waiting = asyncio.ensure_future(consumer.fetch(5, timeout_s=30))
    await asyncio.sleep(0)
    assert not waiting.done()
    await bus.publish("s.a", b"x", timeout_s=1)
    [delivery] = await waiting
    assert delivery.stream_seq == 1


async def test_a_waiting_fetch_times_out_only_when_the_clock_passes_its_deadline() -> None:
    bus, clock = await _bus()
    consumer = await bus.consumer(Durable("S", "w", "s.>", ACK_WAIT_S))
    waiting = asyncio.ensure_future(consumer.fetch(1, timeout_s=30))
    await asyncio.sleep(0)  # the fetch starts, and takes its deadline from the clock
    _advance(bus, clock, 29)
    await asyncio.sleep(0)
    assert not waiting.done()
    _advance(bus, clock, 1)
    with pytest.raises(TimeoutError):
        await waiting


async def test_an_unanswered_request_times_out_on_the_clock() -> None:
    bus, clock = await _bus()
    heard: list[str] = []

    async def silent(msg: Message) -> None:
        heard.append(msg.subject)

    await bus.subscribe("rpc.ping", silent)
    asking = asyncio.ensure_future(bus.request("rpc.ping", b"", timeout_s=5))
    for _ in range(3):
        await asyncio.sleep(0)
    assert heard == ["rpc.ping"] and not asking.done()
    _advance(bus, clock, 5)
    with pytest.raises(TimeoutError):
        await asking


async def test_max_ack_pending_bounds_what_is_out_unsettled() -> None:
    bus, _ = await _bus()
    for _ in range(3):
        await bus.publish("s.a", b"x", timeout_s=1)
    consumer = await bus.consumer(Durable("S", "w", "s.>", ACK_WAIT_S, max_ack_pending=2))
    first = await consumer.fetch(10, timeout_s=0)
    assert [d.stream_seq for d in first] == [1, 2]
    await first[0].ack()
    assert [d.stream_seq for d in await consumer.fetch(10, timeout_s=0)] == [3]


async def _seeded_run(seed: int) -> list[tuple[object, ...]]:
    """A random mix of publishes, fetches, settlements and clock moves; the trace of it."""
    rng = random.Random(seed)
    bus, clock = await _bus()
    consumer = await bus.consumer(Durable("S", "w", "s.*.x", ACK_WAIT_S, max_deliver=4))
    trace: list[tuple[object, ...]] = []
    for step in range(300):
        roll = rng.random()
        if roll < 0.35:
            subject = f"s.{rng.choice('ab')}.{rng.choice('xy')}"
            ack = await bus.publish(
                subject, b"x", headers={HDR_MSG_ID: f"m{rng.randrange(40)}"}, timeout_s=1
            )
            trace.append(("pub", step, ack.seq, ack.duplicate))
        elif roll < 0.85:
            try:
                got = await consumer.fetch(rng.randint(1, 4), timeout_s=0)
            except TimeoutError:
                trace.append(("none", step))
                continue
            for delivery in got:
                trace.append(("got", step, delivery.stream_seq, delivery.num_delivered))
                action = rng.choice(("ack", "nak", "term", "wait", "nak_delay"))
                if action == "ack":
                    await delivery.ack()
                elif action == "nak":
                    await delivery.nak()
                elif action == "nak_delay":
                    await delivery.nak(rng.uniform(1, 20))
                elif action == "term":
                    await delivery.term()
        else:
            _advance(bus, clock, rng.uniform(0, 15))
    return trace


async def test_a_seeded_run_replays_exactly() -> None:
    first = await _seeded_run(7)
    assert first == await _seeded_run(7)
    assert first != await _seeded_run(8)
    kinds = {entry[0] for entry in first}
    assert {"pub", "got", "none"} <= kinds
    assert any(entry[0] == "got" and entry[3] > 1 for entry in first)  # redeliveries happened


async def test_a_durable_deleted_with_its_stream_refuses_fetches_until_bound_again() -> None:
    """As the server answers a pull on a deleted durable, so the executor binds again (ADR
    0075); a durable of the same name on the re-created stream starts from its beginning."""
    bus, _ = await _bus()
    await bus.publish("s.a", b"old", timeout_s=1.0)
    durable = Durable("S", "w", "s.>", ACK_WAIT_S)
    consumer = await bus.consumer(durable)
    assert [d.data for d in await consumer.fetch(1, timeout_s=0.0)] == [b"old"]
    bus.delete_stream("S")
    assert not await bus.has_durable("S", "w")
    with pytest.raises(BusError):
        await consumer.fetch(1, timeout_s=0.0)
    await bus.add_stream(StreamSpec("S", ("s.>",), WINDOW_S))
    await bus.publish("s.b", b"new", timeout_s=1.0)
    with pytest.raises(BusError):  # the old binding stays dead: the stream is another one
        await consumer.fetch(1, timeout_s=0.0)
    rebound = await bus.consumer(durable)
    assert [d.data for d in await rebound.fetch(1, timeout_s=0.0)] == [b"new"]


class _VirtualTimeSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Never sleeps: with nothing ready, the loop's time jumps to its next timer."""

    def __init__(self, loop: _VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if not ready and timeout:
            self._loop.virtual_s += timeout
        elif not ready and timeout is None:
            raise RuntimeError("nothing ready and no timer: every task waits for another")
        return ready


class _VirtualTimeLoop(asyncio.SelectorEventLoop):
    """What a simulation's event loop does with time (ADR 0105)."""

    def __init__(self) -> None:
        self.virtual_s = 0.0
        super().__init__(_VirtualTimeSelector(self))

    def time(self) -> float:
        return self.virtual_s


def test_on_a_virtual_time_loop_the_ack_wait_passes_and_nothing_waits_for_it() -> None:
    """The twin on the loop's clock, on a loop whose time jumps: a delivery left unsettled
    comes back after exactly ``ack_wait`` of loop time, to a fetch that waited for it."""
    loop = _VirtualTimeLoop()

    async def scenario() -> tuple[int, float]:
        bus = MemoryBus()
        await bus.add_stream(StreamSpec("S", ("s.>",), WINDOW_S))
        await bus.publish("s.a", b"x", timeout_s=1.0)
        consumer = await bus.consumer(Durable("S", "w", "s.>", ack_wait_s=30.0))
        await consumer.fetch(1, timeout_s=1.0)  # and never settled: a killed worker
        started_s = loop.time()
        [again] = await consumer.fetch(1, timeout_s=3600.0)
        return again.num_delivered, loop.time() - started_s

    try:
        delivered, waited_s = loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert delivered == 2
    assert waited_s == pytest.approx(30.0, abs=0.01)
