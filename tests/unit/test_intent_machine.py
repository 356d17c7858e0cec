"""Property tests of the PaymentIntent aggregate over random command sequences.

Invariants: at most one successful payment per intent; terminal states are final; folding the
recorded events reproduces the state exactly; attempts only re-route with proof of non-payment,
never to a node that proved it did not pay, and in the corridor's order; a failed intent names
every node it tried; no caller approves its own intent. An intent that outlived its bound is
escalated (an exception item) without any change of status, and an intent that was on the
wire fails only with the node's proof or an operator's recorded decision, never on a timeout.
"""

from __future__ import annotations

import hashlib

from hypothesis import event as label
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from schemas import commands as cmd
from schemas import errors
from schemas import events as ev
from schemas.common import Caller
from services.domain.intent import (
    TERMINAL_STATUSES,
    DecisionContext,
    IntentStatus,
    PaymentIntent,
    decide,
    evolve,
    fold,
)
from services.domain.intent.decide import RETRYABLE_REASONS
from services.domain.policy import PolicyVerdict
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate

PREIMAGE = hashlib.sha256(b"p").hexdigest()
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()
WRONG_PREIMAGE = hashlib.sha256(b"wrong").hexdigest()
# Two candidates share a region, and one cannot keysend (like the default corridor us-eu).
CANDIDATES = (
    RouteCandidate(region="us", node="us-lnd"),
    RouteCandidate(region="eu", node="eu-lnd"),
    RouteCandidate(region="us", node="us-cln", keysend=False),
    RouteCandidate(region="asia", node="asia-lnd"),
)
ROUTER = OrderedRouter(CorridorTable(corridors={"us-eu": CANDIDATES}))
INVOICE = ev.InvoiceFacts(
    payment_hash=PAYMENT_HASH, payee="02" + "ab" * 32, network="regtest", amount_msat=10_000,
    created_at_s=1_700_000_000, expires_at_s=1_702_592_000,  # 30 days
)  # fmt: skip
REASONS = ["no_route", "insufficient_liquidity", "timeout", "incorrect_details",
           "invoice_expired", "already_paid", "node_unavailable", "unknown"]  # fmt: skip


class FixedPolicy:
    def __init__(self, tier: str, reject: bool) -> None:
        self.verdict = PolicyVerdict(
            tier=tier,  # type: ignore[arg-type]
            policy_version=7,
            reject_reason="denied" if reject else None,
            approval_window_ms=60_000,
        )

    def judge(
        self, command: cmd.SubmitPaymentIntent, *, now_ms: int, payee: str | None = None
    ) -> PolicyVerdict:
        return self.verdict


