"""Events: the facts Corridor records. The log of these is the source of truth.

An event's ``type`` is its class name and its schema version is ``VERSION``. On the wire and in
``corridor replay`` each event travels inside a ``RecordedEvent`` envelope (see ``records.py``).
Old versions are upcast when read (``schemas/upcasting.py``, ADR 0078), so every reader sees only
these shapes.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal

import msgspec

from schemas.common import AmountMsat, Caller, Metadata

Tier = Literal["auto", "review", "approval"]


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    VERSION: ClassVar[int] = 1


class InvoiceFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the intake decoded from a BOLT 11 invoice, so replays never need the clock."""

    payment_hash: str
    payee: str
    network: str
    amount_msat: AmountMsat | None
    created_at_s: int
    expires_at_s: int


class IntentReceived(EventData, frozen=True, kw_only=True):
    intent_id: str
    caller: Caller
    idempotency_key: str
    corridor: str
    amount_msat: AmountMsat
    max_fee_msat: AmountMsat
    payment_request: str | None = None
    destination: str | None = None
    invoice: InvoiceFacts | None = None
    deadline_at_ms: int | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    received_at_ms: int
    request_fingerprint: str
    # An agent's intent: the key that signed it (ADR 0066) and the human principal who
    # sponsored that key, responsible for the agent (ADR 0068). ``None`` for everyone else.
    agent_key_id: str | None = None
    on_behalf_of: str | None = None
    payee_id: str | None = None  # an onboarded payee, never their name (ADR 0272)


