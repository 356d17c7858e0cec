"""The demo's pure parts: how the workload is cut into waves, and the timeline read from a log.

No servers here (these would sit in tests/unit; they live beside the demo's end-to-end test).
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.demo.faults import FaultStep, fault_schedule
from services.demo.timeline import FaultMark, build_timeline
from services.demo.workload import build_workload, waves


@given(
    seed=st.integers(0, 10_000),
    intents=st.integers(1, 120),
    breaks=st.sets(st.integers(0, 130), max_size=5),
)
def test_waves_keep_order_never_repeat_a_caller_and_start_at_every_break(
    seed: int, intents: int, breaks: set[int]
) -> None:
    workload = build_workload(seed, intents, 20)
    plan = waves(workload, breaks=breaks)
    assert [spec for wave in plan for spec in wave] == workload
    for wave in plan:
        callers = [spec.caller_id for spec in wave]
        assert len(callers) == len(set(callers)), "a caller twice in one wave"
        assert all(spec.index not in breaks for spec in wave[1:]), "a break inside a wave"
    for previous, wave in itertools.pairwise(plan):
        # A wave ends only where it must: its next intent's caller is in it, or a break.
        first = wave[0]
        assert first.index in breaks or first.caller_id in {s.caller_id for s in previous}


def test_the_same_seed_gives_the_same_waves() -> None:
    breaks = {step.after_intent for step in fault_schedule(300)}
    first = waves(build_workload(7, 300, 20), breaks=breaks)
    assert first == waves(build_workload(7, 300, 20), breaks=breaks)


def _event(position: int, kind: str, stream: str, **data: Any) -> dict[str, Any]:
    return {"position": position, "type": kind, "stream_id": stream, "data": data}


def _routed(position: int, stream: str, node: str, region: str, *rejected: tuple[str, str, str]):
    return _event(
        position, "IntentRouted", stream, region=region, node=node,
        rejected=[{"region": r, "node": n, "reason": why} for r, n, why in rejected],
    )  # fmt: skip


def _dispatched(position: int, stream: str, node: str) -> dict[str, Any]:
    return _event(position, "IntentDispatched", stream, node=node)


def test_timeline_counts_what_routing_and_the_executors_did_after_each_fault() -> None:
    marks = [
        FaultMark(step=FaultStep(2, "hold", "us-lnd"), region="us", log_position=4),
        FaultMark(step=FaultStep(4, "offline", "us-lnd"), region="us", log_position=12),
        FaultMark(step=FaultStep(6, "online", "us-lnd"), region="us", log_position=20),
    ]
    events = [
        # Before any fault: settled through us-lnd.
        _routed(1, "a", "us-lnd", "us"), _dispatched(2, "a", "us-lnd"),
        _event(3, "PaymentSucceeded", "a"), _event(4, "IntentSettled", "a"),
        # Held: the attempt on us-lnd fails with proof, the intent is re-routed and settles.
        _routed(5, "b", "us-lnd", "us"), _dispatched(6, "b", "us-lnd"),
        _event(7, "PaymentAttemptFailed", "b", reason="timeout"),
        _routed(8, "b", "eu-lnd", "eu", ("us", "us-lnd", "already_tried")),
        _dispatched(9, "b", "eu-lnd"), _event(10, "PaymentSucceeded", "b"),
        _event(11, "IntentSettled", "b"), _event(12, "IntentSettled", "z"),
        # Offline: one intent routed around us-lnd, one with no candidate left.
        _routed(13, "c", "eu-lnd", "eu", ("us", "us-lnd", "unhealthy")),
        _dispatched(14, "c", "eu-lnd"), _event(15, "IntentSettled", "c"),
        _event(16, "IntentFailed", "d", reason="no_route_candidate", failures=[
            {"region": "us", "node": "us-lnd", "reason": "unhealthy"},
            {"region": "eu", "node": "eu-lnd", "reason": "keysend_unsupported"},
        ]),
        _event(20, "IntentSettled", "y"),
        # Back online: traffic returns to us-lnd.
        _routed(21, "e", "us-lnd", "us"), _dispatched(22, "e", "us-lnd"),
        _event(23, "IntentSettled", "e"),
    ]  # fmt: skip
    hold, offline, online = build_timeline(events, marks, intents=8)

    assert hold["intents"] == [2, 3]
    assert hold["effects"]["attempts_failed"] == 1
    assert hold["effects"]["retried_to"] == {"eu/eu-lnd": 1}
    assert hold["effects"]["troubled_final"] == {"settled": 1}
    assert offline["intents"] == [4, 5]
    assert offline["effects"]["routed_around"] == 1
    assert offline["effects"]["routed_to"] == {"eu/eu-lnd": 1}
    assert offline["effects"]["no_candidate_failed"] == 1
    assert "routing skipped us-lnd (unhealthy) for 1 intent" in offline["corridor_did"]
    assert online["intents"] == [6, 7]
    assert online["effects"]["dispatched_to_node"] == 1


def test_timeline_names_payments_on_the_wire_when_the_fault_began() -> None:
    marks = [FaultMark(step=FaultStep(1, "offline", "us-lnd"), region="us", log_position=2)]
    events = [
        _routed(1, "a", "us-lnd", "us"), _dispatched(2, "a", "us-lnd"),
        _event(3, "PaymentInFlightReported", "a"),
        _event(4, "PaymentSucceeded", "a"), _event(5, "IntentSettled", "a"),
    ]  # fmt: skip
    (entry,) = build_timeline(events, marks, intents=1)
    assert entry["effects"]["on_the_wire"] == 1
    assert entry["effects"]["on_the_wire_final"] == {"settled": 1}
    assert (
        "1 payment on the wire through us-lnd: never re-sent elsewhere (1 settled)"
        in entry["corridor_did"]
    )
