"""The engine and a real region executor on one in-memory bus twin (issue 14, ADR 0098,
0105): no NATS, no PostgreSQL. The engine is the production ``bootstrap`` on
``InMemoryEventStore`` + ``MemoryBus``; the executor is the production ``Executor`` given the
same bus, paying through the LND adapter against the simulated network.

A submitted invoice intent is relayed as a signed work order to the twin's dispatch stream,
taken by the executor's durable, paid on the simulated network, reported back as a request
on the twin bus and settled. A worker killed mid-payment leaves its order unacked on the twin
too: the next worker gets it after ``ack_wait``, on the loop's clock, and the network sees
one payment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.memory import MemoryBus
from services.bus.stream_specs import stream_spec
from services.engine.clock import SystemClock
from services.eventstore.memory import InMemoryEventStore
from services.executor import Executor
from services.executor.consumer import consumer_name
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.settings import Settings
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import (
    AMOUNT_MSAT,
    FAST,
    MAX_FEE_MSAT,
    MERCHANT,
    SETTLE_TIMEOUT_S,
    SimStack,
    sim_stack,
)
from tests.integration.test_memory_twins_engine import REQUEST_TIMEOUT_S

SUBMIT = "corridor.api.v1.intents.submit.alice"
DUPLICATE_WINDOW_S = 120  # the settings' default


@contextlib.asynccontextmanager
async def twin_engine(bus: MemoryBus, state_dir: Path) -> AsyncIterator[Engine]:
    clock = SystemClock()
    store = InMemoryEventStore(now_ms=clock.now_ms)
    settings = Settings(relay_poll_s=0.2, state_dir=state_dir)
    engine = await bootstrap(settings, store=store, bus=bus)
    await engine.start()
    try:
        await wait_for(engine.relay.leader.is_set, what="the relay to lead on the twin's lease")
        yield engine
    finally:
        await engine.stop()


def twin_executor(bus: MemoryBus, state_dir: Path, executor_id: str) -> Executor:
    """What ``build_executor`` builds, but given the bus instead of a NATS url."""
    resolved = resolve_node("sim://us-lnd", region="us", state_dir=state_dir)
    return Executor(
        bus=bus,
        region="us",
        node_name=resolved.name,
        node=adapter_for(resolved.uri),
        executor_id=executor_id,
        secret=load_or_create_secret(state_dir / SECRET_FILE_NAME),
        limits=FAST,
        verifier=FileKeyring(keys_dir(state_dir) / PUBLIC_KEYS_FILE),
    )


async def _submit_invoice(bus: MemoryBus, sim: SimStack, key: str) -> tuple[str, str, bytes]:
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, "twin test", 3600)
    assert invoice.bolt11 is not None
    body = submit(
        key=key, amount_msat=AMOUNT_MSAT, max_fee_msat=MAX_FEE_MSAT,
        payment_request=invoice.bolt11, destination=None,
    )  # fmt: skip
    request = json.dumps(body).encode()
    reply = await bus.request(SUBMIT, request, timeout_s=REQUEST_TIMEOUT_S)
    answer = json.loads(reply.data)
    assert answer["ok"] is True, answer
    return str(answer["intent_id"]), invoice.payment_hash, request


async def _state_is(engine: Engine, intent_id: str, state: str) -> bool:
    view = await engine.processor.view(intent_id)
    return getattr(view, "state", None) == state


async def test_an_executor_on_the_twin_bus_pays_an_intent_to_settled(tmp_path: Path) -> None:
    bus = MemoryBus()  # on the event loop's clock
    async with sim_stack(tmp_path, nats_url="") as sim, twin_engine(bus, tmp_path) as engine:
        executor = twin_executor(bus, tmp_path, "us-1")
        running = asyncio.create_task(executor.run())
        sim.running.append((executor, running))
        await wait_for(executor.ready.is_set, what="the executor to bind its durable")
        assert await bus.has_durable(subjects.DISPATCH_STREAM, consumer_name("us", "us-lnd"))
        intent_id, payment_hash, request = await _submit_invoice(bus, sim, "twin-e2e")
        await wait_for(
            lambda: _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the intent to settle",
        )
        [payment] = sim.attempts(payment_hash)
        assert (payment.origin, payment.status) == ("us-lnd", "succeeded")
        stream = await engine.store.read_stream(intent_id)
        assert stream[-1].type == "IntentSettled"
        assert stream[-1].payload["total_msat"] == AMOUNT_MSAT + payment.fee_msat
        executor.stop()
        await asyncio.wait_for(running, SETTLE_TIMEOUT_S)  # stops by itself on a quiet bus
        # The executor's owner closes the bus, not the executor: the engine still answers.
        again = await bus.request(SUBMIT, request, timeout_s=REQUEST_TIMEOUT_S)
        assert json.loads(again.data)["duplicate"] is True


async def test_a_worker_killed_on_the_twin_leaves_its_order_to_the_next(tmp_path: Path) -> None:
    bus = MemoryBus()
    async with sim_stack(tmp_path, nats_url="") as sim, twin_engine(bus, tmp_path) as engine:
        sim.network.faults.drop_resolution(node=MERCHANT)  # the HTLC stays in flight
        first = twin_executor(bus, tmp_path, "us-1")
        first_task = asyncio.create_task(first.run())
        await wait_for(first.ready.is_set, what="the first executor to bind")
        intent_id, payment_hash, _ = await _submit_invoice(bus, sim, "twin-kill")
        await wait_for(lambda: len(sim.attempts(payment_hash)) == 1, what="the HTLC to be held")
        await sim.kill(first, first_task)  # mid-payment: nothing acked

        second = twin_executor(bus, tmp_path, "us-2")
        sim.running.append((second, asyncio.create_task(second.run())))
        await wait_for(
            lambda: _state_is(engine, intent_id, "in_flight"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the next worker to take the order and find the payment in flight",
        )
        sim.network.faults.release_dropped()
        await wait_for(
            lambda: _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the intent to settle",
        )
        assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def test_an_executor_on_the_twin_rebinds_a_durable_lost_with_its_stream(
    tmp_path: Path,
) -> None:
    """The dispatch stream deleted and re-created (ADR 0075): the twin refuses the old
    binding's fetches as the server does, and the executor binds its durable again through
    the port (``has_durable``), then pays what the new stream brings."""
    bus = MemoryBus()
    async with sim_stack(tmp_path, nats_url="") as sim, twin_engine(bus, tmp_path) as engine:
        executor = twin_executor(bus, tmp_path, "us-1")
        sim.running.append((executor, asyncio.create_task(executor.run())))
        await wait_for(executor.ready.is_set, what="the executor to bind its durable")
        durable = consumer_name("us", "us-lnd")
        bus.delete_stream(subjects.DISPATCH_STREAM)
        assert not await bus.has_durable(subjects.DISPATCH_STREAM, durable)
        await bus.add_stream(stream_spec(subjects.DISPATCH_STREAM, DUPLICATE_WINDOW_S))
        await wait_for(
            lambda: bus.has_durable(subjects.DISPATCH_STREAM, durable),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the executor to bind its durable again",
        )
        intent_id, _, _ = await _submit_invoice(bus, sim, "twin-rebind")
        await wait_for(
            lambda: _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the rebound executor to settle a new intent",
        )
