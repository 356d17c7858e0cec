"""One contract for the bus port, run against the in-memory twin and the NATS adapter over the
real nats-server the harness starts (nkey users, as every test; ADR 0092, 0093).

Time: the memory bus's clock moves only when ``env.pass_time`` moves it; on the real server
time passes by itself, so ``pass_time`` does nothing there and every wait that needs the server
to act (a redelivery, a duplicate window ending) is a wait on a condition with a deadline. A
wait that must find nothing ("no redelivery after an ack") fetches for ``env.quiet_s``, longer
than the ack wait, on the real server, and not at all on the twin, whose clock has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from services.bus.fenced_publisher import (
    ATOMIC_BATCH_MSGS_MAX,
    ERR_ATOMIC_DISABLED,
    ERR_DUPLICATE,
    ERR_DUPLICATE_IN_BATCH,
)
from services.bus.memory import MemoryBus
from services.bus.nats_adapter import NatsBus
from services.bus.port import (
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    HDR_MSG_ID,
    Bus,
    Delivery,
    Durable,
    Message,
    NoResponders,
    NotFound,
    OutgoingMessage,
    PublishRefused,
    PullConsumer,
    StreamSpec,
)
from services.devstack.nats import NatsServer
from services.sim.clock import ManualClock
from tests.conftest import session_registry, wait_for
from tests.nats_creds import connect_as

# Short enough that the real server's tests stay quick, long enough that a loaded machine does
# not see a redelivery before the test has acked (the positive checks wait with a deadline).
ACK_WAIT_S = 1.0
DUPLICATE_WINDOW_S = 1.0
# Deadline for anything the real server must do by itself (a redelivery, a window ending).
DEADLINE_S = 15.0
# A delay far beyond every quiet wait here: the message it holds back cannot come back in time.
LONG_DELAY_S = 60.0

STREAM = "CONTRACT"
ORDERS = "contract.orders"
QUEUE_STREAM = "CONTRACT_WQ"
PLAIN_STREAM = "CONTRACT_PLAIN"  # takes no atomic batches
T = TypeVar("T")


@dataclass
class BusEnv:
    bus: Bus
    pass_time: Callable[[float], None]
    # How long a fetch that must find nothing listens (0 on the twin: its clock has moved).
    quiet_s: float
    # How long a fetch that must find something may wait (0 on the twin: it is there now).
    wait_s: float

    async def eventually(
        self, attempt: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str
    ) -> T:
        """``attempt`` until ``done`` holds, up to DEADLINE_S (once on the twin)."""
        deadline = time.monotonic() + DEADLINE_S
        while True:
            value = await attempt()
            if done(value):
                return value
            if time.monotonic() > deadline or self.wait_s == 0:
                raise AssertionError(f"never {what}: last {value!r}")
            await asyncio.sleep(0.05)  # polling a condition, not synchronising

    async def fetch_one(self, consumer: PullConsumer) -> Delivery:
        [delivery] = await consumer.fetch(1, timeout_s=self.wait_s)
        return delivery

    async def assert_nothing(self, consumer: PullConsumer) -> None:
        with pytest.raises(TimeoutError):
            await consumer.fetch(1, timeout_s=self.quiet_s)


def _streams() -> list[StreamSpec]:
    return [
        StreamSpec(STREAM, ("contract.>",), DUPLICATE_WINDOW_S, allow_atomic=True),
        StreamSpec(PLAIN_STREAM, ("plain.>",), DUPLICATE_WINDOW_S),
        StreamSpec(QUEUE_STREAM, ("wq.>",), DUPLICATE_WINDOW_S, work_queue=True),
    ]


@contextlib.asynccontextmanager
async def _nats_env(tmp_path: Path, identity_home: Path) -> AsyncIterator[BusEnv]:
    """The harness's server (tests/conftest.py ``nats_url``), started here because only one of
    each fixture's parameters needs it: nkey users only, as in every test."""
    server = NatsServer(tmp_path / "nats", registry=session_registry(identity_home))
    await asyncio.to_thread(server.start)
    nc = await connect_as(server.url)
    try:
        nats_bus = NatsBus(nc)
        for spec in _streams():
            await nats_bus.add_stream(spec)
        yield BusEnv(nats_bus, lambda _s: None, quiet_s=ACK_WAIT_S * 1.5, wait_s=DEADLINE_S)
    finally:
        await nc.close()
        await asyncio.to_thread(server.stop)


