"""The simulation's invariants: pure functions over plain data, each returning violations.

Inputs are what a run leaves behind: the event log as ``StoredEvent``s, the states the engine
reports, the network's own payment ledger (``SimPayment``-shaped records), the policy document
in force. Nothing here reads a store or a clock, so a test can hand each one a broken input and
see it caught (ADR 0099).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from schemas import events as ev
from schemas.policy_document import PolicyDocument
from services.domain.intent.evolve import evolve
from services.domain.intent.state import PaymentIntent
from services.domain.intent.status import IntentStatus
from services.domain.intent.transitions import TERMINAL_STATUSES, next_status
from services.domain.policy.spend import WindowLimit
from services.domain.policy.spend_fold import SpendBook, apply_intent_event
from services.engine.event_codec import to_domain
from services.eventstore.chain import check_link
from services.eventstore.hashing import GENESIS_HASH
from services.eventstore.port import StoredEvent

NO_HASH_PAID_TWICE: Final = "no_hash_paid_twice"
NO_INTENT_PAID_TWICE: Final = "no_intent_paid_twice"
AT_REST: Final = "accepted_intent_at_rest"
VALUE_CONSERVED: Final = "value_conserved"
SPEND_LIMITS: Final = "spend_limits_hold"
REPLAY_EQUALS_STATES: Final = "replay_equals_states"
HASH_CHAIN: Final = "hash_chain_verifies"
REROUTE_PROVEN: Final = "reroute_after_proof_only"
KNOWN_TRANSITIONS: Final = "known_transitions_only"

# Where an intent that is not terminal may rest once faults heal: each waits for an operator
# (ADR 0048's exception queue, the approval queue), by name.
EXCEPTION_APPROVAL: Final = "awaiting_approval"
EXCEPTION_ESCALATED: Final = "escalated"
EXCEPTION_SUCCESS_WITHOUT_PROOF: Final = "succeeded_without_proof"


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    evidence: str
    subject: str = ""  # the intent, node, caller or position it is about


class LedgerPayment(Protocol):
    """What an invariant reads of one payment attempt on the network (``SimPayment``)."""

    @property
    def payment_hash(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def amount_msat(self) -> int: ...
    @property
    def fee_msat(self) -> int: ...
    @property
    def status(self) -> str: ...


def by_stream(events: Iterable[StoredEvent]) -> dict[str, list[StoredEvent]]:
    streams: dict[str, list[StoredEvent]] = {}
    for event in sorted(events, key=lambda e: e.position):
        streams.setdefault(event.stream_id, []).append(event)
    return streams


def intent_streams(events: Iterable[StoredEvent]) -> dict[str, list[StoredEvent]]:
    """The payment intents' streams (those that begin with ``IntentReceived``)."""
    return {
        s: history
        for s, history in by_stream(events).items()
        if history and history[0].type == "IntentReceived"
    }


def replay(events: Iterable[StoredEvent]) -> dict[str, PaymentIntent]:
    """Every intent's state, folded from the log alone."""
    states: dict[str, PaymentIntent] = {}
    for stream_id, history in intent_streams(events).items():
        state: PaymentIntent | None = None
        for stored in history:
            state = evolve(state, to_domain(stored))
        assert state is not None
        states[stream_id] = state
    return states


# The network's ledger.


def no_hash_paid_twice(payments: Sequence[LedgerPayment]) -> list[Violation]:
    seen: dict[str, int] = {}
    out = []
    for payment in payments:
        if payment.status != "succeeded":
            continue
        seen[payment.payment_hash] = seen.get(payment.payment_hash, 0) + 1
        if seen[payment.payment_hash] == 2:
            out.append(Violation(NO_HASH_PAID_TWICE, "two succeeded payments of one hash",
                                 payment.payment_hash))  # fmt: skip
    return out


