"""Each simulated process's own connection to the shared bus and store, where the seed's
message and database faults strike (ADR 0100).

A real engine or executor holds its own NATS connection and its own database sessions: when it
crashes they close, its subscriptions vanish, its unacked deliveries go back to the stream
after ``ack_wait`` and its advisory locks are freed. ``BusConnection`` and ``StoreHandle`` give
every process of the simulation the same: one per process over the one ``MemoryBus`` and the
one ``InMemoryEventStore``, closed when the process crashes.

What crosses a connection meets the ``Weather`` of the current step: a request may be lost on
the way, or its reply lost (the sender times out and tries again), delivered twice, or held
back so that later messages overtake it; a JetStream publish may be lost, or stored with its
acknowledgement lost; an ack may be lost, so the message comes back. Every draw comes from the
seeded generator, in the order messages cross, so a seed replays exactly.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from services.bus.memory import MemoryBus
from services.bus.port import (
    BusError,
    Delivery,
    Durable,
    Handler,
    Message,
    OutgoingMessage,
    PubAck,
    PullConsumer,
    StoredMessage,
    StreamSpec,
    StreamState,
    Subscription,
)
from services.eventstore.memory import InMemoryEventStore
from services.simulation.faults import FaultKind, StoreDown

# A message held back by MESSAGE_DELAY waits up to this long (virtual seconds).
DELAY_S_MAX: Final = 3.0
# Under a message fault, this share of the messages crossing is struck.
STRIKE_RATE: Final = 0.3
MESSAGE_KINDS: Final = (
    FaultKind.MESSAGE_DROP,
    FaultKind.MESSAGE_DUPLICATE,
    FaultKind.MESSAGE_REORDER,
    FaultKind.MESSAGE_DELAY,
)


class Weather:
    """The message faults in force this step, and the seeded draws of which message they
    strike. ``injected`` counts what struck, by kind."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.kinds: tuple[FaultKind, ...] = ()
        self.injected: Counter[str] = Counter()

    def strike(self) -> FaultKind | None:
        if not self.kinds or self._rng.random() >= STRIKE_RATE:
            return None
        kind = self.kinds[self._rng.randrange(len(self.kinds))]
        self.injected[kind.value] += 1
        return kind

    def delay_s(self) -> float:
        return self._rng.uniform(0.0, DELAY_S_MAX)


class ConnectionClosed(BusError):
    """The process that held this connection crashed."""


class _Sub:
    def __init__(self, inner: Subscription) -> None:
        self.inner = inner
        self.gone = False

    async def unsubscribe(self) -> None:
        if not self.gone:
            self.gone = True
            await self.inner.unsubscribe()


class _Delivery:
    """A JetStream delivery whose ack may be lost on the way back."""

    def __init__(self, inner: Delivery, conn: BusConnection) -> None:
        self._inner = inner
        self._conn = conn

    @property
    def subject(self) -> str:
        return self._inner.subject

    @property
    def data(self) -> bytes:
        return self._inner.data

    @property
    def headers(self) -> Mapping[str, str]:
        return self._inner.headers

    @property
    def num_delivered(self) -> int:
        return self._inner.num_delivered

    @property
    def stream_seq(self) -> int:
        return self._inner.stream_seq

    @property
    def num_pending(self) -> int:
        return self._inner.num_pending

    async def ack(self) -> None:
        self._conn.check_open()
        if self._conn.weather.strike() in (FaultKind.MESSAGE_DROP, FaultKind.MESSAGE_DUPLICATE):
            return  # lost: the message comes back after ack_wait, a duplicate delivery
        await self._inner.ack()

    async def nak(self, delay_s: float | None = None) -> None:
        self._conn.check_open()
        await self._inner.nak(delay_s)

    async def term(self) -> None:
        self._conn.check_open()
        await self._inner.term()

    async def in_progress(self) -> None:
        self._conn.check_open()
        await self._inner.in_progress()


