"""Self-healing over real NATS, PostgreSQL, the engine, executors and simulated LND nodes
(issue 13, findings 3 and 8; ADR 0075-0077).

The simulated network is the ground truth for "never pays twice": ``sim.attempts(hash)``
lists every payment any node made for a hash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from projections.exceptions import build as exception_queue
from schemas.commands import RecordPaymentOutcome
from services.bootstrap import Engine, bootstrap
from services.bus import subjects
from services.bus.jetstream import CREDS_ENV
from services.devstack.nats import NatsServer
from services.domain.policy.spend import WindowLimit
from services.engine.processor import CommandEnvelope
from services.identity import nats_auth
from services.identity.registry import load_registry, registry_path
from services.relay.outbox import CHECKPOINT
from services.settings import Settings
from tests.conftest import wait_for
from tests.factories import invoice, submit
from tests.integration.test_executor import (
    SETTLE_TIMEOUT_S,
    _invoice_intent,
    _state_is,
    sim_stack,
)
from tests.nats_creds import connect_as

INTENTS = 5
WRONG_PREIMAGE = "00" * 32


@contextlib.asynccontextmanager
async def running_engine(
    nats_url: str, database_url: str, state_dir: Path, **settings: Any
) -> AsyncIterator[Engine]:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=state_dir, **settings),
        nats_url=nats_url,
        database_url=database_url,
    )
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    try:
        yield engine
    finally:
        await engine.stop()


async def _event_types(engine: Engine, intent_id: str) -> list[str]:
    return [e.type for e in await engine.store.read_stream(intent_id)]


def _reserved_msat(engine: Engine, caller_id: str = "alice") -> int:
    """What the engine's spend book holds for the caller (nothing settles in these tests)."""
    limits = (WindowLimit(window_ms=3_600_000, limit_msat=1),)
    [use] = engine.processor.spend.tracker.window_uses(caller_id, limits, now_ms=0)
    return use.used_msat