@pytest.fixture(params=["memory", "nats"])
async def env(
    request: pytest.FixtureRequest, tmp_path: Path, identity_home: Path
) -> AsyncIterator[BusEnv]:
    if request.param == "memory":
        clock = ManualClock()
        bus = MemoryBus(clock)

        def advance(seconds: float) -> None:
            clock.advance(seconds)
            bus.tick()

        for spec in _streams():
            await bus.add_stream(spec)
        yield BusEnv(bus, advance, quiet_s=0.0, wait_s=0.0)
        return
    async with _nats_env(tmp_path, identity_home) as nats_env:
        yield nats_env


@pytest.fixture(params=["memory-on-the-loop-clock", "nats"])
async def timed(
    request: pytest.FixtureRequest, tmp_path: Path, identity_home: Path
) -> AsyncIterator[BusEnv]:
    """Time passes by itself on both: the twin on the event loop's clock, which nobody ticks
    (as in a simulation on a virtual-time loop, ADR 0105), and the real server."""
    if request.param == "nats":
        async with _nats_env(tmp_path, identity_home) as nats_env:
            yield nats_env
        return
    bus = MemoryBus()
    for spec in _streams():
        await bus.add_stream(spec)
    yield BusEnv(bus, lambda _s: None, quiet_s=ACK_WAIT_S * 1.5, wait_s=DEADLINE_S)


def _durable(name: str = "worker", filter_subject: str = "contract.>", **kw: int) -> Durable:
    return Durable(STREAM, name, filter_subject, ack_wait_s=ACK_WAIT_S, **kw)


async def _publish(bus: Bus, subject: str, data: bytes = b"x", msg_id: str = "") -> int:
    headers = {HDR_MSG_ID: msg_id} if msg_id else None
    ack = await bus.publish(subject, data, headers=headers, timeout_s=DEADLINE_S)
    assert not ack.duplicate
    return ack.seq


# --- streams: sequences, state, stored messages -------------------------------------------


async def test_each_stream_numbers_its_messages_and_keeps_them(env: BusEnv) -> None:
    bus = env.bus
    assert [await _publish(bus, f"{ORDERS}.{n}", f"m{n}".encode()) for n in range(3)] == [1, 2, 3]
    assert await _publish(bus, "wq.a") == 1  # another stream, its own sequence
    state = await bus.stream_state(STREAM)
    assert (state.first_seq, state.last_seq, state.messages) == (1, 3, 3)
    stored = await bus.get_message(STREAM, 2)
    assert (stored.seq, stored.subject, stored.data) == (2, f"{ORDERS}.1", b"m1")


