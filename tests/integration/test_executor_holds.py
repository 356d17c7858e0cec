"""An executor never lets go of an order whose payment may have left (issue 13, finding 2).

The engine here refuses the first reports of a paid outcome with a code the executor does not
understand (``internal_error``, as a crashed batch once answered). The executor must hold the
order: record an exception item on its node's dead-letter subject, hand the order back with a
back-off, report again on the redelivery, and never ``term`` it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig

from schemas import commands as cmd
from schemas import errors
from schemas.replies import CommandRejected
from services.bootstrap import Engine
from services.engine.processor import CommandEnvelope, Reply
from services.executor.worker import HDR_ORDER_HELD, refused_orders_subject
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import (
    AMOUNT_MSAT,
    FAST,
    MAX_FEE_MSAT,
    MERCHANT,
    SimStack,
    signing_engine,
    sim_stack,
)

REFUSED_REPORTS = 2
HOLDING = dataclasses.replace(FAST, held_delay_s_first=0.1, held_delay_s_max=0.5)


@pytest.fixture
async def paying(
    nats_url: str, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Engine, SimStack]]:
    async with (
        sim_stack(tmp_path, nats_url) as sim,
        signing_engine(nats_url, database_url, tmp_path) as engine,
    ):
        yield engine, sim


async def test_an_outcome_refused_for_a_reason_not_understood_is_held_not_dropped(
    paying: tuple[Engine, SimStack], nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, sim = paying
    refused: list[str] = []
    execute = engine.processor.execute

    async def refusing(envelope: CommandEnvelope) -> Reply:
        command = envelope.command
        paid = isinstance(command, cmd.RecordPaymentOutcome) and command.outcome == "succeeded"
        if paid and len(refused) < REFUSED_REPORTS:
            assert isinstance(command, cmd.RecordPaymentOutcome)
            refused.append(command.intent_id)
            crashed = errors.CorridorError("internal error", code="internal_error")
            return CommandRejected(error=crashed.detail())
        return await execute(envelope)

    monkeypatch.setattr(engine.processor, "execute", refusing)
    js = nc.jetstream()
    dlq = await js.pull_subscribe(
        refused_orders_subject("us", "us-lnd"),
        durable="test-held",
        stream="CORRIDOR_DLQ",
        config=ConsumerConfig(),
    )
    sim.start("us", "us-lnd", "us-1", HOLDING)
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, "held", 3600)
    body = submit(
        key="held",
        amount_msat=AMOUNT_MSAT,
        max_fee_msat=MAX_FEE_MSAT,
        payment_request=invoice.bolt11,
        destination=None,
    )
    msg = await nc.request(
        "corridor.api.v1.intents.submit.alice", json.dumps(body).encode(), timeout=10
    )
    intent_id = json.loads(msg.data)["intent_id"]

    async def settled() -> bool:
        status = await engine.processor.status(intent_id)
        return getattr(status, "state", None) == "settled"

    await wait_for(settled, timeout_s=30, what="the held order to be reported again and settle")
    assert refused == [intent_id] * REFUSED_REPORTS
    [item] = await dlq.fetch(batch=1, timeout=5)  # one exception item per stored order
    assert item.headers is not None
    assert item.headers[HDR_ORDER_HELD] == "true"
    assert item.headers["Corridor-Error-Code"] == "internal_error"
    paid = [p.status for p in sim.network.payments() if p.payment_hash == invoice.payment_hash]
    assert paid == ["succeeded"]