async def _request(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await nc.request(subject, json.dumps(body).encode(), timeout=10)
    decoded: dict[str, Any] = json.loads(reply.data)
    return decoded


# -- finding 3: losing CORRIDOR_DISPATCH ---------------------------------------------------


async def test_a_lost_dispatch_stream_is_repaired_from_the_log_at_start(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    # The run: orders dispatched, CORRIDOR_DISPATCH deleted, the engine restarted as
    # the runbook says. Before ADR 0075 the relay checked only CORRIDOR_EVT: 5 of 5 stayed
    # dispatched, unpaid.
    async with sim_stack(tmp_path, nats_url) as sim:
        async with running_engine(nats_url, database_url, tmp_path) as engine:
            intents = [await _invoice_intent(sim, nc, f"lost-{i}") for i in range(INTENTS)]
            head = await engine.store.head_position()
            await wait_for(
                lambda: _checkpoint_at(engine, head), what="the relay's checkpoint at the head"
            )
        js = nc.jetstream()
        await js.delete_stream(subjects.DISPATCH_STREAM)  # the engine's credential may

        async with running_engine(nats_url, database_url, tmp_path) as engine:
            sim.start("us", "us-lnd", "us-1")
            for intent_id, _, _ in intents:
                await wait_for(
                    _state_is(engine, intent_id, "settled"),
                    timeout_s=SETTLE_TIMEOUT_S,
                    what=f"{intent_id} to settle",
                )
            assert engine.relay.reissued == INTENTS
        for _, payment_hash, _ in intents:
            assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def test_a_running_executor_binds_again_after_its_stream_is_lost(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    # Its durable went with the stream: before ADR 0075 every fetch failed from then on.
    async with sim_stack(tmp_path, nats_url) as sim:
        async with running_engine(nats_url, database_url, tmp_path) as engine:
            sim.start("us", "us-lnd", "us-1")
            before, _, _ = await _invoice_intent(sim, nc, "before")
            await wait_for(
                _state_is(engine, before, "settled"), timeout_s=SETTLE_TIMEOUT_S, what="warm-up"
            )
        await nc.jetstream().delete_stream(subjects.DISPATCH_STREAM)
        async with running_engine(nats_url, database_url, tmp_path) as engine:
            after, payment_hash, _ = await _invoice_intent(sim, nc, "after")
            await wait_for(
                _state_is(engine, after, "settled"),
                timeout_s=SETTLE_TIMEOUT_S,
                what="the running executor to pay an order from the new stream",
            )
        assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def _checkpoint_at(engine: Engine, position: int) -> bool:
    return (await engine.store.get_checkpoint(CHECKPOINT) or 0) >= position


async def test_the_sweeper_reissues_an_order_no_executor_holds(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    async with (
        sim_stack(tmp_path, nats_url) as sim,
        running_engine(
            nats_url, database_url, tmp_path, reissue_after_s=1, sweep_interval_s=0.2
        ) as engine,
    ):
        intent_id, payment_hash, _ = await _invoice_intent(sim, nc, "swept")
        js = nc.jetstream()
        await wait_for(
            lambda: _dispatch_holds(js, 1), what="the order to reach the dispatch stream"
        )
        # The order is lost (a stream limit, an operator's purge): nobody will ever pay it.
        await js.purge_stream(subjects.DISPATCH_STREAM)
        sim.start("us", "us-lnd", "us-1")
        await wait_for(
            _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the re-issued order to be paid",
        )
        assert engine.sweeper is not None and engine.sweeper.reissued >= 1
        assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def _dispatch_holds(js: Any, messages: int) -> bool:
    return bool((await js.stream_info(subjects.DISPATCH_STREAM)).state.messages >= messages)


async def test_reissued_orders_never_pay_twice(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    # The payment is held in flight while the sweeper re-issues its order again and again:
    # every copy asks the engine, which says "in flight", so the executor only asks its node.
    async with (
        sim_stack(tmp_path, nats_url) as sim,
        running_engine(
            nats_url, database_url, tmp_path, reissue_after_s=1, sweep_interval_s=0.2
        ) as engine,
    ):
        sim.network.faults.drop_resolution(node="merchant-01")
        sim.start("us", "us-lnd", "us-1")
        sim.start("us", "us-lnd", "us-2")
        intent_id, payment_hash, _ = await _invoice_intent(sim, nc, "held")
        await wait_for(_state_is(engine, intent_id, "in_flight"), what="the in-flight report")
        assert engine.sweeper is not None
        await wait_for(lambda: engine.sweeper.reissued >= 3, what="three re-issues")  # type: ignore[union-attr]
        sim.network.faults.release_dropped()
        await wait_for(
            _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the intent to settle",
        )
        assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]
        assert (await _event_types(engine, intent_id)).count("PaymentSucceeded") == 1


# -- finding 8: open forever -----------------------------------------------------------------


async def test_a_node_that_never_answers_becomes_an_exception_and_keeps_its_spend(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    async with running_engine(
        nats_url, database_url, tmp_path, intent_life_s=1, sweep_interval_s=0.2
    ) as engine:
        # No executor runs: the node never answers.
        reply = await _request(nc, "corridor.api.v1.intents.submit.alice", submit(key="silent"))
        assert reply["ok"], reply
        intent_id = reply["intent_id"]
        reserved_msat = _reserved_msat(engine)
        assert reserved_msat > 0

        async def escalated() -> bool:
            return "IntentEscalated" in await _event_types(engine, intent_id)

        await wait_for(escalated, what="the exception item")
        view = await engine.processor.view(intent_id)  # what `corridor intents get` shows
        assert getattr(view, "state", None) == "dispatched"
        [item] = [e for e in view.events if e.type == "IntentEscalated"]  # type: ignore[union-attr]
        assert item.data["reason"] == "life_exceeded"
        assert (item.data["region"], item.data["node"], item.data["attempt"]) == ("us", "us-lnd", 1)
        assert _reserved_msat(engine) == reserved_msat, "a timeout alone releases nothing"
        # ...and in the operator's queue (`corridor exceptions`).
        logged = [
            {"type": e.type, "version": e.schema_version, "stream_id": e.stream_id,
             "recorded_at_ms": e.recorded_at_ms, "data": e.payload}
            for e in await engine.store.read_stream(intent_id)
        ]  # fmt: skip
        [row] = exception_queue(logged, now_ms=0, stuck_after_ms=10**12)
        assert (row["intent_id"], row["kind"]) == (intent_id, "escalated")

        # The operator's decision, recorded with its evidence, releases the spend.
        resolve = {
            "type": "ResolvePaymentIntent", "version": 1, "intent_id": intent_id,
            "operator_id": "op-1", "resolution": "not_paid",
            "evidence": "lncli listpayments: no payment for the hash",
        }  # fmt: skip
        reply = await _request(nc, "corridor.api.v1.intents.resolve.op-1", resolve)
        assert reply["ok"] and reply["state"] == "failed", reply
        assert _reserved_msat(engine) == 0
        history = await engine.store.read_stream(intent_id)
        [resolved] = [e for e in history if e.type == "IntentResolved"]
        assert resolved.payload["operator_id"] == "op-1"
        assert resolved.metadata["actor"] == "operator:op-1"


async def test_a_success_without_proof_is_settled_by_the_nodes_record(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    async with (
        sim_stack(tmp_path, nats_url) as sim,
        running_engine(nats_url, database_url, tmp_path) as engine,
    ):
        sim.network.faults.drop_resolution(node="merchant-01")
        sim.start("us", "us-lnd", "us-1")
        intent_id, payment_hash, preimage = await _invoice_intent(sim, nc, "unproven")
        await wait_for(lambda: len(sim.attempts(payment_hash)) == 1, what="the HTLC to be held")
        # A node (or a bug) reports success without a valid preimage: before ADR 0076 no
        # command could leave ``succeeded`` then, and the real preimage was ignored.
        bogus = RecordPaymentOutcome(
            intent_id=intent_id, attempt=1, outcome="succeeded", region="us", node="us-lnd",
            payment_hash=payment_hash, preimage=WRONG_PREIMAGE,
        )  # fmt: skip
        reply = await engine.processor.execute(CommandEnvelope(command=bogus))
        assert reply.ok and getattr(reply, "state", None) == "succeeded"
        sim.network.faults.release_dropped()  # the node's own record now has the preimage
        await wait_for(
            _state_is(engine, intent_id, "settled"),
            timeout_s=SETTLE_TIMEOUT_S,
            what="the node's preimage to settle it",
        )
        settled = (await engine.store.read_stream(intent_id))[-1]
        assert settled.type == "IntentSettled" and settled.payload["preimage"] == preimage
        assert [p.status for p in sim.attempts(payment_hash)] == ["succeeded"]


async def test_an_operator_resolves_a_success_without_proof(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    async with running_engine(nats_url, database_url, tmp_path) as engine:
        bolt11, payment_hash, preimage = invoice(label="op-settle")
        reply = await _request(
            nc, "corridor.api.v1.intents.submit.alice",
            submit(key="op-settle", payment_request=bolt11, destination=None),
        )  # fmt: skip
        intent_id = reply["intent_id"]
        bogus = RecordPaymentOutcome(
            intent_id=intent_id, attempt=1, outcome="succeeded", region="us", node="us-lnd",
            payment_hash=payment_hash, preimage=WRONG_PREIMAGE,
        )  # fmt: skip
        await engine.processor.execute(CommandEnvelope(command=bogus))
        resolve = {
            "type": "ResolvePaymentIntent", "version": 1, "intent_id": intent_id,
            "operator_id": "op-1", "resolution": "settled", "evidence": "node record",
        }  # fmt: skip
        wrong = await _request(
            nc, "corridor.api.v1.intents.resolve.op-1", {**resolve, "preimage": WRONG_PREIMAGE}
        )
        assert not wrong["ok"]
        assert (wrong["error"]["code"], wrong["error"]["field"]) == (
            "preimage_mismatch",
            "preimage",
        )
        right = await _request(
            nc, "corridor.api.v1.intents.resolve.op-1", {**resolve, "preimage": preimage}
        )
        assert right["ok"] and right["state"] == "settled", right


async def test_an_invoice_dated_in_the_far_future_is_refused_with_the_field(
    engine: Engine, nc: Client
) -> None:
    # The invoice: dated 2**35 - 1 s (the year 3058), expiry 2**30 s.
    bolt11, _, _ = invoice(label="future", created_at_s=2**35 - 1, expiry_s=2**30)
    reply = await _request(
        nc, "corridor.api.v1.intents.submit.alice",
        submit(key="future", payment_request=bolt11, destination=None),
    )  # fmt: skip
    assert not reply["ok"]
    assert reply["error"]["code"] == "invoice_from_future"
    assert reply["error"]["field"] == "payment_request.timestamp"


# -- CORRIDOR_CHECKPOINTS ---------------------------------------------------------------------


async def test_a_lost_checkpoint_stream_is_refilled_from_the_log(
    database_url: str, tmp_path: Path
) -> None:
    # Nobody's credential may delete CORRIDOR_CHECKPOINTS, the engine's included (ADR 0067), so
    # the loss is what the server's administrator or a disk failure causes: the stream's files
    # gone while the server is down.
    home = tmp_path / "auth-home"
    key = nats_auth.read_public_key(Path(os.environ[CREDS_ENV]))
    nats_auth.register_key(home, role="engine", ident="harness", public_key=key)
    server = NatsServer(tmp_path / "nats", registry=load_registry(registry_path(home)))
    server.start()
    try:
        settings = Settings(relay_poll_s=0.2, state_dir=tmp_path)
        engine = await bootstrap(
            settings, nats_url=server.url, database_url=database_url, checkpoint_every_events=4
        )
        await engine.start()
        try:
            nc = await connect_as(server.url)
            try:
                checkpoints = engine.checkpoints
                assert checkpoints is not None
                for i in range(3):
                    reply = await _request(
                        nc, "corridor.api.v1.intents.submit.alice", submit(key=f"c{i}")
                    )
                    assert reply["ok"]
                    # Each intent's events are due a checkpoint (every 4): waited for one by
                    # one, since a loaded machine may otherwise commit all three before the
                    # checkpointer's first turn, which then signs once.
                    if i < 2:
                        wanted = i + 1
                        await wait_for(
                            lambda: checkpoints.signed >= wanted,  # noqa: B023 (awaited here)
                            what=f"checkpoint {wanted}",
                        )
            finally:
                await nc.close()
            await wait_for(lambda: checkpoints.signed >= 2, what="two checkpoints")
            logged = len(await engine.store.read_stream("log-checkpoints"))
        finally:
            await engine.stop()
        server.stop()
        [stream_dir] = (tmp_path / "nats").rglob(f"streams/{subjects.CHECKPOINT_STREAM}")
        shutil.rmtree(stream_dir)
        server.start()

        engine = await bootstrap(
            settings, nats_url=server.url, database_url=database_url, checkpoint_every_events=10_000
        )
        await engine.start()
        nc = await connect_as(server.url)
        try:
            js = nc.jetstream()

            async def refilled() -> bool:
                state = (await js.stream_info(subjects.CHECKPOINT_STREAM)).state
                return bool(state.messages >= logged)

            await wait_for(refilled, what="the stream to hold every logged checkpoint")
        finally:
            await nc.close()
            await engine.stop()
    finally:
        server.stop()
