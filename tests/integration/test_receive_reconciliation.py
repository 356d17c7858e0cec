"""Reconciliation of receives (ADR 0220) over real NATS, PostgreSQL, the engine and the
simulated lnd through the LND adapter: an invoice the node settled that our log did not credit
is ``paid_not_credited``, one our log credited that the node did not settle is
``credited_but_node_not``; each is resolved once the two agree; a receive the executor
credited reconciles clean.

No executor runs in the first test: the reports are sent as the node's executor would, so the
log can be made to disagree with the node on purpose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine
from services.eventstore.postgres import PostgresEventStore
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_executor import SimStack, signing_engine, sim_stack
from tests.integration.test_receive_e2e import AMOUNT_MSAT, _pay_from_outside, _wait_state
from tests.integration.test_receives import INVOICE, RECEIVE, receive
from tests.integration.test_reconciliation import categories, reconcile

NODE = "us-lnd"


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


async def _issued(nc: Client, sim: SimStack, key: str) -> tuple[str, Any]:
    """A receive whose invoice the node holds, reported issued as its executor would."""
    created = await request(nc, RECEIVE.format(caller="alice"), receive(key, AMOUNT_MSAT))
    invoice = sim.network.create_invoice(NODE, AMOUNT_MSAT, key, 600)
    body = {
        "type": "RecordInvoiceState", "version": 1, "intent_id": created["intent_id"],
        "node": NODE, "region": "us", "state": "issued", "payment_hash": invoice.payment_hash,
        "payment_request": invoice.bolt11, "expires_at_s": invoice.created_at_s + 600,
    }  # fmt: skip
    reply = await request(nc, INVOICE.format(node=NODE), body)
    assert reply["state"] == "issued", reply
    return created["intent_id"], invoice


async def _credit(nc: Client, intent_id: str, invoice: Any, pay_index: int) -> None:
    body = {
        "type": "RecordInvoiceState", "version": 1, "intent_id": intent_id, "node": NODE,
        "region": "us", "state": "paid", "payment_hash": invoice.payment_hash,
        "payment_request": invoice.bolt11, "preimage": invoice.preimage,
        "amount_received_msat": AMOUNT_MSAT, "pay_index": pay_index,
    }  # fmt: skip
    reply = await request(nc, INVOICE.format(node=NODE), body)
    assert reply["state"] == "paid", reply


async def test_paid_not_credited_and_credited_but_node_not_are_found_and_resolved(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    settled_id, settled = await _issued(nc, sim, "recon-settled")
    await _pay_from_outside(sim, settled.bolt11)  # the node settles; nobody credits it
    open_id, still_open = await _issued(nc, sim, "recon-open")
    await _credit(nc, open_id, still_open, pay_index=99)  # we credit what the node never got

    found = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert categories(found) == {
        settled.payment_hash: "paid_not_credited",
        still_open.payment_hash: "credited_but_node_not",
    }
    again = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert again.new_items == 0  # one item per disagreement, however often found

    # The follower's late report credits the settled one: the next pass resolves it.
    on_node = sim.network.lookup_invoice(NODE, settled.payment_hash)
    assert on_node is not None
    await _credit(nc, settled_id, settled, pay_index=on_node.pay_index)
    later = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert categories(later) == {still_open.payment_hash: "credited_but_node_not"}
    assert sum(r.resolved for r in later.replies) == 1


async def test_a_receive_the_executor_credited_reconciles_clean(
    engine: Engine, sim: SimStack, nc: Client, store: PostgresEventStore
) -> None:
    executor, _ = sim.start("us", NODE, "us-1")
    await wait_for(executor.ready.is_set, what="the executor to start")
    created = await request(nc, RECEIVE.format(caller="alice"), receive("recon-e2e", AMOUNT_MSAT))
    intent_id = created["intent_id"]
    await _wait_state(engine, intent_id, "issued")
    issued = next(e for e in await store.read_stream(intent_id) if e.type == "InvoiceIssued")
    await _pay_from_outside(sim, issued.payload["payment_request"])
    await _wait_state(engine, intent_id, "paid")
    result = await reconcile(sim, store, nc, bound_ms=1, trip=False)
    assert result.mismatches == []
    assert result.looked_up >= 1  # the node was asked about the invoice