def no_intent_paid_twice(
    payments: Sequence[LedgerPayment], events: Sequence[StoredEvent]
) -> list[Violation]:
    """An intent is paid once whatever hashes its attempts used: a payment is the intent's
    when the log names its hash (the invoice's, or an attempt's recorded outcome)."""
    owner: dict[str, str] = {}
    for stored in events:
        hashed = stored.payload.get("payment_hash") or (
            (stored.payload.get("invoice") or {}).get("payment_hash")
        )
        if isinstance(hashed, str):
            owner.setdefault(hashed, stored.stream_id)
    paid: dict[str, list[str]] = {}
    for payment in payments:
        intent = owner.get(payment.payment_hash)
        if payment.status == "succeeded" and intent is not None:
            paid.setdefault(intent, []).append(payment.payment_hash)
    return [
        Violation(NO_INTENT_PAID_TWICE, f"{len(hashes)} succeeded payments: {hashes}", intent)
        for intent, hashes in paid.items()
        if len(hashes) > 1
    ]


def value_conserved(
    payments: Sequence[LedgerPayment], states: Mapping[str, PaymentIntent]
) -> list[Violation]:
    """Per node, in msat: what the network says left it (amount plus fee of its succeeded
    payments) equals what the log settled through it."""
    left: dict[str, int] = {}
    for payment in payments:
        if payment.status == "succeeded":
            left[payment.origin] = (
                left.get(payment.origin, 0) + payment.amount_msat + payment.fee_msat
            )
    settled: dict[str, int] = {}
    for state in states.values():
        if state.status == IntentStatus.SETTLED and state.node is not None:
            total = state.amount_msat + (state.fee_msat or 0)
            settled[state.node] = settled.get(state.node, 0) + total
    return [
        Violation(
            VALUE_CONSERVED,
            f"network sent {left.get(node, 0)} msat, log settled {settled.get(node, 0)}",
            node,
        )
        for node in sorted(left.keys() | settled.keys())
        if left.get(node, 0) != settled.get(node, 0)
    ]


# The log.


def at_rest(accepted: Iterable[str], states: Mapping[str, PaymentIntent]) -> list[Violation]:
    """Once faults heal, every accepted intent is terminal or in a named exception."""
    out = []
    for intent_id in accepted:
        state = states.get(intent_id)
        if state is None:
            out.append(Violation(AT_REST, "accepted, but not in the log", intent_id))
        elif state.status not in TERMINAL_STATUSES and exception_of(state) is None:
            out.append(Violation(AT_REST, f"left {state.status}, in no exception", intent_id))
    return out


def exception_of(state: PaymentIntent) -> str | None:
    if state.status == IntentStatus.AWAITING_APPROVAL:
        return EXCEPTION_APPROVAL
    if state.escalated_attempt == state.attempt and state.attempt > 0:
        return EXCEPTION_ESCALATED
    if state.status == IntentStatus.SUCCEEDED:
        return EXCEPTION_SUCCESS_WITHOUT_PROOF
    return None


def replay_equals_states(
    events: Sequence[StoredEvent], reported: Mapping[str, PaymentIntent]
) -> list[Violation]:
    replayed = replay(events)
    out = []
    for intent_id in sorted(reported.keys() | replayed.keys()):
        mine, theirs = replayed.get(intent_id), reported.get(intent_id)
        if theirs is not None and mine != theirs:
            what = "absent" if mine is None else f"{mine.status} v{mine.version}"
            out.append(Violation(REPLAY_EQUALS_STATES,
                                 f"engine reports {theirs.status} v{theirs.version}, "
                                 f"replay gives {what}", intent_id))  # fmt: skip
    return out


def hash_chain(events: Sequence[StoredEvent]) -> list[Violation]:
    prev: bytes | None = GENESIS_HASH
    for expected, event in enumerate(sorted(events, key=lambda e: e.position), start=1):
        problem = check_link(event, prev, expected_position=expected)
        if problem is not None:
            return [Violation(HASH_CHAIN, problem, str(event.position))]
        prev = event.hash
    return []


