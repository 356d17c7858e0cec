"""Reconciliation against the nodes' own records, over real NATS, PostgreSQL, the engine and a
simulated lnd (gRPC): every category found from mismatches injected into the node or our log,
each found once however often a pass runs, resolved when a later pass finds it consistent; and
the circuit breaker trips on a payment made behind our back, routes new intents around the
node, and clears by an operator's command (ADR 0151).

No executor runs: outcomes are reported as the node's executor would (the harness's credential
may publish anything), so the log can be made to disagree with the node on purpose.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine
from services.bus import subjects
from services.bus.nats_adapter import NatsBus
from services.engine.reconciliation_book import ReconciliationBook
from services.eventstore.postgres import PostgresEventStore
from services.executor.nodes import adapter_for, resolve_node
from services.reconciliation.client import EngineReporter
from services.reconciliation.worker import PassConfig, PassResult, ReconciliationWorker
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_executor import (
    AMOUNT_MSAT,
    MERCHANT,
    SimStack,
    _submit,
    signing_engine,
    sim_stack,
)

NODE, REGION = "us-lnd", "us"
HOUR_MS = 3600 * 1000


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


async def reconcile(
    sim: SimStack, store: PostgresEventStore, nc: Client, *, bound_ms: int, trip: bool
) -> PassResult:
    """One pass by a fresh worker (as after a restart: only the stored cursors carry over)."""
    resolved = resolve_node(f"sim://{NODE}", region=REGION, state_dir=sim.state_dir)
    config = PassConfig(
        in_flight_bound_ms=bound_ms, lookback_ms=HOUR_MS, page_max=2, pages_max=100,
        trip_breaker=trip,
    )  # fmt: skip
    adapter = adapter_for(resolved.uri)
    try:
        worker = ReconciliationWorker(
            node=NODE, region=REGION, adapter=adapter, store=store,
            report=EngineReporter(NatsBus(nc), node=NODE),
            now_ms=lambda: time.time_ns() // 10**6, config=config,
        )  # fmt: skip
        return await worker.run_once()
    finally:
        # An open gRPC channel makes the process's later forks crash (grpc/grpc#43055).
        await adapter.close()


async def dispatched(engine: Engine, sim: SimStack, nc: Client, key: str) -> tuple[str, Any]:
    """An invoice intent dispatched (attempt 1) to NODE, and its invoice."""
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, key, 3600)
    intent_id = await _submit(nc, key=key, payment_request=invoice.bolt11)

    async def on_node() -> bool:
        view = await engine.processor.view(intent_id)
        return getattr(view, "state", None) == "dispatched"

    await wait_for(on_node, what=f"{key} dispatched")
    return intent_id, invoice


async def report_outcome(nc: Client, intent_id: str, outcome: str, **fields: Any) -> None:
    body = {"type": "RecordPaymentOutcome", "version": 1, "intent_id": intent_id, "attempt": 1,
            "outcome": outcome, "region": REGION, "node": NODE, **fields}  # fmt: skip
    reply = await request(nc, f"{subjects.API_PREFIX}.outcome.{NODE}", body)
    assert reply["ok"], reply


async def pay_behind_our_back(sim: SimStack, bolt11: str) -> Any:
    sent = await sim.network.send_payment(
        NODE, payment_request=bolt11, max_fee_msat=10_000, timeout_s=5.0
    )
    paid = await sim.network.wait_payment(NODE, sent.payment_hash, timeout_s=5.0)
    assert paid.status == "succeeded"
    return paid


def categories(result: PassResult) -> dict[str, str]:
    return {m.payment_hash: str(m.category) for m in result.mismatches}


async def recon_events(store: PostgresEventStore) -> list[Any]:
    return await store.read_stream(f"reconciliation-{NODE}")


async def test_every_category_found_once_and_resolved_later(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    # We say failed, the node says paid.
    failed_paid, invoice_a = await dispatched(engine, sim, nc, "failed-paid")
    await pay_behind_our_back(sim, invoice_a.bolt11)
    await report_outcome(nc, failed_paid, "failed", failure_reason="no_route",
                         confirmed_not_paid=True)  # fmt: skip
    # We say paid, the node has no record.
    paid_none, invoice_b = await dispatched(engine, sim, nc, "paid-none")
    await report_outcome(nc, paid_none, "succeeded", payment_hash=invoice_b.payment_hash,
                         preimage=invoice_b.preimage, fee_msat=10)  # fmt: skip
    # Paid on both sides, but not the fee we recorded.
    fee_differs, invoice_c = await dispatched(engine, sim, nc, "fee-differs")
    paid_c = await pay_behind_our_back(sim, invoice_c.bolt11)
    await report_outcome(nc, fee_differs, "succeeded", payment_hash=invoice_c.payment_hash,
                         preimage=invoice_c.preimage, fee_msat=paid_c.fee_msat + 1)  # fmt: skip
    # In flight on our side past the bound (1 ms here).
    stuck, invoice_d = await dispatched(engine, sim, nc, "stuck")
    # Paid by the node, never dispatched by us.
    stray = sim.network.create_invoice(MERCHANT, 7_000, "stray", 3600)
    await pay_behind_our_back(sim, stray.bolt11)

    first = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert categories(first) == {
        invoice_a.payment_hash: "failed_but_node_paid",
        invoice_b.payment_hash: "paid_but_node_not",
        invoice_c.payment_hash: "amount_mismatch",
        invoice_d.payment_hash: "stuck_in_flight",
        stray.payment_hash: "unexpected_payment",
    }
    assert first.new_items == 5 and first.listed == 3  # paged two at a time
    by_hash = {m.payment_hash: m for m in first.mismatches}
    assert by_hash[invoice_b.payment_hash].evidence["node_status"] == "no_record"
    assert by_hash[invoice_c.payment_hash].evidence["node_fee_msat"] == paid_c.fee_msat
    assert by_hash[invoice_a.payment_hash].intent_id == failed_paid

    # A second pass (a fresh worker: a restart) finds the same, records nothing new.
    second = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert categories(second) == categories(first) and second.new_items == 0
    # It resumed after the stored cursor: the node's final records were not listed again.
    assert second.listed == 0 and second.looked_up == 5
    found = [e for e in await recon_events(store) if e.type == "ReconciliationMismatchFound"]
    assert len(found) == 5
    assert {e.metadata["actor"] for e in found} == {f"reconciler:{NODE}"}

    # The stuck attempt ends; the next pass finds it consistent and resolves its item.
    await report_outcome(nc, stuck, "failed", failure_reason="no_route", confirmed_not_paid=True)
    third = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert invoice_d.payment_hash not in categories(third)
    assert sum(r.resolved for r in third.replies) == 1
    resolved = [e for e in await recon_events(store) if e.type == "ReconciliationMismatchResolved"]
    assert [(e.payload["category"], e.payload["by"]) for e in resolved] == [
        ("stuck_in_flight", "reconciler")
    ]
    assert resolved[0].payload["resolved_at_ms"] >= resolved[0].payload["found_at_ms"]


async def test_breaker_trips_on_a_payment_behind_our_back_and_an_operator_clears_it(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    stray = sim.network.create_invoice(MERCHANT, 7_000, "stray", 3600)
    await pay_behind_our_back(sim, stray.bolt11)
    result = await reconcile(sim, store, nc, bound_ms=HOUR_MS, trip=True)
    assert categories(result) == {stray.payment_hash: "unexpected_payment"}
    assert any(reply.breaker_tripped for reply in result.replies)
    assert (REGION, NODE) in engine.processor.recon.tripped()
    # What a restarted engine folds from the log at start: the breaker stays tripped.
    restarted = ReconciliationBook()
    assert await restarted.load(store) == 2  # the item found, the breaker tripped
    assert restarted.tripped() == {(REGION, NODE)}

    # New intents go to the corridor's next node; the rejected candidate says why.
    rerouted, _ = await routed(engine, sim, nc, "after-trip")
    assert rerouted["node"] == "eu-lnd"
    assert {"region": REGION, "node": NODE, "reason": "reconciliation_breaker"} in rerouted[
        "rejected"
    ]
    # Another pass keeps it tripped and adds nothing.
    again = await reconcile(sim, store, nc, bound_ms=HOUR_MS, trip=True)
    assert again.new_items == 0 and not any(r.breaker_tripped for r in again.replies)

    clear = {"type": "ClearNodeBreaker", "version": 1, "node": NODE, "operator_id": "op-1",
             "reason": "stray payment was a manual refund, ticket 42"}  # fmt: skip
    reply = await request(nc, f"{subjects.RECON_API_PREFIX}.clear.op-1", clear)
    assert reply["ok"] and reply["resolved"] == 1, reply
    assert (REGION, NODE) not in engine.processor.recon.tripped()
    events = await recon_events(store)
    cleared = events[-1]
    assert cleared.type == "NodeBreakerCleared" and cleared.metadata["actor"] == "operator:op-1"
    assert events[-2].payload["by"] == "operator"
    # Clearing twice changes nothing.
    twice = await request(nc, f"{subjects.RECON_API_PREFIX}.clear.op-1", clear)
    assert twice["duplicate"] is True
    back, _ = await routed(engine, sim, nc, "after-clear")
    assert back["node"] == NODE


async def routed(engine: Engine, sim: SimStack, nc: Client, key: str) -> tuple[dict[str, Any], str]:
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, key, 3600)
    intent_id = await _submit(nc, key=key, payment_request=invoice.bolt11)
    events = await engine.store.read_stream(intent_id)
    (routed_event,) = [e for e in events if e.type == "IntentRouted"]
    return json.loads(json.dumps(routed_event.payload)), intent_id
