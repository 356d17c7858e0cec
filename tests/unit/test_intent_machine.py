"""Property tests of the PaymentIntent aggregate over random command sequences.

Invariants: at most one successful payment per intent; terminal states are final; folding the
recorded events reproduces the state exactly; attempts only re-route with proof of non-payment.
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
from services.domain.intent import TERMINAL_STATUSES, DecisionContext, decide, evolve, fold
from services.domain.policy import PolicyVerdict
from services.domain.routing import CorridorTable, OrderedRouter, RouteCandidate

PREIMAGE = hashlib.sha256(b"p").hexdigest()
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()
WRONG_PREIMAGE = hashlib.sha256(b"wrong").hexdigest()
ROUTER = OrderedRouter(
    CorridorTable(
        corridors={
            "us-eu": (
                RouteCandidate(region="us", node="us-lnd"),
                RouteCandidate(region="eu", node="eu-lnd"),
                RouteCandidate(region="asia", node="asia-lnd"),
            )
        }
    )
)
INVOICE = ev.InvoiceFacts(
    payment_hash=PAYMENT_HASH, payee="02" + "ab" * 32, network="regtest", amount_msat=10_000,
    created_at_s=1_700_000_000, expires_at_s=1_800_000_000,
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
    )
    def submit(self, tier: str, reject: bool, deadline_s: int | None) -> None:
        self.now_ms = 1_700_000_000_000
        self.policy = FixedPolicy(tier, reject and tier != "approval")
        self.events: list[ev.EventData] = []
        self.state = None
        self.terminal_seen = None
        self.successes = 0
        command = cmd.SubmitPaymentIntent(
            idempotency_key="k",
            caller=Caller(id="alice", kind="agent"),
            corridor="us-eu",
            amount_msat=10_000,
            max_fee_msat=100,
            payment_request="lnbcrt100n1test",
            deadline_s=deadline_s,
        )
        self._apply(command)

    def _ctx(self) -> DecisionContext:
        return DecisionContext(
            now_ms=self.now_ms, policy=self.policy, router=ROUTER,
            intent_id="intent-1", request_fingerprint="fp", attempts_max=3, invoice=INVOICE,
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

    @rule()
    def approve(self) -> None:
        self._apply(cmd.ApprovePaymentIntent(intent_id="intent-1", operator_id="op"))

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

    @invariant()
    def label_coverage(self) -> None:
        # Shown by --hypothesis-show-statistics: proves the search reaches every state.
        if self.state is not None:
            label(f"status={self.state.status} attempt={self.state.attempt}")

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
    def versions_match_event_count(self) -> None:
        if self.state is not None:
            assert self.state.version == len(self.events)


TestIntentMachine = IntentMachine.TestCase