class RuleFired(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a machine-readable explanation: which rule, on which inputs, with what effect."""

    rule: str
    effect: str
    inputs: dict[str, str | int | bool | None] = msgspec.field(default_factory=dict)


class IntentPolicyChecked(EventData, frozen=True, kw_only=True):
    tier: Tier
    policy_version: int
    explanation: tuple[RuleFired, ...] = ()


class IntentApprovalRequested(EventData, frozen=True, kw_only=True):
    approval_deadline_at_ms: int | None = None


class IntentApproved(EventData, frozen=True, kw_only=True):
    operator_id: str
    note: str = ""


class IntentRejected(EventData, frozen=True, kw_only=True):
    by: Literal["policy", "operator"]
    reason: str
    operator_id: str | None = None


class RejectedCandidate(msgspec.Struct, frozen=True, kw_only=True):
    region: str
    node: str
    reason: str


class IntentRouted(EventData, frozen=True, kw_only=True):
    attempt: int
    region: str
    node: str
    reason: str
    rejected: tuple[RejectedCandidate, ...] = ()


# A key id names a key (ours are 16 hex digits; a KMS adapter's may be longer); an Ed25519
# signature is 86 base64url characters. Bounds well above both, so junk is refused early.
SigningKeyId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
OrderSignature = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class IntentDispatched(EventData, frozen=True, kw_only=True):
    """The work order for a region executor. It carries everything needed to pay.

    Version 2 adds the engine's signature over the order (ADR 0063): ``key_id`` names the
    engine's Ed25519 key and ``signature`` (unpadded base64url) covers the canonical bytes
    defined in ``services/signing/orders.py``. Executors pay only orders that verify. A
    version 1 event (logged before signing) reads as version 2 with neither field.
    """

    VERSION: ClassVar[int] = 2

    attempt: int
    region: str
    node: str
    amount_msat: AmountMsat
    max_fee_msat: AmountMsat
    payment_request: str | None = None
    destination: str | None = None
    payment_hash: str | None = None
    pay_timeout_s: int
    # Whether the invoice fixes the amount (then the executor must not send one). Lets the
    # executor pay without decoding the invoice again; None for keysend.
    invoice_has_amount: bool | None = None
    # The engine's signing key (16 hex digits of its SHA-256) and its Ed25519 signature.
    key_id: SigningKeyId | None = None
    signature: OrderSignature | None = None


class PaymentInFlightReported(EventData, frozen=True, kw_only=True):
    attempt: int
    payment_hash: str | None = None


class PaymentSucceeded(EventData, frozen=True, kw_only=True):
    attempt: int
    payment_hash: str | None
    preimage: str
    fee_msat: AmountMsat


class PaymentAttemptFailed(EventData, frozen=True, kw_only=True):
    attempt: int
    reason: str
    confirmed_not_paid: bool
    detail: str = ""


class PaymentInDoubt(EventData, frozen=True, kw_only=True):
    """The node could not prove the attempt failed: it may still pay. Never re-routed."""

    attempt: int
    reason: str
    detail: str = ""


class NodeFailure(msgspec.Struct, frozen=True, kw_only=True):
    """One node a failed intent could not pay through, and why.

    ``attempt`` is set when the intent was sent to the node and the node proved it did not pay
    (``reason`` is then the node's failure reason); it is ``None`` when routing refused the
    candidate without trying it (``reason`` is then the router's, e.g. ``unhealthy``).
    """

    region: str
    node: str
    reason: str
    attempt: int | None = None


class IntentFailed(EventData, frozen=True, kw_only=True):
    """The intent is final without payment.

    ``reason`` is a short code: ``retry_budget_exhausted``, ``no_route_candidate``,
    ``unknown_corridor``, or the last node's final failure reason. ``failures`` names every node
    tried and every candidate refused, in the corridor's order. Events logged before
    ``failures`` existed decode with ``()``.
    """

    reason: str
    attempts: int
    failures: tuple[NodeFailure, ...] = ()


# Parts per million: the unit fee rates are quoted in on Lightning.
PPM: Final = 1_000_000


def fee_ppm_of(fee_msat: int, amount_msat: int) -> int:
    """The fee as parts per million of the amount, rounded down (0 for a zero amount)."""
    return fee_msat * PPM // amount_msat if amount_msat > 0 else 0


class IntentSettled(EventData, frozen=True, kw_only=True):
    """The payment is proven (the preimage hashes to the payment hash): final.

    Version 2 adds ``fee_ppm``, the fee as parts per million of the amount (rounded down), so
    a reader sees what a payment cost without arithmetic. A version 1 event reads as version 2
    with the rate computed from its own amounts (``schemas/upcasting.py``).
    """

    VERSION: ClassVar[int] = 2

    amount_msat: AmountMsat
    fee_msat: AmountMsat
    total_msat: AmountMsat
    preimage: str
    fee_ppm: int


class IntentCancelled(EventData, frozen=True, kw_only=True):
    by: str
    reason: str = ""


class IntentExpired(EventData, frozen=True, kw_only=True):
    deadline_at_ms: int | None


class OutcomeIgnored(EventData, frozen=True, kw_only=True):
    """A stale or duplicate outcome, kept for audit. It never changes the intent's state.

    ``anomaly`` is true when the outcome contradicts a final state (e.g. a success after a
    cancel); the exception queue picks those up.
    """

    attempt: int
    outcome: str
    state: str
    reason: str
    anomaly: bool = False
    preimage: str | None = None


class LogCheckpointSigned(EventData, frozen=True, kw_only=True):
    """The engine's signature over the log's chain head at ``position`` (ADR 0065).

    ``signature`` is the Ed25519 signature (base64url) by ``key_id`` of the canonical bytes
    ``["corridor/checkpoint/v1", key_id, position, hash]`` (compact JSON, ``hash`` in hex).
    Recorded on the stream ``log-checkpoints`` and published to ``CORRIDOR_CHECKPOINTS``.
    """

    checkpoint_id: str
    position: int
    hash: str
    key_id: str
    signature: str
    signed_at_ms: int


class IntentEscalated(EventData, frozen=True, kw_only=True):
    """An exception item: the intent outlived its bound without the node's evidence (on the
    wire too long, or ``succeeded`` without a preimage that proves it). The status stays as
    it is and the spend stays reserved: only the node's proof or an operator's recorded
    decision (``IntentResolved``) ends it. Carries the evidence collected so far."""

    reason: Literal["life_exceeded", "unproven_success"]
    attempt: int
    state: str
    region: str | None = None
    node: str | None = None
    on_wire_since_ms: int | None = None
    life_s: int
    in_doubt: bool = False
    payment_hash: str | None = None
    failures: tuple[NodeFailure, ...] = ()
    ignored_outcomes: int = 0
    anomalies: int = 0


class IntentResolved(EventData, frozen=True, kw_only=True):
    """An operator's decision about an intent the node never proved either way, recorded
    before its effect (``IntentSettled`` with the preimage, or ``IntentFailed``)."""

    operator_id: str
    resolution: Literal["settled", "not_paid"]
    evidence: str
    attempt: int
    preimage: str | None = None


class AnomalyAcknowledged(EventData, frozen=True, kw_only=True):
    """An operator looked at the intent's open anomalies (``OutcomeIgnored`` with ``anomaly``)
    and recorded why they need nothing more. An annotation: the status stays as it is.
    ``anomalies`` is how many this acknowledgement covers (the intent's count so far)."""

    operator_id: str
    reason: str
    evidence: str = ""
    anomalies: int = 0


PaymentIntentEvent = (
    IntentReceived
    | IntentPolicyChecked
    | IntentApprovalRequested
    | IntentApproved
    | IntentRejected
    | IntentRouted
    | IntentDispatched
    | PaymentInFlightReported
    | PaymentSucceeded
    | PaymentAttemptFailed
    | PaymentInDoubt
    | IntentFailed
    | IntentSettled
    | IntentCancelled
    | IntentExpired
    | OutcomeIgnored
    | IntentEscalated
    | IntentResolved
    | AnomalyAcknowledged
)

EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls
    for cls in (
        IntentReceived,
        IntentPolicyChecked,
        IntentApprovalRequested,
        IntentApproved,
        IntentRejected,
        IntentRouted,
        IntentDispatched,
        PaymentInFlightReported,
        PaymentSucceeded,
        PaymentAttemptFailed,
        PaymentInDoubt,
        IntentFailed,
        IntentSettled,
        IntentCancelled,
        IntentExpired,
        OutcomeIgnored,
        IntentEscalated,
        IntentResolved,
        AnomalyAcknowledged,
        LogCheckpointSigned,
    )
}
