"""Executor parts that need no servers: the payer's decisions against a fake node, keysend
hashes, work-order decoding, node URIs and the health board. (Pure tests; they would sit in
tests/unit/ if the executor's area included it.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from schemas.commands import RecordPaymentOutcome
from schemas.events import IntentDispatched
from services.executor import Executor, ExecutorLimits, HealthBoard, HealthReport
from services.executor.engine_client import AttemptStatus
from services.executor.errors import BadWorkOrder, NodeUriError, OutcomeRefused
from services.executor.health import health_subject
from services.executor.keysend import keysend_preimage, load_or_create_secret
from services.executor.nodes import resolve_node
from services.executor.payer import Disposition, Payer
from services.executor.work_order import WorkOrder, decode_work_order
from services.lightning.port import (
    FailureReason,
    NodeError,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
)

SECRET = bytes(range(32))
LIMITS = ExecutorLimits(node_backoff_s_first=0.001, track_poll_s=0.001, track_s_max=0.05)
DESTINATION = "02" + "11" * 32


class FakeNode:
    """Only what the payer uses: a record per hash, sends counted, optional outage."""

    def __init__(self, *, pay_result: PaymentResult | None = None) -> None:
        self.records: dict[str, PaymentResult] = {}
        self.sends: list[PayRequest] = []
        self.lookups = 0
        self.unreachable = False
        self.pay_result = pay_result

    async def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        self.lookups += 1
        if self.unreachable:
            raise NodeError(FailureReason.NODE_UNAVAILABLE, "down")
        return self.records.get(payment_hash)

    async def pay(self, request: PayRequest) -> PaymentResult:
        assert request.payment_hash is not None
        self.sends.append(request)
        if self.pay_result is None:
            raise NodeError(FailureReason.NODE_UNAVAILABLE, "refused")
        if not isinstance(self.pay_result, PaymentFailed):
            self.records[request.payment_hash] = self.pay_result
        return self.pay_result

    async def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        yield self.records[payment_hash]


def _order(attempt: int = 1) -> WorkOrder:
    dispatched = IntentDispatched(
        attempt=attempt,
        region="us",
        node="us-lnd",
        amount_msat=1000,
        max_fee_msat=10,
        destination=DESTINATION,
        pay_timeout_s=5,
    )
    return WorkOrder(intent_id="i-1", event_id="e-1", correlation_id="c-1", dispatched=dispatched)


def _payer(
    node: FakeNode,
    reported: list[RecordPaymentOutcome],
    status: AttemptStatus,
    asked: list[str] | None = None,
) -> Payer:
    async def report(order: WorkOrder, outcome: RecordPaymentOutcome) -> None:
        reported.append(outcome)

    async def status_of(intent_id: str) -> AttemptStatus:
        if asked is not None:
            asked.append(intent_id)
        return status

    return Payer(node, secret=SECRET, limits=LIMITS, report=report, status_of=status_of)  # type: ignore[arg-type]


DISPATCHED = AttemptStatus(state="dispatched", attempt=1)


async def test_success_is_reported_with_the_preimage() -> None:
    preimage, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    node = FakeNode(
        pay_result=PaymentSucceeded(
            payment_hash=payment_hash, preimage=preimage, amount_msat=1000, fee_msat=3
        )
    )
    reported: list[RecordPaymentOutcome] = []
    assert (
        await _payer(node, reported, DISPATCHED).process(_order(), delivery=1) is Disposition.DONE
    )
    [outcome] = reported
    assert (outcome.outcome, outcome.preimage, outcome.fee_msat) == ("succeeded", preimage, 3)
    assert node.sends[0].keysend_preimage == preimage


async def test_a_known_hash_is_never_sent_again() -> None:
    _, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    node = FakeNode()
    node.records[payment_hash] = PaymentFailed(
        payment_hash=payment_hash, reason=FailureReason.NO_ROUTE
    )
    reported: list[RecordPaymentOutcome] = []
    await _payer(node, reported, DISPATCHED).process(_order(), delivery=2)
    assert node.sends == []
    assert (reported[0].failure_reason, reported[0].confirmed_not_paid) == ("no_route", True)


async def test_an_obsolete_order_is_not_sent() -> None:
    node, reported = FakeNode(), []  # type: ignore[var-annotated]
    rerouted = AttemptStatus(state="dispatched", attempt=2)
    assert await _payer(node, reported, rerouted).process(_order(), delivery=1) is Disposition.DONE
    assert node.sends == [] and reported == []


async def test_an_unreachable_node_reports_nothing() -> None:
    node, reported = FakeNode(), []  # type: ignore[var-annotated]
    node.unreachable = True
    assert (
        await _payer(node, reported, DISPATCHED).process(_order(), delivery=2) is Disposition.RETRY
    )
    assert node.sends == [] and reported == []


async def test_a_first_delivery_sends_without_a_look_up() -> None:
    preimage, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    paid = PaymentSucceeded(
        payment_hash=payment_hash, preimage=preimage, amount_msat=1000, fee_msat=0
    )
    node, reported = FakeNode(pay_result=paid), []  # type: ignore[var-annotated]
    await _payer(node, reported, DISPATCHED).process(_order(), delivery=1)
    assert (node.lookups, len(node.sends), node.sends[0].node_record_checked) == (0, 1, True)
    assert [o.outcome for o in reported] == ["succeeded"]


async def test_an_ambiguous_first_send_never_takes_an_older_record_as_proof() -> None:
    # The node failed this hash before; our send errs without saying whether it arrived.
    _, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    node, reported = FakeNode(pay_result=None), []  # type: ignore[var-annotated]
    node.records[payment_hash] = PaymentFailed(
        payment_hash=payment_hash, reason=FailureReason.NO_ROUTE
    )
    payer = _payer(node, reported, DISPATCHED)
    assert await payer.process(_order(), delivery=1) is Disposition.RETRY
    assert reported == [] and node.lookups == 0


async def test_a_refused_send_is_retried_then_reported_with_the_empty_record_as_proof() -> None:
    node, reported = FakeNode(pay_result=None), []  # type: ignore[var-annotated]
    payer = _payer(node, reported, DISPATCHED)
    assert await payer.process(_order(), delivery=1) is Disposition.RETRY and reported == []
    last = LIMITS.send_deliveries_max
    assert await payer.process(_order(), delivery=last) is Disposition.DONE
    assert (reported[0].failure_reason, reported[0].confirmed_not_paid) == (
        "node_unavailable",
        True,
    )


async def test_in_flight_is_reported_then_followed() -> None:
    _, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    node = FakeNode(pay_result=PaymentInFlight(payment_hash=payment_hash))
    reported: list[RecordPaymentOutcome] = []
    assert (
        await _payer(node, reported, DISPATCHED).process(_order(), delivery=1) is Disposition.RETRY
    )
    assert [o.outcome for o in reported] == ["in_flight"]


def test_keysend_hashes_are_deterministic_and_per_attempt(tmp_path: Path) -> None:
    secret = load_or_create_secret(tmp_path / "s")
    assert load_or_create_secret(tmp_path / "s") == secret
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o600
    preimage, payment_hash = keysend_preimage(secret, "i-1", 1)
    assert keysend_preimage(secret, "i-1", 1) == (preimage, payment_hash)
    assert hashlib.sha256(bytes.fromhex(preimage)).hexdigest() == payment_hash
    assert keysend_preimage(secret, "i-1", 2)[1] != payment_hash


def test_work_orders_other_than_intent_dispatched_are_refused() -> None:
    record = {
        "type": "IntentSettled",
        "version": 1,
        "event_id": "e",
        "stream_id": "i",
        "stream_version": 5,
        "position": 9,
        "recorded_at_ms": 1,
        "hash": "",
        "prev_hash": "",
        "metadata": {"correlation_id": "c", "causation_id": "c", "actor": "x"},
        "data": {},
    }
    with pytest.raises(BadWorkOrder):
        decode_work_order(json.dumps(record).encode(), bytes_max=65536)
    with pytest.raises(BadWorkOrder):
        decode_work_order(b"{" * 10, bytes_max=65536)
    with pytest.raises(BadWorkOrder):
        decode_work_order(b" " * 100, bytes_max=10)


def test_node_uris(tmp_path: Path) -> None:
    entry = {
        "name": "eu-lnd",
        "role": "ours",
        "region": "eu",
        "implementation": "lnd",
        "endpoint": "lnd://127.0.0.1:1?tlscert=a&macaroon=b",
        "pubkey": DESTINATION,
    }
    (tmp_path / "endpoints.json").write_text(json.dumps({"nodes": [entry]}))
    resolved = resolve_node("sim://eu-lnd", region="eu", state_dir=tmp_path)
    assert (resolved.name, resolved.uri) == ("eu-lnd", entry["endpoint"])
    assert resolve_node("cln:///tmp/rpc", region="us", state_dir=tmp_path).name == "us-cln"
    for bad, region in (("sim://nope", "eu"), ("sim://eu-lnd", "us"), ("http://x", "eu")):
        with pytest.raises(NodeUriError):
            resolve_node(bad, region=region, state_dir=tmp_path)


def _report(observed_at_ms: int, healthy: bool = True) -> HealthReport:
    return HealthReport(
        node="us-lnd",
        region="us",
        healthy=healthy,
        outbound_msat=5,
        inbound_msat=1,
        channels=2,
        observed_at_ms=observed_at_ms,
        executor_id="x",
    )


def test_health_board_keeps_the_newest_report_and_ages_it() -> None:
    # More on the board's checks (configured nodes, subjects, clocks): test_health_board.py.
    board = HealthBoard(nodes=[("us", "us-lnd")], interval_ms=1000, stale_intervals=3)
    assert board.health("us", "us-lnd", 0) is None
    subject = health_subject("us", "us-lnd")
    board.observe(subject, _report(10_000), received_at_ms=10_000)
    board.observe(subject, _report(9_000, healthy=False), received_at_ms=10_001)  # older: ignored
    fresh = board.health("us", "us-lnd", 13_000)
    assert fresh is not None and fresh.healthy and fresh.outbound_msat == 5
    stale = board.snapshot(13_001)[("us", "us-lnd")]
    assert msgspec.to_builtins(stale) == {"healthy": False, "outbound_msat": None}


def test_redelivery_backoff_is_capped() -> None:
    limits = ExecutorLimits(redelivery_delay_s_first=1.0, redelivery_delay_s_max=8.0)
    assert [limits.redelivery_delay_s(n) for n in (1, 2, 3, 4, 5, 100)] == [1, 2, 4, 8, 8, 8]


async def test_every_order_is_confirmed_by_the_engine_before_a_send() -> None:
    # The first delivery included (ADR 0063): a signed order says what the engine dispatched,
    # only the engine's answer says it is still the attempt waiting for a send.
    preimage, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    paid = PaymentSucceeded(
        payment_hash=payment_hash, preimage=preimage, amount_msat=1000, fee_msat=0
    )
    asked: list[str] = []
    rerouted = AttemptStatus(state="dispatched", attempt=2)
    node, reported = FakeNode(pay_result=paid), []  # type: ignore[var-annotated]
    assert await _payer(node, reported, rerouted, asked).process(_order(), delivery=1) is (
        Disposition.DONE
    )
    assert (asked, node.sends, reported) == (["i-1"], [], [])
    await _payer(node, reported, DISPATCHED, asked).process(_order(), delivery=1)
    assert (asked, len(node.sends)) == (["i-1", "i-1"], 1)


async def test_an_order_for_an_intent_the_engine_does_not_have_is_never_sent() -> None:
    # The engine answers not_found at once (no retries: it is not "catching up"); the worker
    # terminates the order and records it for the operator.
    async def unknown(intent_id: str) -> AttemptStatus:
        raise OutcomeRefused("not_found", f"no payment intent {intent_id}")

    async def report(order: WorkOrder, outcome: RecordPaymentOutcome) -> None:
        raise AssertionError("nothing is reported to the engine for an unknown intent")

    node = FakeNode(pay_result=PaymentFailed(payment_hash="", reason=FailureReason.NO_ROUTE))
    payer = Payer(node, secret=SECRET, limits=LIMITS, report=report, status_of=unknown)  # type: ignore[arg-type]
    with pytest.raises(OutcomeRefused) as refused:
        await payer.process(_order(), delivery=1)
    assert refused.value.error_code == "not_found" and node.sends == []


async def test_a_reissued_order_of_a_reported_attempt_only_asks_the_node() -> None:
    # ADR 0075: a re-issued order whose attempt the engine knows as in flight, or succeeded
    # without a valid preimage, reports the node's record and never sends.
    preimage, payment_hash = keysend_preimage(SECRET, "i-1", 1)
    for state in ("in_flight", "succeeded"):
        node, reported = FakeNode(), []  # type: ignore[var-annotated]
        node.records[payment_hash] = PaymentSucceeded(
            payment_hash=payment_hash, preimage=preimage, amount_msat=1000, fee_msat=2
        )
        status = AttemptStatus(state=state, attempt=1)
        assert await _payer(node, reported, status).process(_order(), delivery=1) is (
            Disposition.DONE
        )
        assert node.sends == [] and node.lookups == 1
        [outcome] = reported
        assert (outcome.outcome, outcome.preimage) == ("succeeded", preimage)


async def test_a_reissued_order_of_an_ended_attempt_asks_nobody() -> None:
    for status in (AttemptStatus(state="settled", attempt=1),
                   AttemptStatus(state="in_flight", attempt=2)):  # fmt: skip
        node, reported = FakeNode(), []  # type: ignore[var-annotated]
        assert await _payer(node, reported, status).process(_order(), delivery=1) is (
            Disposition.DONE
        )
        assert node.sends == [] and node.lookups == 0 and reported == []


def test_an_executor_needs_a_nats_url_or_a_bus() -> None:
    with pytest.raises(ValueError, match="nats_url"):
        Executor(region="us", node_name="us-lnd", node=FakeNode(), executor_id="us-1",
                 secret=b"s" * 32)  # fmt: skip