async def test_a_missing_stream_or_message_is_not_found(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    with pytest.raises(NotFound):
        await env.bus.stream_state("NO_SUCH_STREAM")
    with pytest.raises(NotFound):
        await env.bus.get_message(STREAM, 99)


async def test_the_next_message_on_a_subject_from_a_sequence(env: BusEnv) -> None:
    for subject in (f"{ORDERS}.a", "contract.other", f"{ORDERS}.b", "contract.other"):
        await _publish(env.bus, subject)
    found = await env.bus.get_message(STREAM, 2, next_on=f"{ORDERS}.>")
    assert (found.seq, found.subject) == (3, f"{ORDERS}.b")
    assert (await env.bus.get_message(STREAM, 1, next_on=f"{ORDERS}.>")).seq == 1
    with pytest.raises(NotFound):
        await env.bus.get_message(STREAM, 4, next_on=f"{ORDERS}.>")
    stored_at = (await env.bus.get_message(STREAM, 1)).stored_at
    assert stored_at is not None and stored_at.tzinfo is not None


async def test_a_deleted_message_is_gone_and_the_others_stay(env: BusEnv) -> None:
    for _ in range(3):
        await _publish(env.bus, ORDERS)
    await env.bus.delete_message(STREAM, 2)
    state = await env.bus.stream_state(STREAM)
    assert (state.first_seq, state.last_seq, state.messages) == (1, 3, 2)
    with pytest.raises(NotFound):
        await env.bus.get_message(STREAM, 2)
    with pytest.raises(NotFound):
        await env.bus.delete_message(STREAM, 2)
    assert (await env.bus.get_message(STREAM, 1, next_on=">")).seq == 1
    assert (await env.bus.get_message(STREAM, 2, next_on=">")).seq == 3


async def test_a_publish_no_stream_takes_has_no_responders(env: BusEnv) -> None:
    with pytest.raises(NoResponders):
        await env.bus.publish("nowhere.at.all", b"x", timeout_s=DEADLINE_S)


async def test_headers_are_stored_with_the_message(env: BusEnv) -> None:
    await env.bus.publish(
        f"{ORDERS}.h", b"x", headers={HDR_MSG_ID: "h-1", "Corridor-Position": "7"},
        timeout_s=DEADLINE_S,
    )  # fmt: skip
    stored = await env.bus.get_message(STREAM, 1)
    assert stored.headers[HDR_MSG_ID] == "h-1"
    assert stored.headers["Corridor-Position"] == "7"


# --- Nats-Msg-Id deduplication --------------------------------------------------------------


async def test_a_message_id_seen_within_the_window_is_not_stored_again(env: BusEnv) -> None:
    bus = env.bus
    assert await _publish(bus, f"{ORDERS}.a", msg_id="evt-1") == 1
    await _publish(bus, f"{ORDERS}.b", msg_id="evt-2")
    again = await bus.publish(
        f"{ORDERS}.a", b"other body", headers={HDR_MSG_ID: "evt-1"}, timeout_s=DEADLINE_S
    )
    assert (again.duplicate, again.seq, again.stream) == (True, 1, STREAM)
    assert (await bus.stream_state(STREAM)).messages == 2
    assert (await bus.get_message(STREAM, 1)).data == b"x"  # the first copy stays


async def test_a_message_id_is_stored_again_once_the_window_has_passed(env: BusEnv) -> None:
    bus = env.bus
    await _publish(bus, f"{ORDERS}.a", msg_id="evt-1")
    env.pass_time(DUPLICATE_WINDOW_S)

    async def again() -> bool:
        ack = await bus.publish(
            f"{ORDERS}.a", b"x", headers={HDR_MSG_ID: "evt-1"}, timeout_s=DEADLINE_S
        )
        return ack.duplicate

    # A duplicate is dropped, so trying again until one is stored adds exactly one message.
    await env.eventually(again, lambda duplicate: not duplicate, "forgot the message id")
    assert (await bus.stream_state(STREAM)).last_seq == 2


async def test_messages_without_an_id_are_never_deduplicated(env: BusEnv) -> None:
    assert [await _publish(env.bus, f"{ORDERS}.a") for _ in range(2)] == [1, 2]


# --- Nats-Expected-* fences -----------------------------------------------------------------


async def test_the_expected_last_sequence_fence(env: BusEnv) -> None:
    bus = env.bus
    await _publish(bus, f"{ORDERS}.a")
    ack = await bus.publish(f"{ORDERS}.b", b"x", expected_last_seq=1, timeout_s=DEADLINE_S)
    assert ack.seq == 2
    with pytest.raises(PublishRefused) as refused:
        await bus.publish(f"{ORDERS}.c", b"x", expected_last_seq=1, timeout_s=DEADLINE_S)
    assert refused.value.err_code == ERR_WRONG_LAST_SEQUENCE
    assert (await bus.stream_state(STREAM)).last_seq == 2


async def test_the_expected_last_sequence_fence_on_an_empty_stream(env: BusEnv) -> None:
    ack = await env.bus.publish(f"{ORDERS}.a", b"x", expected_last_seq=0, timeout_s=DEADLINE_S)
    assert ack.seq == 1


async def test_the_expected_last_msg_id_fence(env: BusEnv) -> None:
    bus = env.bus
    await _publish(bus, f"{ORDERS}.a", msg_id="evt-1")
    ack = await bus.publish(
        f"{ORDERS}.b", b"x", headers={HDR_MSG_ID: "evt-2"}, expected_last_msg_id="evt-1",
        timeout_s=DEADLINE_S,
    )  # fmt: skip
    assert ack.seq == 2
    with pytest.raises(PublishRefused) as refused:
        await bus.publish(
            f"{ORDERS}.c", b"x", headers={HDR_MSG_ID: "evt-3"}, expected_last_msg_id="evt-1",
            timeout_s=DEADLINE_S,
        )  # fmt: skip
    assert refused.value.err_code == ERR_WRONG_LAST_MSG_ID
    # A message without an id resets the stream's last id: the chain is broken there.
    await _publish(bus, f"{ORDERS}.d")
    with pytest.raises(PublishRefused) as after_anonymous:
        await bus.publish(f"{ORDERS}.e", b"x", expected_last_msg_id="evt-2", timeout_s=DEADLINE_S)
    assert after_anonymous.value.err_code == ERR_WRONG_LAST_MSG_ID
    assert (await bus.stream_state(STREAM)).last_seq == 3


async def test_the_order_of_the_fence_and_duplicate_checks(env: BusEnv) -> None:
    # nats-server checks the expected last sequence, then the duplicate window, then the
    # expected last message id. Either way fenced_publisher treats a duplicate as a refusal.
    bus = env.bus
    await _publish(bus, f"{ORDERS}.a", msg_id="evt-1")
    await _publish(bus, f"{ORDERS}.b", msg_id="evt-2")
    evt_1 = {HDR_MSG_ID: "evt-1"}
    with pytest.raises(PublishRefused) as by_seq:
        await bus.publish(f"{ORDERS}.a", b"x", headers=evt_1, expected_last_seq=0,
                          timeout_s=DEADLINE_S)  # fmt: skip
    assert by_seq.value.err_code == ERR_WRONG_LAST_SEQUENCE
    ack = await bus.publish(f"{ORDERS}.a", b"x", headers=evt_1, expected_last_msg_id="evt-0",
                            timeout_s=DEADLINE_S)  # fmt: skip
    assert (ack.duplicate, ack.seq) == (True, 1)
    assert (await bus.stream_state(STREAM)).last_seq == 2


# --- the relay's fenced publishes (ADR 0011-0013; tests/integration/test_fenced_publisher.py)


def _outgoing(tag: str, count: int, subject: str = f"{ORDERS}.x") -> list[OutgoingMessage]:
    return [
        OutgoingMessage(subject, f"{tag}-{i}".encode(), {HDR_MSG_ID: f"{tag}-{i}"})
        for i in range(count)
    ]


async def _stored(bus: Bus, stream: str = STREAM) -> list[bytes]:
    last = (await bus.stream_state(stream)).last_seq
    return [(await bus.get_message(stream, seq)).data for seq in range(1, last + 1)]


async def _refusal_code(pending: Awaitable[int]) -> int:
    with pytest.raises(PublishRefused) as refused:
        await pending
    return refused.value.err_code


async def test_an_atomic_batch_lands_whole_and_answers_once(env: BusEnv) -> None:
    bus = env.bus
    first = await bus.publish_atomic(STREAM, _outgoing("a", 3), expected_last_seq=0,
                                     timeout_s=DEADLINE_S)  # fmt: skip
    then = await bus.publish_each(STREAM, _outgoing("b", 2), expected_last_seq=3,
                                  timeout_s=DEADLINE_S)  # fmt: skip
    assert (await first, await then) == (3, 5)
    assert await _stored(bus) == [b"a-0", b"a-1", b"a-2", b"b-0", b"b-1"]


async def test_an_atomic_batch_refused_stores_nothing(env: BusEnv) -> None:
    bus = env.bus
    await (await bus.publish_atomic(STREAM, _outgoing("a", 2), expected_last_seq=0,
                                    timeout_s=DEADLINE_S))  # fmt: skip
    stale = await bus.publish_atomic(STREAM, _outgoing("b", 3), expected_last_seq=1,
                                     timeout_s=DEADLINE_S)  # fmt: skip
    assert await _refusal_code(stale) == ERR_WRONG_LAST_SEQUENCE
    again = [*_outgoing("a", 1), *_outgoing("new", 1)]
    duplicate = await bus.publish_atomic(STREAM, again, expected_last_seq=None,
                                         timeout_s=DEADLINE_S)  # fmt: skip
    assert await _refusal_code(duplicate) == ERR_DUPLICATE_IN_BATCH
    assert await _stored(bus) == [b"a-0", b"a-1"]


async def test_a_stream_without_atomic_batches_refuses_them(env: BusEnv) -> None:
    refused = await env.bus.publish_atomic(
        PLAIN_STREAM, _outgoing("a", 2, "plain.x"), expected_last_seq=0, timeout_s=DEADLINE_S
    )
    assert await _refusal_code(refused) == ERR_ATOMIC_DISABLED


async def test_an_atomic_batch_is_bounded(env: BusEnv) -> None:
    for count in (0, ATOMIC_BATCH_MSGS_MAX + 1):
        with pytest.raises(ValueError, match="atomic batch"):
            await env.bus.publish_atomic(
                STREAM, _outgoing("a", count), expected_last_seq=0, timeout_s=DEADLINE_S
            )


async def test_a_stale_fenced_chain_refuses_everything_after_it(env: BusEnv) -> None:
    bus = env.bus
    await _publish(bus, f"{ORDERS}.x", b"foreign")
    first = await bus.publish_each(STREAM, _outgoing("a", 2), expected_last_seq=0,
                                   timeout_s=DEADLINE_S)  # fmt: skip
    then = await bus.publish_each(STREAM, _outgoing("b", 1), expected_last_seq=2,
                                  timeout_s=DEADLINE_S)  # fmt: skip
    # The first chain's answer is its last message's: the chain broke at the refused first.
    assert [await _refusal_code(first), await _refusal_code(then)] == [
        ERR_WRONG_LAST_MSG_ID, ERR_WRONG_LAST_SEQUENCE,
    ]  # fmt: skip
    assert await _stored(bus) == [b"foreign"]


async def test_a_duplicate_in_a_chain_is_a_refusal_only_when_fenced(env: BusEnv) -> None:
    bus = env.bus
    once = await bus.publish_each(STREAM, _outgoing("a", 1), expected_last_seq=None,
                                  timeout_s=DEADLINE_S)  # fmt: skip
    twice = await bus.publish_each(STREAM, _outgoing("a", 1), expected_last_seq=None,
                                   timeout_s=DEADLINE_S)  # fmt: skip
    assert (await once, await twice) == (1, 1)
    fenced = await bus.publish_each(STREAM, _outgoing("a", 1), expected_last_seq=1,
                                    timeout_s=DEADLINE_S)  # fmt: skip
    assert await _refusal_code(fenced) == ERR_DUPLICATE
    # Inside a chain a duplicate is dropped in silence, and the next link finds it missing.
    chain = [*_outgoing("b", 1), *_outgoing("a", 1), *_outgoing("c", 1)]
    broken = await bus.publish_each(STREAM, chain, expected_last_seq=1, timeout_s=DEADLINE_S)
    assert await _refusal_code(broken) == ERR_WRONG_LAST_MSG_ID
    assert await _stored(bus) == [b"a-0", b"b-0"]


# --- durable pull consumers -----------------------------------------------------------------


async def test_a_durable_delivers_what_its_filter_takes_in_order(env: BusEnv) -> None:
    bus = env.bus
    for subject in ("contract.orders.us.lnd", "contract.orders.eu.lnd", "contract.orders.us.cln",
                    "contract.status.us", "contract.orders.us.lnd"):  # fmt: skip
        await _publish(bus, subject)
    consumer = await bus.consumer(_durable(filter_subject="contract.orders.us.*"))
    got = await consumer.fetch(10, timeout_s=env.wait_s)
    assert [(d.subject, d.stream_seq, d.num_delivered) for d in got] == [
        ("contract.orders.us.lnd", 1, 1),
        ("contract.orders.us.cln", 3, 1),
        ("contract.orders.us.lnd", 5, 1),
    ]
    assert [d.num_pending for d in got] == [2, 1, 0]
    for delivery in got:
        await delivery.ack()


async def test_a_full_wildcard_filter_takes_every_depth(env: BusEnv) -> None:
    bus = env.bus
    for subject in ("contract.orders", "contract.orders.us", "contract.orders.us.lnd"):
        await _publish(bus, subject)
    consumer = await bus.consumer(_durable(filter_subject="contract.orders.>"))
    got = await consumer.fetch(10, timeout_s=env.wait_s)
    assert [d.subject for d in got] == ["contract.orders.us", "contract.orders.us.lnd"]


async def test_a_fetch_with_nothing_to_deliver_times_out(env: BusEnv) -> None:
    consumer = await env.bus.consumer(_durable())
    await env.assert_nothing(consumer)


async def test_an_acked_message_is_never_delivered_again(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).ack()
    env.pass_time(ACK_WAIT_S * 2)
    await env.assert_nothing(consumer)


async def test_an_unacked_message_is_delivered_again_after_the_ack_wait(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a", b"order")
    consumer = await env.bus.consumer(_durable())
    first = await env.fetch_one(consumer)
    env.pass_time(ACK_WAIT_S)
    again = await env.fetch_one(consumer)
    assert (again.stream_seq, again.data, again.num_delivered) == (first.stream_seq, b"order", 2)
    await again.ack()


async def test_a_rebound_durable_keeps_its_place(env: BusEnv) -> None:
    for n in range(2):
        await _publish(env.bus, f"{ORDERS}.{n}")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).ack()
    await consumer.close()
    rebound = await env.bus.consumer(_durable())
    assert (await env.fetch_one(rebound)).stream_seq == 2


async def test_a_nak_without_delay_delivers_again_at_once(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).nak()
    again = await env.fetch_one(consumer)
    assert again.num_delivered == 2


async def test_a_nak_with_a_delay_holds_the_message_back(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).nak(LONG_DELAY_S)
    env.pass_time(ACK_WAIT_S * 2)  # past the ack wait, long before the delay
    await env.assert_nothing(consumer)


async def test_a_nak_with_a_delay_delivers_again_after_it(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).nak(0.5)
    env.pass_time(0.5)
    assert (await env.fetch_one(consumer)).num_delivered == 2


async def test_a_terminated_message_is_never_delivered_again(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    await _publish(env.bus, f"{ORDERS}.b")
    consumer = await env.bus.consumer(_durable())
    await (await env.fetch_one(consumer)).term()
    env.pass_time(ACK_WAIT_S * 2)
    second = await env.fetch_one(consumer)
    assert second.stream_seq == 2
    await second.ack()
    await env.assert_nothing(consumer)


async def test_in_progress_then_ack_settles_the_message(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable())
    delivery = await env.fetch_one(consumer)
    await delivery.in_progress()
    await delivery.ack()
    env.pass_time(ACK_WAIT_S * 2)
    await env.assert_nothing(consumer)


async def test_max_deliver_stops_redelivery(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    consumer = await env.bus.consumer(_durable(max_deliver=2))
    assert (await env.fetch_one(consumer)).num_delivered == 1
    env.pass_time(ACK_WAIT_S)
    assert (await env.fetch_one(consumer)).num_delivered == 2
    env.pass_time(ACK_WAIT_S * 2)
    await env.assert_nothing(consumer)


async def test_a_work_queue_forgets_what_its_consumer_acked(env: BusEnv) -> None:
    bus = env.bus
    for n in range(2):
        await _publish(bus, f"wq.{n}")
    consumer = await bus.consumer(Durable(QUEUE_STREAM, "engine", "wq.>", ACK_WAIT_S))
    await (await env.fetch_one(consumer)).ack()

    async def held() -> int:
        return (await bus.stream_state(QUEUE_STREAM)).messages

    await env.eventually(held, lambda messages: messages == 1, "dropped the acked message")
    with pytest.raises(NotFound):
        await bus.get_message(QUEUE_STREAM, 1)


async def test_a_durable_on_a_missing_stream_is_not_found(env: BusEnv) -> None:
    with pytest.raises(NotFound):
        await env.bus.consumer(Durable("NO_SUCH_STREAM", "w", "x.>", ACK_WAIT_S))


async def test_whether_a_durable_exists(env: BusEnv) -> None:
    assert not await env.bus.has_durable(STREAM, "worker")
    assert not await env.bus.has_durable("NO_SUCH_STREAM", "worker")
    consumer = await env.bus.consumer(_durable())
    assert await env.bus.has_durable(STREAM, "worker")
    await consumer.close()  # unbinding keeps the durable
    assert await env.bus.has_durable(STREAM, "worker")
    assert not await env.bus.has_durable(PLAIN_STREAM, "worker")


async def test_adding_a_stream_that_exists_keeps_it_as_it_is(env: BusEnv) -> None:
    await _publish(env.bus, f"{ORDERS}.a")
    await env.bus.add_stream(StreamSpec(STREAM, ("elsewhere.>",), DUPLICATE_WINDOW_S * 2))
    assert (await env.bus.stream_state(STREAM)).messages == 1
    assert await _publish(env.bus, f"{ORDERS}.b") == 2  # its subjects are its own still
    with pytest.raises(NoResponders):
        await env.bus.publish("elsewhere.x", b"x", timeout_s=DEADLINE_S)


# --- time passing by itself: nobody ticks the twin's clock ---------------------------------


async def _within_deadline(call: Awaitable[T]) -> T:
    """``call``'s result or exception, or an AssertionError if it takes past DEADLINE_S (not
    a TimeoutError: the calls here must raise their own)."""
    task = asyncio.ensure_future(call)
    await asyncio.wait({task}, timeout=DEADLINE_S)
    if not task.done():
        task.cancel()
        raise AssertionError("still waiting at the deadline: nothing woke it")
    return task.result()


async def test_a_waiting_fetch_times_out_by_itself(timed: BusEnv) -> None:
    consumer = await timed.bus.consumer(_durable())
    with pytest.raises(TimeoutError):
        await _within_deadline(consumer.fetch(1, timeout_s=ACK_WAIT_S / 4))


async def test_a_waiting_fetch_gets_the_redelivery_when_the_ack_wait_ends(timed: BusEnv) -> None:
    await _publish(timed.bus, f"{ORDERS}.a", b"order")
    consumer = await timed.bus.consumer(_durable())
    first = await timed.fetch_one(consumer)
    # One fetch, waiting from before the ack wait ends until after it.
    again = await _within_deadline(timed.fetch_one(consumer))
    assert (again.stream_seq, again.data, again.num_delivered) == (first.stream_seq, b"order", 2)
    await again.ack()


async def test_what_a_cancelled_worker_held_comes_back_to_the_next_one(timed: BusEnv) -> None:
    """A worker killed mid-work (its task cancelled) settles nothing: after the ack wait its
    deliveries go to whoever binds the durable next (the executors' crash, ADR 0201)."""
    for n in range(2):
        await _publish(timed.bus, f"{ORDERS}.{n}")
    took: list[int] = []

    async def worker() -> None:
        consumer = await timed.bus.consumer(_durable())
        took.extend(d.stream_seq for d in await consumer.fetch(2, timeout_s=DEADLINE_S))
        await asyncio.Event().wait()  # paying, until killed

    killed = asyncio.create_task(worker())
    await wait_for(lambda: len(took) == 2, what="the first worker to take both")
    killed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await killed
    successor = await timed.bus.consumer(_durable())
    got: list[Delivery] = []
    while len(got) < 2:
        got.extend(await _within_deadline(successor.fetch(2, timeout_s=DEADLINE_S)))
    assert sorted((d.stream_seq, d.num_delivered) for d in got) == [(1, 2), (2, 2)]
    for delivery in got:
        await delivery.ack()
    await timed.assert_nothing(successor)


async def test_a_request_nobody_answers_times_out_by_itself(timed: BusEnv) -> None:
    async def silent(_: Message) -> None:
        return None

    sub = await timed.bus.subscribe("rpc.silent", silent)
    try:
        with pytest.raises(TimeoutError):
            await _within_deadline(timed.bus.request("rpc.silent", b"?", timeout_s=ACK_WAIT_S / 4))
    finally:
        await sub.unsubscribe()


# --- core messaging -------------------------------------------------------------------------


async def test_request_and_reply(env: BusEnv) -> None:
    async def pong(msg: Message) -> None:
        await msg.respond(b"pong:" + msg.data + b":" + msg.headers.get("Who", "").encode())

    await env.bus.subscribe("rpc.api.*.ping", pong, queue="api")
    reply = await env.bus.request(
        "rpc.api.v1.ping", b"hi", headers={"Who": "me"}, timeout_s=DEADLINE_S
    )
    assert reply.data == b"pong:hi:me"


async def test_a_request_nobody_listens_to_has_no_responders(env: BusEnv) -> None:
    async def pong(msg: Message) -> None:
        await msg.respond(b"pong")

    await env.bus.subscribe("rpc.api.other", pong)
    with pytest.raises(NoResponders):
        await env.bus.request("rpc.api.ping", b"hi", timeout_s=DEADLINE_S)


async def test_a_queue_group_answers_each_request_once(env: BusEnv) -> None:
    answered: list[str] = []

    def member(name: str) -> Callable[[Message], Awaitable[None]]:
        async def answer(msg: Message) -> None:
            answered.append(name)
            await msg.respond(name.encode())

        return answer

    for name in ("a", "b"):
        await env.bus.subscribe("rpc.api.>", member(name), queue="api")
    for _ in range(4):
        await env.bus.request("rpc.api.ping", b"", timeout_s=DEADLINE_S)
    assert len(answered) == 4


async def test_subscriptions_match_wildcards(env: BusEnv) -> None:
    seen: dict[str, list[str]] = {"*": [], ">": [], "exact": []}

    def record(key: str) -> Callable[[Message], Awaitable[None]]:
        async def handler(msg: Message) -> None:
            seen[key].append(msg.subject)

        return handler

    await env.bus.subscribe("rpc.health.*", record("*"))
    await env.bus.subscribe("rpc.health.>", record(">"))
    await env.bus.subscribe("rpc.health.us", record("exact"))
    sent = ["rpc.health.us", "rpc.health.us.lnd", "rpc.health", "rpc.other"]
    for subject in sent:
        await env.bus.send(subject, b"x")

    async def all_seen() -> int:
        await asyncio.sleep(0)  # the twin hands messages to handlers in tasks
        return sum(map(len, seen.values()))

    await env.eventually(all_seen, lambda n: n >= 4, "delivered everything")
    assert seen == {
        "*": ["rpc.health.us"],
        ">": ["rpc.health.us", "rpc.health.us.lnd"],
        "exact": ["rpc.health.us"],
    }


async def test_a_core_publish_on_a_stream_subject_is_stored(env: BusEnv) -> None:
    await env.bus.send(f"{ORDERS}.core", b"x", headers={HDR_MSG_ID: "core-1"})

    async def last_seq() -> int:
        return (await env.bus.stream_state(STREAM)).last_seq

    await env.eventually(last_seq, lambda seq: seq == 1, "stored the core publish")
    assert (await env.bus.get_message(STREAM, 1)).headers[HDR_MSG_ID] == "core-1"


async def test_a_request_on_a_stream_subject_is_answered_by_the_stream(env: BusEnv) -> None:
    first = await env.bus.request(f"{ORDERS}.req", b"x", timeout_s=DEADLINE_S)
    assert json.loads(first.data) == {"stream": STREAM, "seq": 1}
    refused = await env.bus.request(
        f"{ORDERS}.req", b"x", headers={"Nats-Expected-Last-Sequence": "0"},
        timeout_s=DEADLINE_S,
    )  # fmt: skip
    assert json.loads(refused.data)["error"]["err_code"] == ERR_WRONG_LAST_SEQUENCE


@pytest.mark.parametrize(
    "limits",
    [{"pending_msgs_max": 2}, {"pending_bytes_max": 25}],
    ids=["messages", "bytes"],
)
async def test_a_handler_that_falls_behind_loses_what_exceeds_its_pending_limit(
    env: BusEnv, limits: dict[str, int]
) -> None:
    """The API and the health listener bound what waits for their handler: beyond the limit
    the bus drops messages rather than queueing without end, and the subscription lives on.
    Payloads of 10 bytes: two fit under 25 bytes, a third would reach it."""
    received: list[bytes] = []
    holding = asyncio.Event()
    release = asyncio.Event()
    drained = asyncio.Event()  # the last message the limit kept has been handled
    caught_up = asyncio.Event()

    def payload(n: int) -> bytes:
        return f"{n:010d}".encode()

    async def slow(msg: Message) -> None:
        received.append(msg.data)
        if msg.data == payload(2):
            drained.set()
        if msg.data == b"last":
            caught_up.set()
        if msg.data == payload(0):
            holding.set()
            await release.wait()

    async def echo(msg: Message) -> None:
        await msg.respond(b"")

    await env.bus.subscribe("rpc.slow", slow, **limits)
    await env.bus.subscribe("rpc.sync", echo)
    await env.bus.send("rpc.slow", payload(0))
    await asyncio.wait_for(holding.wait(), DEADLINE_S)
    for n in range(1, 11):
        await env.bus.send("rpc.slow", payload(n))
    # A round trip on the same connection: everything sent before it has reached the client.
    await env.bus.request("rpc.sync", b"", timeout_s=DEADLINE_S)
    release.set()
    await asyncio.wait_for(drained.wait(), DEADLINE_S)
    await env.bus.send("rpc.slow", b"last")
    await asyncio.wait_for(caught_up.wait(), DEADLINE_S)
    assert received == [payload(0), payload(1), payload(2), b"last"]


async def test_the_bus_names_its_largest_message(env: BusEnv) -> None:
    # nats-server's default, which the harness keeps and the twin reports.
    assert env.bus.max_payload == 1024 * 1024
