"""A receive end to end (issue 18, ADR 0220/0221): real nats-server and PostgreSQL, the engine,
a region executor driving the simulated lnd through the real LND adapter (gRPC), and an
outside node of the simulated network paying the invoice as a customer would.

The simulated network is the ground truth: its invoice book says what the node was asked to
create and what was settled, so "one invoice per receive" and "credited once" are checked
where the money arrives, not only in our own records.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from schemas.receive_messages import ReceiveDispatched
from services.bootstrap import Engine
from services.bus.nats_adapter import NatsBus
from services.executor.engine_client import EngineClient
from services.executor.expiry_watch import ExpiryWatch
from services.executor.keysend import SECRET_FILE_NAME, load_or_create_secret
from services.executor.payer import Disposition
from services.executor.receive_order import ReceiveOrder
from services.executor.receive_preimage import intent_of, payment_hash_of, preimage_for
from services.executor.receiver import Receiver
from services.lightning.sim_direct import SimNodeAdapter
from services.metrics.series import EXECUTOR_INVOICES
from tests.conftest import wait_for
from tests.integration.test_api import request
from tests.integration.test_executor import FAST, SimStack, sim_stack
from tests.integration.test_receives import RECEIVE, receive

PAYER = "merchant-01"  # an outside lnd node behind hub-us
AMOUNT_MSAT = 70_000
MAX_FEE_MSAT = 10_000


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


async def _state(engine: Engine, intent_id: str) -> str | None:
    return getattr(await engine.processor.view(intent_id), "state", None)


async def _events(engine: Engine, intent_id: str) -> list[Any]:
    return list(await engine.store.read_stream(intent_id))


async def _wait_state(engine: Engine, intent_id: str, state: str) -> None:
    async def reached() -> bool:
        return await _state(engine, intent_id) == state

    await wait_for(reached, what=f"{intent_id} to be {state}", timeout_s=15)


async def _pay_from_outside(sim: SimStack, bolt11: str) -> None:
    sent = await sim.network.send_payment(
        PAYER, payment_request=bolt11, max_fee_msat=MAX_FEE_MSAT, timeout_s=5.0
    )
    final = await sim.network.wait_payment(PAYER, sent.payment_hash, timeout_s=15)
    assert final.status == "succeeded", final


async def test_a_receive_is_issued_paid_by_an_outside_node_and_credited_once(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    executor, task = sim.start("us", "us-lnd", "us-1")
    await wait_for(executor.ready.is_set, what="the executor to start")
    created = await request(nc, RECEIVE.format(caller="alice"), receive("e2e-1", AMOUNT_MSAT))
    intent_id = created["intent_id"]
    await _wait_state(engine, intent_id, "issued")
    issued = next(e for e in await _events(engine, intent_id) if e.type == "InvoiceIssued")
    bolt11 = issued.payload["payment_request"]
    # The node holds exactly the invoice the log names, with the executor's derived preimage;
    # no preimage is anywhere in the log before the payment.
    secret = load_or_create_secret(sim.state_dir / SECRET_FILE_NAME)
    assert issued.payload["payment_hash"] == payment_hash_of(preimage_for(secret, intent_id))
    assert all("preimage" not in e.payload for e in await _events(engine, intent_id))
    on_node = sim.network.invoices_of("us-lnd")
    assert [i.payment_hash for i in on_node] == [issued.payload["payment_hash"]]

    await _pay_from_outside(sim, bolt11)
    await _wait_state(engine, intent_id, "paid")
    paid = [e for e in await _events(engine, intent_id) if e.type == "InvoicePaid"]
    assert len(paid) == 1
    assert paid[0].payload["amount_received_msat"] == AMOUNT_MSAT
    preimage = paid[0].payload["preimage"]
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == issued.payload["payment_hash"]
    assert intent_of(secret, preimage) == intent_id
    stored = sim.network.lookup_invoice("us-lnd", issued.payload["payment_hash"])
    assert stored is not None and paid[0].payload["pay_index"] == stored.pay_index
    assert EXECUTOR_INVOICES.labels("us", "us-lnd", "paid")._value.get() >= 1

    # A restarted executor resumes its follower from the log's cursor and a retried receive
    # returns the same intent: nothing is created or credited again.
    await sim.kill(executor, task)
    executor, task = sim.start("us", "us-lnd", "us-2")
    await wait_for(executor.ready.is_set, what="the executor to restart")
    again = await request(nc, RECEIVE.format(caller="alice"), receive("e2e-1", AMOUNT_MSAT))
    assert again["intent_id"] == intent_id and again["duplicate"] is True
    second = await request(nc, RECEIVE.format(caller="alice"), receive("e2e-2", AMOUNT_MSAT))
    await _wait_state(engine, second["intent_id"], "issued")
    assert len(sim.network.invoices_of("us-lnd")) == 2
    assert [e.type for e in await _events(engine, intent_id)].count("InvoicePaid") == 1


def _order(intent_id: str, event_id: str) -> ReceiveOrder:
    return ReceiveOrder(
        intent_id=intent_id, event_id=event_id, correlation_id=intent_id,
        dispatched=ReceiveDispatched(region="us", node="us-lnd", amount_msat=AMOUNT_MSAT,
                                     memo="r", expiry_s=600),
    )  # fmt: skip


async def test_redelivered_orders_reuse_the_invoice_and_expiry_waits_for_the_node(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    """The receiver and the expiry watch alone (no follower), against the engine: a redelivery
    asks the node for the same hash and creates nothing; an invoice past its expiry on our
    clock but open on the node is not expired; once the node says expired, it is, once."""
    created = await request(nc, RECEIVE.format(caller="alice"), receive("e2e-3", AMOUNT_MSAT))
    intent_id = created["intent_id"]
    dispatched = next(e for e in await _events(engine, intent_id) if e.type == "ReceiveDispatched")
    order = _order(intent_id, dispatched.event_id)
    client = EngineClient(NatsBus(nc), node="us-lnd", limits=FAST)
    adapter = SimNodeAdapter(sim.network, "us-lnd")
    receiver = Receiver(
        adapter, secret=b"s" * 32, region="us", node_name="us-lnd", engine=lambda: client
    )
    for _ in range(3):  # the first delivery and two redeliveries
        assert await receiver.process(order) is Disposition.DONE
    assert len(sim.network.invoices_of("us-lnd")) == 1
    assert await _state(engine, intent_id) == "issued"
    invoice = sim.network.invoices_of("us-lnd")[0]
    clock = [float(invoice.created_at_s)]
    watch = ExpiryWatch(
        adapter, region="us", node_name="us-lnd", engine=lambda: client, now_s=lambda: clock[0]
    )
    assert await watch.scan_once() == 0  # not due yet
    clock[0] = invoice.created_at_s + invoice.expiry_s + 60.0  # our clock says expired...
    assert await watch.scan_once() == 0  # ...the node does not: nothing is reported
    assert await _state(engine, intent_id) == "issued"
    sim.network.faults.expire_invoice(invoice.payment_hash)
    assert await watch.scan_once() == 1
    assert await _state(engine, intent_id) == "expired"
    assert await watch.scan_once() == 0  # no longer open in the log
    assert [e.type for e in await _events(engine, intent_id)].count("InvoiceExpired") == 1
