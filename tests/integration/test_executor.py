"""Region executors over real NATS, PostgreSQL, the engine and simulated LND nodes.

The simulated network is the ground truth: ``network.payments()`` lists every attempt any node
made, so "never pays twice" is checked where the money moves, not in our own records.
The engine signs work orders with its key in the test's state dir, and the executors trust
that key (ADR 0063); tests/integration/test_signed_orders.py covers the orders they refuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.nats_adapter import NatsBus
from services.executor import Executor, ExecutorLimits, HealthBoard
from services.executor.consumer import bind_consumer, consumer_config
from services.executor.health import decode_report, health_subject
from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.port import FailureReason
from services.settings import Settings
from services.signing.file_keys import PUBLIC_KEYS_FILE, FileKeyring, keys_dir
from services.sim.lnd_server import LndNodeServer, start_lnd_node_server
from services.sim.network import SimNetwork
from services.sim.records import SimPayment
from services.sim.topology import default_topology
from tests.conftest import wait_for
from tests.factories import submit

SEED = 7
OUR_NODES = ("us-lnd", "eu-lnd")  # the default corridor us-eu: us/us-lnd, then eu/eu-lnd
MERCHANT = "merchant-01"  # lnd, reached through hub-us
AMOUNT_MSAT = 50_000
MAX_FEE_MSAT = 10_000
SETTLE_TIMEOUT_S = 10.0
# Small clocks so that redelivery after a kill takes about a second, not thirty.
FAST = ExecutorLimits(
    ack_wait_s=1.0,
    heartbeat_s=0.25,
    fetch_wait_s=0.2,
    redelivery_delay_s_first=0.1,
    redelivery_delay_s_max=0.5,
    engine_backoff_s_first=0.05,
    node_backoff_s_first=0.05,
    track_poll_s=0.1,
    health_interval_s=0.2,
    stop_grace_s=2.0,
)


def make_executor(
    state_dir: Path,
    nats_url: str,
    region: str,
    node: str,
    executor_id: str,
    limits: ExecutorLimits = FAST,
) -> Executor:
    """What ``build_executor`` builds, trusting the engine keys in ``state_dir`` (the runner
    does not load them yet: ADR 0063, "Wiring")."""
    resolved = resolve_node(f"sim://{node}", region=region, state_dir=state_dir)
    return Executor(
        nats_url=nats_url,
        region=region,
        node_name=resolved.name,
        node=adapter_for(resolved.uri),
        executor_id=executor_id,
        secret=load_or_create_secret(state_dir / SECRET_FILE_NAME),
        limits=limits,
        verifier=FileKeyring(keys_dir(state_dir) / PUBLIC_KEYS_FILE),
    )


@contextlib.asynccontextmanager
async def signing_engine(
    nats_url: str, database_url: str, state_dir: Path
) -> AsyncIterator[Engine]:
    """The shared engine, with its signing key created in ``state_dir`` (its default place)."""
    settings = Settings(relay_poll_s=0.2, state_dir=state_dir)
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@dataclass
class SimStack:
    network: SimNetwork
    state_dir: Path
    nats_url: str
    running: list[tuple[Executor, asyncio.Task[None]]] = field(default_factory=list)

    def start(
        self, region: str, node: str, executor_id: str, limits: ExecutorLimits = FAST
    ) -> tuple[Executor, asyncio.Task[None]]:
        executor = make_executor(self.state_dir, self.nats_url, region, node, executor_id, limits)
        task = asyncio.create_task(executor.run(), name=executor_id)
        self.running.append((executor, task))
        return executor, task

    async def kill(self, executor: Executor, task: asyncio.Task[None]) -> None:
        """Cancel at whatever instant the worker is in: no ack, no goodbye."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await executor.close_node()

    def attempts(self, payment_hash: str) -> list[SimPayment]:
        return [p for p in self.network.payments() if p.payment_hash == payment_hash]


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