class IntentMachine(RuleBasedStateMachine):
    @initialize(
        tier=st.sampled_from(["auto", "review", "approval"]),
        reject=st.booleans(),
        deadline_s=st.none() | st.integers(1, 120),
        keysend=st.booleans(),
        attempts_max=st.integers(1, 5),
    )
    def submit(
        self, tier: str, reject: bool, deadline_s: int | None, keysend: bool, attempts_max: int
    ) -> None:
        self.now_ms = 1_700_000_000_000
        self.keysend = keysend
        self.attempts_max = attempts_max
        self.policy = FixedPolicy(tier, reject and tier != "approval")
        self.events: list[ev.EventData] = []
        self.state: PaymentIntent | None = None
        self.terminal_seen: IntentStatus | None = None
        self.successes = 0
        command = cmd.SubmitPaymentIntent(
            idempotency_key="k",
            caller=Caller(id="alice", kind="agent"),
            corridor="us-eu",
            amount_msat=10_000,
            max_fee_msat=100,
            payment_request=None if keysend else "lnbcrt100n1test",
            destination="02" + "cd" * 32 if keysend else None,
            deadline_s=deadline_s,
        )
        self._apply(command)

    def _ctx(self) -> DecisionContext:
        return DecisionContext(
            now_ms=self.now_ms, policy=self.policy, router=ROUTER,
            intent_id="intent-1", request_fingerprint="fp", attempts_max=self.attempts_max,
            invoice=None if self.keysend else INVOICE,
        )  # fmt: skip

    def _apply(self, command: cmd.Command) -> None:
        try:
            new = decide(self.state, command, self._ctx())
        except errors.CorridorError:
            return
        for event in new:
            self.state = evolve(self.state, event)
            self.events.append(event)
            if isinstance(event, ev.PaymentSucceeded):
                self.successes += 1

    @rule(ms=st.integers(0, 200_000))
    def time_passes(self, ms: int) -> None:
        self.now_ms += ms

    @rule(by_the_caller=st.sampled_from([False, False, True]))
    def approve(self, by_the_caller: bool) -> None:
        # "alice" submitted the intent: as an operator she is still the caller (ADR 0061).
        operator_id = "alice" if by_the_caller else "op"
        before = self.state
        try:
            decide(before, cmd.ApprovePaymentIntent(intent_id="intent-1", operator_id=operator_id),
                   self._ctx())  # fmt: skip
        except errors.TwoPersonRule as refused:
            assert by_the_caller and refused.field == "operator_id"
            assert before is not None and before.status is IntentStatus.AWAITING_APPROVAL
        except errors.CorridorError:
            pass
        self._apply(cmd.ApprovePaymentIntent(intent_id="intent-1", operator_id=operator_id))

    @rule()
    def reject(self) -> None:
        self._apply(cmd.RejectPaymentIntent(intent_id="intent-1", operator_id="op", reason="no"))

    @rule(own=st.booleans())
    def cancel(self, own: bool) -> None:
        caller = Caller(id="alice" if own else "eve", kind="human")
        self._apply(cmd.CancelPaymentIntent(intent_id="intent-1", caller=caller))

    @rule()
    def expire(self) -> None:
        self._apply(cmd.ExpirePaymentIntent(intent_id="intent-1"))

    @rule(
        attempt_delta=st.sampled_from([0, 0, 0, -1, 1]),
        outcome=st.sampled_from(["succeeded", "failed", "in_flight"]),
        reason=st.sampled_from(REASONS),
        confirmed=st.booleans(),
        right_preimage=st.booleans(),
        fee=st.integers(0, 500),
        from_the_attempts_node=st.sampled_from([True, True, True, False]),
    )
    def outcome(
        self, attempt_delta: int, outcome: str, reason: str, confirmed: bool,
        right_preimage: bool, fee: int, from_the_attempts_node: bool,
    ) -> None:  # fmt: skip
        attempt = max(1, (self.state.attempt if self.state else 1) + attempt_delta)
        region, node = "asia", "asia-cln"  # a node no attempt goes to
        if from_the_attempts_node and self.state is not None and self.state.node is not None:
            region, node = self.state.region or "", self.state.node
        before, events_before = self.state, len(self.events)
        self._apply(
            cmd.RecordPaymentOutcome(
                intent_id="intent-1", attempt=attempt, outcome=outcome,  # type: ignore[arg-type]
                region=region, node=node,
                preimage=(PREIMAGE if right_preimage else WRONG_PREIMAGE)
                if outcome == "succeeded" else None,
                fee_msat=fee, failure_reason=reason if outcome == "failed" else None,  # type: ignore[arg-type]
                confirmed_not_paid=confirmed,
            )
        )  # fmt: skip
        if before is not None and (region, node) != (before.region, before.node):
            # Only the attempt's own node can know its outcome (executors rely on it).
            assert self.state is not None and self.state.status is before.status
            assert all(isinstance(e, ev.OutcomeIgnored) for e in self.events[events_before:])

    @rule(reason=st.sampled_from(sorted(RETRYABLE_REASONS)))
    def the_node_proves_it_did_not_pay(self, reason: cmd.FailureReasonCode) -> None:
        # The generic outcome rule rarely chains two proofs; this one walks the corridor.
        if self.state is None or self.state.node is None:
            return
        self._apply(
            cmd.RecordPaymentOutcome(
                intent_id="intent-1", attempt=self.state.attempt, outcome="failed",
                region=self.state.region or "", node=self.state.node,
                failure_reason=reason, confirmed_not_paid=True,
            )
        )  # fmt: skip

    @rule(since_back_ms=st.integers(0, 400_000), life_s=st.integers(1, 300))
    def the_sweeper_escalates(self, since_back_ms: int, life_s: int) -> None:
        before, events_before = self.state, len(self.events)
        self._apply(
            cmd.EscalatePaymentIntent(
                intent_id="intent-1", on_wire_since_ms=max(0, self.now_ms - since_back_ms),
                life_s=life_s,
            )
        )  # fmt: skip
        new = self.events[events_before:]
        assert all(isinstance(e, ev.IntentEscalated) for e in new)
        if new:
            assert before is not None and self.state is not None
            assert self.state.status is before.status, "an exception item changes no status"
            assert since_back_ms >= life_s * 1000

    @rule(
        resolution=st.sampled_from(["settled", "not_paid"]),
        right_preimage=st.booleans(),
        by_the_caller=st.sampled_from([False, False, False, True]),
    )
    def an_operator_resolves(
        self, resolution: str, right_preimage: bool, by_the_caller: bool
    ) -> None:
        events_before = len(self.events)
        self._apply(
            cmd.ResolvePaymentIntent(
                intent_id="intent-1", operator_id="alice" if by_the_caller else "op",
                resolution=resolution,  # type: ignore[arg-type]
                evidence="the node's record",
                preimage=PREIMAGE if right_preimage else WRONG_PREIMAGE,
            )
        )  # fmt: skip
        new = self.events[events_before:]
        if new:
            assert not by_the_caller, "the caller alone never resolves its own intent"
            assert isinstance(new[0], ev.IntentResolved) and new[0].operator_id == "op"
            assert self.state is not None and self.state.is_terminal, "a resolution ends it"

    @rule(by_the_caller=st.sampled_from([False, False, True]))
    def an_operator_acknowledges_the_anomalies(self, by_the_caller: bool) -> None:
        before = self.state
        events_before = len(self.events)
        self._apply(
            cmd.AcknowledgeAnomaly(
                intent_id="intent-1", operator_id="alice" if by_the_caller else "op",
                reason="refunded",
            )
        )  # fmt: skip
        new = self.events[events_before:]
        if not new:
            return
        assert before is not None and self.state is not None
        assert not by_the_caller, "the caller alone never acknowledges its own anomaly"
        assert before.anomalies > before.anomalies_acknowledged, "it always covers something"
        [acked] = new
        assert isinstance(acked, ev.AnomalyAcknowledged) and acked.anomalies == before.anomalies
        assert self.state.status is before.status, "an acknowledgement changes no status"
        label("anomaly acknowledged")

    @rule()
    def the_node_is_asked_again_for_the_preimage(self) -> None:
        # An executor re-querying its node after a success without proof.
        if self.state is None or self.state.node is None:
            return
        self._apply(
            cmd.RecordPaymentOutcome(
                intent_id="intent-1", attempt=self.state.attempt, outcome="succeeded",
                region=self.state.region or "", node=self.state.node, preimage=PREIMAGE,
                payment_hash=PAYMENT_HASH,
            )
        )  # fmt: skip

    @invariant()
    def label_coverage(self) -> None:
        # Shown by --hypothesis-show-statistics: proves the search reaches every state.
        if self.state is not None:
            label(f"status={self.state.status} attempt={self.state.attempt}")
            if self.state.status == "failed":
                label(f"failed reason={self.state.failure_reason} named={len(self.state.failures)}")

    @invariant()
    def at_most_one_successful_payment(self) -> None:
        assert self.successes <= 1

    @invariant()
    def terminal_states_are_final(self) -> None:
        if self.state is None:
            return
        if self.terminal_seen is not None:
            assert self.state.status == self.terminal_seen
        elif self.state.status in TERMINAL_STATUSES:
            self.terminal_seen = self.state.status

    @invariant()
    def replay_reproduces_state(self) -> None:
        replayed = fold(self.events)
        if replayed is None:
            assert self.state is None
            return
        assert replayed == self.state

    @invariant()
    def settled_means_proven(self) -> None:
        if self.state is not None and self.state.status == "settled":
            assert self.state.preimage is not None
            assert hashlib.sha256(bytes.fromhex(self.state.preimage)).hexdigest() == PAYMENT_HASH

    @invariant()
    def reroute_only_with_proof(self) -> None:
        for before, after in zip(self.events, self.events[1:], strict=False):
            if isinstance(after, ev.IntentRouted) and after.attempt > 1:
                assert isinstance(before, ev.PaymentAttemptFailed) and before.confirmed_not_paid

    @invariant()
    def reroute_never_returns_to_a_node_that_proved_it_did_not_pay(self) -> None:
        routed = [(e.region, e.node) for e in self.events if isinstance(e, ev.IntentRouted)]
        assert len(routed) == len(set(routed))

    @invariant()
    def attempts_follow_the_corridor_order(self) -> None:
        # No health data here, so every usable candidate is taken in turn, same region or not.
        usable = [(c.region, c.node) for c in CANDIDATES if c.keysend or not self.keysend]
        routed = [(e.region, e.node) for e in self.events if isinstance(e, ev.IntentRouted)]
        assert routed == usable[: len(routed)]

    @invariant()
    def a_failed_intent_names_every_node_it_tried(self) -> None:
        failed = [e for e in self.events if isinstance(e, ev.IntentFailed)]
        if not failed:
            return
        assert self.state is not None and self.state.failures == failed[0].failures
        proven = [
            (self.state.tried_nodes[e.attempt - 1], e.reason, e.attempt)
            for e in self.events
            if isinstance(e, ev.PaymentAttemptFailed)
        ]
        named = [((f.region, f.node), f.reason, f.attempt) for f in failed[0].failures]
        assert [n for n in named if n[2] is not None] == proven
        assert len({n[0] for n in named}) == len(named), "each node once"
        if failed[0].reason == "no_route_candidate":
            in_corridor = [(c.region, c.node) for c in CANDIDATES]
            assert [n[0] for n in named] == in_corridor

    @invariant()
    def leaving_the_wire_takes_proof_or_an_operator(self) -> None:
        # Spend is released by IntentFailed: after a dispatch, only a node's proof of
        # non-payment or an operator's recorded decision may precede it; never a timeout.
        dispatched = False
        for before, after in zip(self.events, self.events[1:], strict=False):
            dispatched = dispatched or isinstance(before, ev.IntentDispatched)
            if dispatched and isinstance(after, ev.IntentFailed):
                proof = isinstance(before, ev.PaymentAttemptFailed) and before.confirmed_not_paid
                decided = isinstance(before, ev.IntentResolved) and before.resolution == "not_paid"
                assert proof or decided

    @invariant()
    def a_success_without_proof_is_no_dead_end(self) -> None:
        # From succeeded-without-proof, the node's preimage or an operator's decision must
        # lead out: decide accepts both (checked on a copy, the machine's state is untouched).
        state = self.state
        if state is None or state.status is not IntentStatus.SUCCEEDED or state.node is None:
            return
        for command in (
            cmd.ResolvePaymentIntent(intent_id="intent-1", operator_id="op",
                                     resolution="not_paid", evidence="checked"),
            cmd.RecordPaymentOutcome(intent_id="intent-1", attempt=state.attempt,
                                     outcome="succeeded", region=state.region or "",
                                     node=state.node, preimage=PREIMAGE,
                                     payment_hash=PAYMENT_HASH),
        ):  # fmt: skip
            after = state
            for event in decide(state, command, self._ctx()):
                after = evolve(after, event)
            assert after.is_terminal

    @invariant()
    def escalated_once_per_attempt(self) -> None:
        attempts = [e.attempt for e in self.events if isinstance(e, ev.IntentEscalated)]
        assert len(attempts) == len(set(attempts))

    @invariant()
    def no_caller_approves_its_own_intent(self) -> None:
        approvers = [e.operator_id for e in self.events if isinstance(e, ev.IntentApproved)]
        assert "alice" not in approvers

    @invariant()
    def versions_match_event_count(self) -> None:
        if self.state is not None:
            assert self.state.version == len(self.events)


TestIntentMachine = IntentMachine.TestCase
