"""An operator acknowledges an intent's anomaly (issue 15, the exception queue's ``resolve`` of
an ``anomaly`` row): recorded as ``AnomalyAcknowledged`` with who, why and the evidence; the
status stays as it is; nothing open to acknowledge is refused with a code; the caller cannot
acknowledge its own intent's; and the queue no longer lists the anomaly."""

from __future__ import annotations

import pytest

from projections import exceptions as queue
from schemas import commands as cmd
from schemas import errors
from schemas import events as ev
from services.domain.intent import IntentStatus, PaymentIntent, decide
from services.domain.intent.status import IntentStatus as S
from services.domain.intent.transitions import TRANSITIONS
from tests.unit.test_intent_resolution import PREIMAGE, _ctx, _dispatched, _outcome, _resolve, _run


def _failed_then_paid() -> PaymentIntent:
    """Failed on an operator's "not paid", then the node reports a success: money moved."""
    state, _ = _dispatched()
    failed, _ = _run(state, _resolve("not_paid"))
    assert failed.status is IntentStatus.FAILED
    after, [ignored] = _run(failed, _outcome(state, PREIMAGE))
    assert isinstance(ignored, ev.OutcomeIgnored) and ignored.anomaly
    return after


def _ack(operator: str = "op-2", reason: str = "refunded, ticket 7") -> cmd.AcknowledgeAnomaly:
    return cmd.AcknowledgeAnomaly(
        intent_id="intent-1", operator_id=operator, reason=reason,
        evidence='{"status":"succeeded"}',
    )  # fmt: skip


def test_an_acknowledgement_is_recorded_with_who_why_and_evidence_and_keeps_the_status() -> None:
    state = _failed_then_paid()
    after, [acked] = _run(state, _ack())
    assert acked == ev.AnomalyAcknowledged(
        operator_id="op-2", reason="refunded, ticket 7", evidence='{"status":"succeeded"}',
        anomalies=1,
    )  # fmt: skip
    assert after.status is IntentStatus.FAILED
    assert after.anomalies_acknowledged == after.anomalies == 1


def test_nothing_open_to_acknowledge_is_refused_with_a_code() -> None:
    acked, _ = _run(_failed_then_paid(), _ack())
    with pytest.raises(errors.InvalidTransition) as twice:
        decide(acked, _ack(), _ctx())
    assert (twice.value.code, twice.value.field) == ("nothing_to_acknowledge", "intent_id")
    clean, _ = _dispatched()
    with pytest.raises(errors.InvalidTransition):
        decide(clean, _ack(), _ctx())


def test_the_intents_caller_cannot_acknowledge_its_anomaly() -> None:
    with pytest.raises(errors.TwoPersonRule):
        decide(_failed_then_paid(), _ack(operator="alice"), _ctx())


def test_the_acknowledgement_is_an_annotation_in_every_status() -> None:
    assert all(TRANSITIONS[(s, "AnomalyAcknowledged")] is s for s in S)


def test_the_queue_drops_an_acknowledged_anomaly_and_keeps_others() -> None:
    def record(stream: str, kind: str, data: dict[str, object], at_ms: int) -> dict[str, object]:
        return {"type": kind, "version": 1, "stream_id": stream, "recorded_at_ms": at_ms,
                "data": data}  # fmt: skip

    anomaly = {"attempt": 1, "outcome": "succeeded", "state": "failed", "reason": "state_failed",
               "anomaly": True}  # fmt: skip
    log = [
        record("i-1", "OutcomeIgnored", anomaly, 1),
        record("i-2", "OutcomeIgnored", anomaly, 2),
        record("i-1", "AnomalyAcknowledged", {"operator_id": "op", "reason": "r"}, 3),
    ]
    rows = queue.build(log, now_ms=10, stuck_after_ms=1_000)
    assert [(r["intent_id"], r["kind"]) for r in rows] == [("i-2", "anomaly")]
