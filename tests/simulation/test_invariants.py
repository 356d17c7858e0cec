"""Each invariant holds on a clean run, and catches a deliberately broken input."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

from services.domain.intent.status import IntentStatus
from services.domain.policy.spend import WindowUse
from services.domain.policy.spend_tracker import SpendTracker
from services.simulation import invariants as inv
from services.simulation.runner import NetPayment, Simulation
from tests.simulation.scenarios import FIRST_NODES_DOWN, log_of, run


async def test_a_clean_run_with_reroutes_breaks_no_invariant() -> None:
    sim = await run(11, 8, down=FIRST_NODES_DOWN)
    events = await log_of(sim)
    types = [e.type for e in events]
    assert "IntentRouted" in types and "PaymentAttemptFailed" in types and "IntentSettled" in types
    reported = {i: s for i in sim.accepted if (s := sim.engine.cache.get(i)) is not None}
    assert reported
    assert inv.check_log(events, reported, accepted=list(sim.accepted),
                         document=sim.document) == []  # fmt: skip
    assert inv.check_network(sim.ledger, events) == []


async def test_a_hash_paid_twice_on_the_ledger_is_caught() -> None:
    sim = await run(12, 3)
    events = await log_of(sim)
    twice = [*sim.ledger, sim.ledger[0]]
    assert [v.invariant for v in inv.no_hash_paid_twice(twice)] == [inv.NO_HASH_PAID_TWICE]
    assert [v.invariant for v in inv.no_intent_paid_twice(twice, events)] == [
        inv.NO_INTENT_PAID_TWICE
    ]


async def test_an_intent_paid_under_two_hashes_is_caught() -> None:
    sim = await run(13, 2)
    events = await log_of(sim)
    first = sim.ledger[0]
    # A second attempt of the same intent that paid too (the log recorded its hash).
    other = NetPayment("ab" * 32, first.origin, first.amount_msat, 0, "succeeded", "cd" * 32)
    intent = next(e.stream_id for e in events if e.type == "IntentSettled")
    extra = msgspec.structs.replace(
        next(e for e in events if e.stream_id == intent and e.type == "PaymentSucceeded"),
        payload={"payment_hash": other.payment_hash},
    )
    paid = [p for p in sim.ledger if p.payment_hash != first.payment_hash] + [first, other]
    found = inv.no_intent_paid_twice(paid, [*events, extra])
    assert [v.invariant for v in found] == [inv.NO_INTENT_PAID_TWICE]


async def test_value_not_conserved_is_caught_per_node() -> None:
    sim = await run(14, 3)
    states = inv.replay(await log_of(sim))
    assert inv.value_conserved(sim.ledger, states) == []
    skimmed = [dataclasses.replace(sim.ledger[0], fee_msat=sim.ledger[0].fee_msat + 1),
               *sim.ledger[1:]]  # fmt: skip
    [violation] = inv.value_conserved(skimmed, states)
    assert violation.invariant == inv.VALUE_CONSERVED and violation.subject == skimmed[0].origin


async def test_a_reroute_without_proof_is_caught() -> None:
    sim = await run(15, 4, down=FIRST_NODES_DOWN)
    events = await log_of(sim)
    assert inv.reroute_proven(events) == []
    # The node said "failed" but not that it did not pay: a re-route then risks paying twice.
    unproven = [
        msgspec.structs.replace(e, payload={**e.payload, "confirmed_not_paid": False})
        if e.type == "PaymentAttemptFailed"
        else e
        for e in events
    ]
    found = inv.reroute_proven(unproven)
    assert found and {v.invariant for v in found} == {inv.REROUTE_PROVEN}


async def test_an_intent_left_on_the_wire_is_caught_and_an_exception_is_not() -> None:
    sim = await run(16, 3)
    events = await log_of(sim)
    intent = next(iter(sim.accepted))
    dispatched = next(e.position for e in events
                      if e.stream_id == intent and e.type == "IntentDispatched")  # fmt: skip
    # The outcome never came back: the intent stays dispatched in no exception queue.
    cut = [e for e in events if e.stream_id != intent or e.position <= dispatched]
    [violation] = inv.at_rest(sim.accepted, inv.replay(cut))
    assert violation.invariant == inv.AT_REST and violation.subject == intent
    lost = inv.at_rest([*sim.accepted, "never-logged"], inv.replay(events))
    assert [v.subject for v in lost] == ["never-logged"]
    waiting = {intent: msgspec.structs.replace(inv.replay(events)[intent],
                                               status=IntentStatus.AWAITING_APPROVAL)}  # fmt: skip
    assert inv.at_rest([intent], waiting) == []


async def test_a_state_the_engine_reports_but_the_log_does_not_give_is_caught() -> None:
    sim = await run(17, 3)
    events = await log_of(sim)
    states = inv.replay(events)
    intent = next(iter(states))
    stale = {
        **states,
        intent: msgspec.structs.replace(states[intent], status=IntentStatus.IN_FLIGHT),
    }
    [violation] = inv.replay_equals_states(events, stale)
    assert violation.invariant == inv.REPLAY_EQUALS_STATES and violation.subject == intent


async def test_a_changed_or_missing_event_breaks_the_chain() -> None:
    sim = await run(18, 3)
    events = await log_of(sim)
    assert inv.hash_chain(events) == []
    tampered = list(events)
    tampered[2] = msgspec.structs.replace(events[2], payload={**events[2].payload, "x": 1})
    assert [v.subject for v in inv.hash_chain(tampered)] == [str(events[2].position)]
    assert [v.invariant for v in inv.hash_chain(events[:1] + events[2:])] == [inv.HASH_CHAIN]


async def test_an_event_out_of_the_state_machine_is_caught() -> None:
    sim = await run(19, 2)
    events = await log_of(sim)
    settled = next(e for e in events if e.type == "IntentSettled")
    again = msgspec.structs.replace(
        settled, position=events[-1].position + 1, type="IntentDispatched"
    )
    found = inv.known_transitions([*events, again])
    assert [v.invariant for v in found] == [inv.KNOWN_TRANSITIONS]


async def test_a_spend_check_that_reads_stale_state_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    honest = await run(20, 120)
    honest_log = await log_of(honest)
    assert inv.spend_limits(honest_log, honest.document) == []
    # The honest engine sent the agent's intents beyond its hourly limit to an operator.
    assert any(e.type == "IntentApprovalRequested" for e in honest_log)

    # A broken engine: its spend check reads a book from before any spend (stale state).
    def nothing_spent(
        self: SpendTracker, caller_id: str, limits: object, *, now_ms: int
    ) -> tuple[WindowUse, ...]:
        return tuple(WindowUse(w.window_ms, w.limit_msat, 0) for w in limits)  # type: ignore[attr-defined]

    monkeypatch.setattr(SpendTracker, "window_uses", nothing_spent)
    broken = await run(20, 120)
    found = inv.spend_limits(await log_of(broken), broken.document)
    assert found and {v.invariant for v in found} == {inv.SPEND_LIMITS}
    assert all("bot:" in v.evidence for v in found)  # the agent's 20,000 sat an hour


async def test_a_reroute_on_a_false_proof_shows_on_the_ledger_as_an_intent_paid_twice() -> None:
    """An executor that paid but reports "failed, proven not paid": the engine re-routes (the
    log looks proven), and the network's own ledger shows the intent paid by two nodes."""
    sim = Simulation(21, steps=0)
    sim.false_proof_nodes = frozenset({"us-lnd", "eu-lnd"})
    await sim.start()
    try:
        for _ in range(4):
            sim.submit()
        await sim.drain()
    finally:
        await sim.stop()
    events = await log_of(sim)
    assert inv.reroute_proven(events) == []
    found = {v.invariant for v in inv.check_network(sim.ledger, events)}
    assert inv.NO_INTENT_PAID_TWICE in found and inv.VALUE_CONSERVED in found