@contextlib.asynccontextmanager
async def sim_stack(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    """Our two simulated LND nodes, listed in ``tmp_path``'s endpoints.json."""
    network = SimNetwork.from_topology(default_topology(), seed=SEED)
    servers: list[LndNodeServer] = []
    for name in OUR_NODES:
        servers.append(await start_lnd_node_server(network, name, state_dir=tmp_path / "nodes"))
    nodes = []
    for server in servers:
        node = network.node(server.node_name)
        nodes.append(
            {
                "name": node.name,
                "role": node.role,
                "region": node.region,
                "implementation": node.implementation,
                "endpoint": server.endpoint,
                "pubkey": node.pubkey,
            }
        )
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": nodes}))
    stack = SimStack(network=network, state_dir=tmp_path, nats_url=nats_url)
    try:
        yield stack
    finally:
        for executor, task in stack.running:
            await stack.kill(executor, task)
        for server in servers:
            await server.stop()
        await network.aclose()


async def _submit(
    nc: Client, *, key: str, payment_request: str | None = None, destination: str | None = None
) -> str:
    command = submit(
        key=key, amount_msat=AMOUNT_MSAT, max_fee_msat=MAX_FEE_MSAT,
        payment_request=payment_request, destination=destination,
    )  # fmt: skip
    msg = await nc.request(
        "corridor.api.v1.intents.submit.alice", json.dumps(command).encode(), timeout=10
    )
    reply = json.loads(msg.data)
    assert reply["ok"], reply
    return str(reply["intent_id"])


def _state_is(engine: Engine, intent_id: str, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        view = await engine.processor.view(intent_id)
        return getattr(view, "state", None) == state

    return check


async def _event_types(engine: Engine, intent_id: str) -> list[str]:
    return [e.type for e in await engine.store.read_stream(intent_id)]


async def _invoice_intent(sim: SimStack, nc: Client, key: str) -> tuple[str, str, str]:
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, "executor test", 3600)
    assert invoice.bolt11 is not None
    intent_id = await _submit(nc, key=key, payment_request=invoice.bolt11, destination=None)
    return intent_id, invoice.payment_hash, invoice.preimage


async def test_settles_an_invoice_end_to_end(engine: Engine, nc: Client, sim: SimStack) -> None:
    sim.start("us", "us-lnd", "us-1")
    intent_id, payment_hash, preimage = await _invoice_intent(sim, nc, "e2e")
    await wait_for(
        _state_is(engine, intent_id, "settled"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the intent to settle",
    )
    [payment] = sim.attempts(payment_hash)
    assert (payment.origin, payment.status, payment.preimage) == ("us-lnd", "succeeded", preimage)
    settled = (await engine.store.read_stream(intent_id))[-1]
    assert settled.type == "IntentSettled"
    assert settled.payload["fee_msat"] == payment.fee_msat > 0
    assert settled.payload["total_msat"] == AMOUNT_MSAT + payment.fee_msat


async def test_keysend_uses_the_derived_hash(engine: Engine, nc: Client, sim: SimStack) -> None:
    sim.start("us", "us-lnd", "us-1")
    merchant = sim.network.node(MERCHANT)
    intent_id = await _submit(nc, key="keysend", destination=merchant.pubkey)
    await wait_for(
        _state_is(engine, intent_id, "settled"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the keysend intent to settle",
    )
    secret = load_or_create_secret(sim.state_dir / SECRET_FILE_NAME)
    preimage, payment_hash = keysend_preimage(secret, intent_id, 1)
    [payment] = sim.attempts(payment_hash)
    assert payment.is_keysend and payment.status == "succeeded" and payment.preimage == preimage


async def test_a_duplicate_work_order_pays_once(engine: Engine, nc: Client, sim: SimStack) -> None:
    sim.network.faults.drop_resolution(node=MERCHANT)  # hold the HTLC: both deliveries overlap
    sim.start("us", "us-lnd", "us-1")
    sim.start("us", "us-lnd", "us-2")
    intent_id, payment_hash, _ = await _invoice_intent(sim, nc, "dup")
    await wait_for(lambda: len(sim.attempts(payment_hash)) == 1, what="the first send")

    # The relay re-publishing after JetStream's duplicate window: same body, new message id.
    js = nc.jetstream()
    original = await js.get_last_msg(
        subjects.DISPATCH_STREAM, subjects.dispatch_subject("us", "us-lnd")
    )
    # Its own headers only: the stored JetStream batch headers belong to the original publish.
    headers = {k: v for k, v in (original.headers or {}).items() if k.startswith("Corridor-")}
    headers[subjects.HDR_MSG_ID] = "republished"
    assert original.data is not None
    await js.publish(subjects.dispatch_subject("us", "us-lnd"), original.data, headers=headers)
    # The second delivery finds the node's in-flight record and reports it instead of sending.
    await wait_for(_state_is(engine, intent_id, "in_flight"), what="the in-flight report")

    sim.network.faults.release_dropped()
    await wait_for(
        _state_is(engine, intent_id, "settled"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the intent to settle",
    )
    assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]
    assert (await _event_types(engine, intent_id)).count("PaymentSucceeded") == 1


async def test_a_worker_killed_mid_payment_never_pays_twice(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    sim.network.faults.drop_resolution(node=MERCHANT)
    first, first_task = sim.start("us", "us-lnd", "us-1")
    intent_id, payment_hash, _ = await _invoice_intent(sim, nc, "kill")
    await wait_for(lambda: len(sim.attempts(payment_hash)) == 1, what="the HTLC to be held")
    await sim.kill(first, first_task)

    sim.start("us", "us-lnd", "us-1")  # the same worker, restarted
    await wait_for(
        _state_is(engine, intent_id, "in_flight"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the restarted worker to find the in-flight payment",
    )
    sim.network.faults.release_dropped()
    await wait_for(
        _state_is(engine, intent_id, "settled"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the intent to settle",
    )
    assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def test_a_proven_failure_is_rerouted_to_the_next_region(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    for channel in sim.network.channels_of("us-lnd"):
        sim.network.faults.fail_route(channel_id=channel.channel_id, reason=FailureReason.NO_ROUTE)
    sim.start("us", "us-lnd", "us-1")
    sim.start("eu", "eu-lnd", "eu-1")
    intent_id, payment_hash, _ = await _invoice_intent(sim, nc, "reroute")
    await wait_for(
        _state_is(engine, intent_id, "settled"),
        timeout_s=SETTLE_TIMEOUT_S,
        what="the intent to settle through eu",
    )
    attempts = sim.attempts(payment_hash)
    assert [(p.origin, p.status) for p in attempts] == [
        ("us-lnd", "failed"),
        ("eu-lnd", "succeeded"),
    ]
    history = await engine.store.read_stream(intent_id)
    failed = next(e for e in history if e.type == "PaymentAttemptFailed")
    assert failed.payload["reason"] == "no_route" and failed.payload["confirmed_not_paid"]
    routed = [e.payload["region"] for e in history if e.type == "IntentRouted"]
    assert routed == ["us", "eu"]


async def test_publishes_node_health(engine: Engine, nc: Client, sim: SimStack) -> None:
    reports: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)

    async def on_report(msg: object) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            reports.put_nowait(msg.data)  # type: ignore[attr-defined]

    await nc.subscribe(health_subject("eu", "eu-lnd"), cb=on_report)
    sim.start("eu", "eu-lnd", "eu-1")
    report = decode_report(await asyncio.wait_for(reports.get(), timeout=SETTLE_TIMEOUT_S))
    assert report.healthy and report.channels == 2 and report.outbound_msat > AMOUNT_MSAT
    assert (report.region, report.node, report.executor_id) == ("eu", "eu-lnd", "eu-1")
    board = HealthBoard(nodes=[("eu", "eu-lnd")], interval_ms=200, stale_intervals=3)
    board.observe(health_subject("eu", "eu-lnd"), report, received_at_ms=report.observed_at_ms)
    assert board.health("eu", "eu-lnd", report.observed_at_ms + 100) is not None
    assert msgspec.to_builtins(board.snapshot(report.observed_at_ms + 601)[("eu", "eu-lnd")]) == {
        "healthy": False,
        "outbound_msat": None,
    }


async def test_a_durable_from_the_region_wide_subject_era_is_moved_to_its_node_subject(
    engine: Engine, nc: Client
) -> None:
    # Durables made before orders had a subject per node filtered on the region only, and
    # would never see a per-node order again if left as they were.
    js = nc.jetstream()
    limits = ExecutorLimits()
    old = consumer_config("us", "us-lnd", limits)
    old_config = old.evolve(filter_subject=f"{subjects.DISPATCH_PREFIX}.us")
    await js.add_consumer(subjects.DISPATCH_STREAM, config=old_config)
    await bind_consumer(NatsBus(nc, js), "us", "us-lnd", limits)
    info = await js.consumer_info(subjects.DISPATCH_STREAM, old.durable_name or "")
    assert info.config.filter_subject == subjects.dispatch_subject("us", "us-lnd")


async def test_every_order_is_checked_with_the_engine_before_it_is_sent(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    # The first delivery of a fresh order included (ADR 0063, replacing ADR 0203's skip): the
    # engine confirms the attempt is current and still waits for a send.
    asked: list[str] = []

    async def spy(msg: Msg) -> None:
        asked.append(json.loads(msg.data)["intent_id"])

    for subject in (subjects.API_STATUS, f"{subjects.API_STATUS}.>"):  # with or without identity
        await nc.subscribe(subject, cb=spy)
    first, first_task = sim.start("us", "us-lnd", "us-1")
    fresh_id, payment_hash, _ = await _invoice_intent(sim, nc, "fresh")
    await wait_for(_state_is(engine, fresh_id, "settled"), timeout_s=SETTLE_TIMEOUT_S,
                   what="the fresh intent to settle")  # fmt: skip
    assert asked == [fresh_id]
    await sim.kill(first, first_task)

    # A new durable replays the stream: that order is asked about again, found obsolete.
    await nc.jetstream().delete_consumer(subjects.DISPATCH_STREAM, "executor-us-us-lnd")
    sim.start("us", "us-lnd", "us-2")
    await wait_for(lambda: asked == [fresh_id, fresh_id], what="the replayed order's check")
    assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]
