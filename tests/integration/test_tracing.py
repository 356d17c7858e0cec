"""One trace from submit to outcome (ADR 0154), over real NATS, PostgreSQL, the engine, its
relay, an executor and a simulated lnd node: the submitter's span is the root; the engine's
decision, the relay's publish, the executor's payment and the engine's decision on the outcome
follow as a chain of children, and the settled intent's events carry the trace."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services import tracing
from services.bootstrap import Engine
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import (
    AMOUNT_MSAT,
    MAX_FEE_MSAT,
    MERCHANT,
    SETTLE_TIMEOUT_S,
    SimStack,
    _state_is,
    signing_engine,
    sim_stack,
)

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def _provider() -> Iterator[None]:
    # The global provider can be set once per process: the first test module to trace sets it.
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    yield


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


async def test_one_trace_spans_submit_to_outcome(engine: Engine, nc: Client, sim: SimStack) -> None:
    _EXPORTER.clear()
    sim.start("us", "us-lnd", "us-1")
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, "traced", 3600)
    command = submit(key="traced", amount_msat=AMOUNT_MSAT, max_fee_msat=MAX_FEE_MSAT,
                     payment_request=invoice.bolt11)  # fmt: skip
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("client.submit") as root:
        headers = {tracing.TRACEPARENT: tracing.current() or ""}
        body = json.dumps(command).encode()
        msg = await nc.request(
            "corridor.api.v1.intents.submit.alice", body, timeout=10, headers=headers
        )
    reply = json.loads(msg.data)
    assert reply["ok"], reply
    intent_id = reply["intent_id"]
    await wait_for(_state_is(engine, intent_id, "settled"), timeout_s=SETTLE_TIMEOUT_S,
                   what="the traced intent to settle")  # fmt: skip

    trace_id = root.get_span_context().trace_id

    def spans() -> list[ReadableSpan]:
        return [s for s in _EXPORTER.get_finished_spans() if s.context.trace_id == trace_id]

    def finished() -> bool:  # the payment's span ends once the engine took the outcome
        names = [s.name for s in spans()]
        return "corridor.executor.pay" in names and names.count("corridor.engine.decide") >= 2

    await wait_for(finished, what="the payment's and the outcome's spans")
    by_id = {s.context.span_id: s for s in spans()}

    def chain(span: ReadableSpan) -> list[str]:
        names = []
        current: ReadableSpan | None = span
        while current is not None:
            names.append(current.name)
            parent = current.parent
            current = by_id.get(parent.span_id) if parent is not None else None
        return names

    outcome = next(
        s for s in spans()
        if (s.attributes or {}).get("corridor.command") == "RecordPaymentOutcome"
    )  # fmt: skip
    assert chain(outcome) == [
        "corridor.engine.decide",  # the outcome
        "corridor.executor.pay",
        "corridor.relay.publish",  # the work order
        "corridor.engine.decide",  # the submit
        "client.submit",
    ]
    # Every event of the intent carries the trace: the deciding span's context.
    events = await engine.store.read_stream(intent_id)
    carried = {e.type: e.metadata.get("traceparent") for e in events}
    assert all(tp and tp.split("-")[1] == f"{trace_id:032x}" for tp in carried.values()), carried
    assert "IntentSettled" in carried


async def test_untraced_commands_make_no_spans(engine: Engine, nc: Client, sim: SimStack) -> None:
    _EXPORTER.clear()
    sim.start("us", "us-lnd", "us-2")
    invoice = sim.network.create_invoice(MERCHANT, AMOUNT_MSAT, "untraced", 3600)
    command = submit(key="untraced", amount_msat=AMOUNT_MSAT, max_fee_msat=MAX_FEE_MSAT,
                     payment_request=invoice.bolt11)  # fmt: skip
    msg = await nc.request(
        "corridor.api.v1.intents.submit.alice", json.dumps(command).encode(), timeout=10
    )
    intent_id = json.loads(msg.data)["intent_id"]
    await wait_for(_state_is(engine, intent_id, "settled"), timeout_s=SETTLE_TIMEOUT_S,
                   what="the untraced intent to settle")  # fmt: skip
    assert _EXPORTER.get_finished_spans() == ()
    events = await engine.store.read_stream(intent_id)
    assert all("traceparent" not in e.metadata for e in events)


async def test_an_http_request_with_trace_context_continues_over_nats(
    tmp_path: Path, identity_home: Path, database_url: str
) -> None:
    from tests.integration.test_http_api import api_stack, intent

    _EXPORTER.clear()
    async with api_stack(tmp_path, identity_home, database_url, executors=False) as api:
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("client.http") as root:
            headers = {tracing.TRACEPARENT: tracing.current() or "", "Idempotency-Key": "t-1"}
            async with api.client("alice") as alice:
                created = await alice.post("/v1/intents", json=intent(), headers=headers)
        assert created.status_code == 201, created.text
        trace_id = root.get_span_context().trace_id
        events = await api.engine.store.read_stream(created.json()["intent_id"])
    received = events[0].metadata.get("traceparent")
    assert received and received.split("-")[1] == f"{trace_id:032x}"
    names = [s.name for s in _EXPORTER.get_finished_spans() if s.context.trace_id == trace_id]
    assert {"client.http", "corridor.http.forward", "corridor.engine.decide"} <= set(names)