def known_transitions(events: Sequence[StoredEvent]) -> list[Violation]:
    out = []
    for intent_id, history in intent_streams(events).items():
        status: IntentStatus | None = None
        for stored in history:
            after = next_status(status, stored.type)
            if after is None:
                out.append(Violation(KNOWN_TRANSITIONS, f"{stored.type} after {status}",
                                     intent_id))  # fmt: skip
                break
            status = after
    return out


def reroute_proven(events: Sequence[StoredEvent]) -> list[Violation]:
    """An intent on the wire is routed anew only after its node proved the attempt did not pay
    (``PaymentAttemptFailed`` with ``confirmed_not_paid`` for that attempt)."""
    out = []
    for intent_id, history in intent_streams(events).items():
        on_wire_attempt = 0
        proven = False
        for stored in history:
            if stored.type == "IntentDispatched":
                on_wire_attempt, proven = int(stored.payload.get("attempt", 0)), False
            elif stored.type == "PaymentAttemptFailed" and stored.payload.get("confirmed_not_paid"):
                proven = proven or int(stored.payload.get("attempt", 0)) == on_wire_attempt
            elif stored.type == "IntentRouted" and on_wire_attempt and not proven:
                out.append(Violation(REROUTE_PROVEN,
                                     f"attempt {on_wire_attempt} re-routed without proof",
                                     intent_id))  # fmt: skip
            elif stored.type in ("IntentFailed", "PaymentSucceeded"):
                on_wire_attempt = 0
    return out


def limits_for(document: PolicyDocument, caller_id: str, kind: str) -> list[WindowLimit]:
    spend = document.spend
    windows = spend.callers.get(caller_id) or spend.kinds.for_kind(kind)  # type: ignore[arg-type]
    return [WindowLimit(w.window_s * 1000, w.limit_msat) for w in windows]


def spend_limits(events: Sequence[StoredEvent], document: PolicyDocument) -> list[Violation]:
    """Folding the whole log in order, no reservation the engine made on its own judgment
    (a policy check below the approval tier) leaves a caller over a window's limit. An
    operator's approval may exceed a limit; that path reserves at dispatch and is not judged."""
    book = SpendBook()
    kinds: dict[str, tuple[str, str]] = {}  # intent -> (caller id, kind)
    out = []
    for stored in sorted(events, key=lambda e: e.position):
        if not stored.type.startswith(("Intent", "Payment")):
            continue
        event = to_domain(stored)
        if isinstance(event, ev.IntentReceived):
            kinds[stored.stream_id] = (event.caller.id, event.caller.kind)
        book = apply_intent_event(book, stored.stream_id, event, at_ms=stored.recorded_at_ms)
        if isinstance(event, ev.IntentPolicyChecked) and event.tier != "approval":
            caller_id, kind = kinds[stored.stream_id]
            limits = limits_for(document, caller_id, kind)
            for use in book.ledger.window_uses(caller_id, limits, now_ms=stored.recorded_at_ms):
                if use.used_msat > use.limit_msat:
                    out.append(Violation(SPEND_LIMITS,
                                         f"{caller_id}: {use.used_msat} msat used of "
                                         f"{use.limit_msat} in {use.window_ms // 1000} s",
                                         stored.stream_id))  # fmt: skip
    return out


def check_log(
    events: Sequence[StoredEvent],
    reported: Mapping[str, PaymentIntent],
    *,
    accepted: Iterable[str],
    document: PolicyDocument,
) -> list[Violation]:
    """Every invariant that needs only the log, the engine's states and the policy."""
    return [
        *hash_chain(events),
        *known_transitions(events),
        *replay_equals_states(events, reported),
        *reroute_proven(events),
        *spend_limits(events, document),
        *at_rest(accepted, replay(events)),
    ]


def check_network(
    payments: Sequence[LedgerPayment], events: Sequence[StoredEvent]
) -> list[Violation]:
    """Every invariant over the network's ledger against the log."""
    return [
        *no_hash_paid_twice(payments),
        *no_intent_paid_twice(payments, events),
        *value_conserved(payments, replay(events)),
    ]