class _Consumer:
    def __init__(self, inner: PullConsumer, conn: BusConnection) -> None:
        self._inner = inner
        self._conn = conn

    async def fetch(self, batch: int, *, timeout_s: float) -> list[Delivery]:
        self._conn.check_open()
        got = await self._inner.fetch(batch, timeout_s=timeout_s)
        self._conn.check_open()  # a crashed process takes nothing more
        return [_Delivery(d, self._conn) for d in got]

    async def close(self) -> None:
        await self._inner.close()


class BusConnection:
    """One process's connection to the shared ``MemoryBus`` (the ``Bus`` port)."""

    def __init__(self, bus: MemoryBus, name: str, weather: Weather) -> None:
        self.bus = bus
        self.name = name
        self.weather = weather
        self.closed = False
        self._subs: list[_Sub] = []
        self._consumers: list[_Consumer] = []
        # Sees every request sent (subject, data): the world keeps executors' reports to
        # send again later, as stale callbacks.
        self.tap: Callable[[str, bytes], None] | None = None

    def check_open(self) -> None:
        if self.closed:
            raise ConnectionClosed(f"{self.name}: connection closed")

    async def close(self) -> None:
        """The process is gone: its subscriptions and bindings with it."""
        if self.closed:
            return
        self.closed = True
        for sub in self._subs:
            await sub.unsubscribe()
        for consumer in self._consumers:
            await consumer.close()

    async def _timeout(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        raise TimeoutError(f"{self.name}: no answer within {timeout_s} s")

    async def add_stream(self, spec: StreamSpec) -> None:
        self.check_open()
        await self.bus.add_stream(spec)

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        expected_last_seq: int | None = None,
        expected_last_msg_id: str | None = None,
        timeout_s: float,
    ) -> PubAck:
        self.check_open()
        kind = self.weather.strike()
        if kind is FaultKind.MESSAGE_DROP:
            await self._timeout(timeout_s)
        if kind in (FaultKind.MESSAGE_DELAY, FaultKind.MESSAGE_REORDER):
            await asyncio.sleep(self.weather.delay_s())
        ack = await self.bus.publish(
            subject, data, headers=headers, expected_last_seq=expected_last_seq,
            expected_last_msg_id=expected_last_msg_id, timeout_s=timeout_s,
        )  # fmt: skip
        if kind is FaultKind.MESSAGE_DUPLICATE:
            await self._timeout(timeout_s)  # stored, and the acknowledgement lost
        return ack

    async def publish_each(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        return await self._fenced(
            self.bus.publish_each, stream, messages, expected_last_seq, timeout_s
        )

    async def publish_atomic(
        self,
        stream: str,
        messages: Sequence[OutgoingMessage],
        *,
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        return await self._fenced(
            self.bus.publish_atomic, stream, messages, expected_last_seq, timeout_s
        )

    async def _fenced(
        self,
        publish: Callable[..., Awaitable[asyncio.Future[int]]],
        stream: str,
        messages: Sequence[OutgoingMessage],
        expected_last_seq: int | None,
        timeout_s: float,
    ) -> asyncio.Future[int]:
        self.check_open()
        kind = self.weather.strike()
        loop = asyncio.get_running_loop()
        if kind is FaultKind.MESSAGE_DROP:
            lost: asyncio.Future[int] = loop.create_future()
            loop.call_later(timeout_s, _fail, lost)
            return lost
        if kind in (FaultKind.MESSAGE_DELAY, FaultKind.MESSAGE_REORDER):
            await asyncio.sleep(self.weather.delay_s())
        acks = await publish(
            stream, messages, expected_last_seq=expected_last_seq, timeout_s=timeout_s
        )
        if kind is not FaultKind.MESSAGE_DUPLICATE:
            return acks
        # Stored, and the acknowledgement lost.
        unheard: asyncio.Future[int] = loop.create_future()
        loop.call_later(timeout_s, _fail, unheard)
        acks.add_done_callback(lambda f: None if f.cancelled() else f.exception())
        return unheard

    async def send(
        self, subject: str, data: bytes, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.check_open()
        kind = self.weather.strike()
        if kind is FaultKind.MESSAGE_DROP:
            return
        if kind in (FaultKind.MESSAGE_DELAY, FaultKind.MESSAGE_REORDER):
            await asyncio.sleep(self.weather.delay_s())
            if self.closed:
                return
        await self.bus.send(subject, data, headers=headers)

    async def request(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float,
    ) -> Message:
        self.check_open()
        if self.tap is not None:
            self.tap(subject, data)
        kind = self.weather.strike()
        if kind is FaultKind.MESSAGE_DROP:
            if self.weather.delay_s() < DELAY_S_MAX / 2:
                await self._timeout(timeout_s)  # lost on the way
            # Heard and answered; the reply lost on the way back.
            await self.bus.request(subject, data, headers=headers, timeout_s=timeout_s)
            await self._timeout(timeout_s)
        if kind in (FaultKind.MESSAGE_DELAY, FaultKind.MESSAGE_REORDER):
            await asyncio.sleep(self.weather.delay_s())
        if kind is FaultKind.MESSAGE_DUPLICATE:
            # Delivered twice (as a retry that overtook the first): both are answered.
            twin = asyncio.ensure_future(
                self.bus.request(subject, data, headers=headers, timeout_s=timeout_s)
            )
            twin.add_done_callback(_unheard)
        reply = await self.bus.request(subject, data, headers=headers, timeout_s=timeout_s)
        self.check_open()
        return reply

    @property
    def max_payload(self) -> int:
        return self.bus.max_payload

    async def subscribe(
        self,
        subject: str,
        handler: Handler,
        *,
        queue: str = "",
        pending_msgs_max: int | None = None,
        pending_bytes_max: int | None = None,
    ) -> Subscription:
        self.check_open()
        inner = await self.bus.subscribe(
            subject, handler, queue=queue, pending_msgs_max=pending_msgs_max,
            pending_bytes_max=pending_bytes_max,
        )  # fmt: skip
        sub = _Sub(inner)
        self._subs.append(sub)
        return sub

    async def consumer(self, durable: Durable) -> PullConsumer:
        self.check_open()
        consumer = _Consumer(await self.bus.consumer(durable), self)
        self._consumers.append(consumer)
        return consumer

    async def has_durable(self, stream: str, name: str) -> bool:
        self.check_open()
        return await self.bus.has_durable(stream, name)

    async def stream_state(self, stream: str) -> StreamState:
        self.check_open()
        return await self.bus.stream_state(stream)

    async def get_message(
        self, stream: str, seq: int, *, next_on: str | None = None
    ) -> StoredMessage:
        self.check_open()
        return await self.bus.get_message(stream, seq, next_on=next_on)

    async def delete_message(self, stream: str, seq: int) -> None:
        self.check_open()
        await self.bus.delete_message(stream, seq)


def _unheard(future: asyncio.Future[Any]) -> None:
    """The second answer to a duplicated request goes nowhere, like its failure."""
    if not future.cancelled():
        future.exception()


def _fail(future: asyncio.Future[int]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no acknowledgement"))


class Database:
    """The one store, and whether it is up: while it restarts every statement fails."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store
        self.down = False
        self.restarts = 0

    def restart(self) -> None:
        """Every session ends (leases with them); statements fail until ``up``."""
        self.down = True
        self.restarts += 1
        self.store.lose_leases()

    def up(self) -> None:
        self.down = False


class StoreHandle:
    """One process's sessions on the shared store (the ``EventStore`` port).

    While the database restarts, every call raises ``StoreDown`` (a dropped connection);
    ``close`` ends this process's sessions (its leases), never the store."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._leases: list[_Lease] = []
        self.closed = False

    def lease(self, name: str) -> _Lease:
        lease = _Lease(self._database.store.lease(name), self._database)
        self._leases.append(lease)
        return lease

    async def close(self) -> None:
        self.closed = True
        for lease in self._leases:
            await lease.release()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._database.store, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        database = self._database

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            if database.down or self.closed:
                raise StoreDown("the database is restarting")
            return await attr(*args, **kwargs)

        return guarded


class _Lease:
    """A lease taken through one process's session: not to be had while the database is down."""

    def __init__(self, inner: Any, database: Database) -> None:
        self._inner = inner
        self._database = database

    async def acquire(self) -> bool:
        if self._database.down:
            raise StoreDown("the database is restarting")
        return bool(await self._inner.acquire())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
