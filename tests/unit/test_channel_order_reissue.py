"""ADR 0280 (amended): which channel operation's logged order the sweeper and the relay's
start-up repair re-issue, read from the operation's own events."""

from __future__ import annotations

import msgspec

from schemas import channel_messages as cm
from schemas.commands import RejectPaymentIntent
from services.domain.channel_ops import decide
from services.engine.open_attempts import OpenAttempt, _open_attempt
from services.eventstore.port import StoredEvent
from tests.unit.test_channel_ops_machine import POLICY, approve, open_command, report, run

STREAM = cm.CHANNEL_OP_STREAM_PREFIX + "1"
POINT = "cd" * 32 + ":0"


def _stored(events: list[object]) -> list[StoredEvent]:
    return [
        StoredEvent(
            position=n,
            event_id=f"e{n}",
            stream_id=STREAM,
            stream_version=n,
            type=type(e).__name__,
            schema_version=1,
            payload=msgspec.to_builtins(e),
            metadata={},
            recorded_at_ms=n * 1000,
            prev_hash=bytes(32),
            hash=bytes(32),
        )
        for n, e in enumerate(events, start=1)
    ]


def _attempt(events: list[object]) -> OpenAttempt | None:
    return _open_attempt(STREAM, _stored(events))


def test_an_auto_open_is_reissued_from_its_request_until_it_opened() -> None:
    _, requested = run(open_command())
    attempt = _attempt(requested)
    assert attempt is not None and attempt.order.type == "ChannelOpenRequested"
    assert attempt.state is None and attempt.status == "requested"  # re-issued, not escalated
    _, broadcast = run(open_command(), report("broadcast", channel_point=POINT))
    attempt = _attempt(broadcast)
    assert attempt is not None and attempt.order.position == 1 and attempt.status == "broadcast"
    _, opened = run(
        open_command(), report("broadcast", channel_point=POINT),
        report("final", txid=None, channel_id="800000x1x0"),  # type: ignore[arg-type]
    )  # fmt: skip
    assert _attempt(opened) is None


def test_an_approval_open_is_reissued_from_its_approval_only() -> None:
    """ADR 0236: until approved the request is a notice (an executor acks it and does
    nothing), so re-sending it would only wake executors; the approval is the order."""
    state, requested = run(open_command(amount_msat=POLICY.auto_open_msat_max + 1000))
    assert state is not None and state.tier == "approval"
    assert _attempt(requested) is None
    command, other = approve("ops-2")
    approved = decide(state, command, other)  # type: ignore[arg-type]
    assert isinstance(approved, list)
    attempt = _attempt([*requested, *approved])
    assert attempt is not None and attempt.order.type == "ChannelOpenApproved"
    assert attempt.order.position == 2
    rejected = RejectPaymentIntent(intent_id="op_1", operator_id="ops-2", reason="too big")
    declined = decide(state, rejected, other)  # type: ignore[arg-type]
    assert isinstance(declined, list) and _attempt([*requested, *declined]) is None
