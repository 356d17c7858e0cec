"""Commands: what callers, operators and executors ask Corridor to do.

Every command carries its envelope fields ``type`` (the class name, a msgspec tag) and
``version``. Bump ``version`` and add a new class for an incompatible change; never change
the meaning of a published version.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas import limits
from schemas.common import AmountMsat as AmountMsat
from schemas.common import (
    Caller,
    CallerId,
    Corridor,
    Hex32,
    IntentId,
    Message,
    Metadata,
    NodePubkey,
    PositiveAmountMsat,
    Reason,
    Region,
)
from schemas.payee_messages import PAYEE_ID_PATTERN

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
PaymentRequest = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.PAYMENT_REQUEST_CHARS_MAX)
]
DeadlineS = Annotated[int, msgspec.Meta(gt=0, le=limits.DEADLINE_S_MAX)]


class SubmitPaymentIntent(Message, frozen=True):
    """Ask Corridor to pay. Exactly one of ``payment_request`` or ``destination`` is set.

    ``caller`` must be the sender's credential: ``caller.id`` the subject's last token and
    ``caller.kind`` the kind registered for it, else ``identity_mismatch``.
    """

    idempotency_key: IdempotencyKey
    caller: Caller
    corridor: Corridor
    amount_msat: PositiveAmountMsat
    max_fee_msat: AmountMsat
    payment_request: PaymentRequest | None = None
    destination: NodePubkey | None = None
    deadline_s: DeadlineS | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    version: Literal[1] = 1
    # An onboarded payee (ADR 0272): the invoice must be their wallet's, and the policy's
    # payee rules apply.
    payee_id: Annotated[str, msgspec.Meta(pattern=PAYEE_ID_PATTERN)] | None = None


class CancelPaymentIntent(Message, frozen=True):
    """Cancel an intent that has not been dispatched to a node yet."""

    intent_id: IntentId
    caller: Caller
    reason: Reason = ""
    version: Literal[1] = 1


class ApprovePaymentIntent(Message, frozen=True):
    """An operator releases an intent waiting in tier ``approval``.

    ``operator_id`` must be the subject's last token (``identity_mismatch``); the intent's own
    caller cannot approve it (``two_person_rule``).
    """

    intent_id: IntentId
    operator_id: CallerId
    note: Reason = ""
    version: Literal[1] = 1


class RejectPaymentIntent(Message, frozen=True):
    """An operator refuses an intent waiting in tier ``approval``."""

    intent_id: IntentId
    operator_id: CallerId
    reason: Reason
    version: Literal[1] = 1


OutcomeKind = Literal["succeeded", "failed", "in_flight"]
FailureReasonCode = Literal[
    "no_route",
    "insufficient_liquidity",
    "timeout",
    "incorrect_details",
    "invoice_expired",
    "already_paid",
    "node_unavailable",
    "unknown",
]


class RecordPaymentOutcome(Message, frozen=True):
    """An executor reports what its node says about one dispatch attempt.

    ``confirmed_not_paid`` is the executor's proof (from ``lookup_payment``) that a failed
    attempt did not and cannot pay; only then may the intent be re-routed elsewhere.
    ``node`` must be the subject's last token (an executor's id is its node's name) and
    ``region`` that node's region, else ``identity_mismatch``. An outcome from a node the
    attempt did not go to is recorded as ``OutcomeIgnored`` (``wrong_node``) and moves nothing.
    """

    intent_id: IntentId
    attempt: Annotated[int, msgspec.Meta(ge=1, le=64)]
    outcome: OutcomeKind
    region: Region
    node: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    payment_hash: Hex32 | None = None
    preimage: Hex32 | None = None
    fee_msat: AmountMsat | None = None
    failure_reason: FailureReasonCode | None = None
    confirmed_not_paid: bool = False
    detail: Reason = ""
    version: Literal[1] = 1


class ExpirePaymentIntent(Message, frozen=True):
    """Issued by Corridor's own scheduler when an intent's deadline has passed."""

    intent_id: IntentId
    version: Literal[1] = 1


class ResolvePaymentIntent(Message, frozen=True):
    """An operator ends an intent its node never proved either way, with evidence.

    For an intent on the wire (``dispatched``, ``in_flight``) or ``succeeded`` without a valid
    preimage. ``settled`` needs the ``preimage`` that hashes to the payment hash; ``not_paid``
    fails the intent and releases its spend, on the operator's word (``evidence`` says what
    was checked, e.g. the node's record). ``operator_id`` must be the subject's last token.
    """

    intent_id: IntentId
    operator_id: CallerId
    resolution: Literal["settled", "not_paid"]
    evidence: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.EVIDENCE_CHARS_MAX)]
    preimage: Hex32 | None = None
    # The fee the node's record shows, for ``settled`` (0 if unknown).
    fee_msat: AmountMsat | None = None
    version: Literal[1] = 1


class AcknowledgeAnomaly(Message, frozen=True):
    """An operator acknowledges the open anomalies of an intent (an outcome that contradicted
    a final state, e.g. a success after a cancel) with the reason and evidence they hold.

    An annotation: the intent's status does not change. ``operator_id`` must be the subject's
    last token; the intent's own caller cannot acknowledge it (``two_person_rule``).
    """

    intent_id: IntentId
    operator_id: CallerId
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.REASON_CHARS_MAX)]
    evidence: Annotated[str, msgspec.Meta(max_length=limits.EVIDENCE_CHARS_MAX)] = ""
    version: Literal[1] = 1


class EscalatePaymentIntent(Message, frozen=True):
    """Issued by Corridor's own sweeper when an intent outlived its bound without the node's
    evidence: records an exception item (``IntentEscalated``); never releases spend."""

    intent_id: IntentId
    # When the current attempt was dispatched, from the log, and the bound it outlived.
    on_wire_since_ms: Annotated[int, msgspec.Meta(ge=0)]
    life_s: Annotated[int, msgspec.Meta(ge=1)]
    version: Literal[1] = 1


class GetPaymentIntent(Message, frozen=True):
    """Query: the intent's current state and its full event history.

    Sent to ``corridor.api.v1.intents.get.<role>.<id>``: answered for the intent's caller,
    operators and auditors; for anyone else the intent is ``not_found``.
    """

    intent_id: IntentId
    version: Literal[1] = 1


class GetPaymentIntentStatus(Message, frozen=True):
    """Query: the intent's state and current attempt only (cheap; executors ask it per payment).

    Sent to ``corridor.api.v1.intents.status.<role>.<id>``: answered for the intent's caller,
    operators, auditors, and the executors of the nodes its attempts went to.
    """

    intent_id: IntentId
    version: Literal[1] = 1


Command = (
    SubmitPaymentIntent
    | CancelPaymentIntent
    | ApprovePaymentIntent
    | RejectPaymentIntent
    | RecordPaymentOutcome
    | ExpirePaymentIntent
    | ResolvePaymentIntent
    | EscalatePaymentIntent
    | AcknowledgeAnomaly
)

COMMAND_TYPES: tuple[type[Command], ...] = (
    SubmitPaymentIntent,
    CancelPaymentIntent,
    ApprovePaymentIntent,
    RejectPaymentIntent,
    RecordPaymentOutcome,
    ExpirePaymentIntent,
    ResolvePaymentIntent,
    EscalatePaymentIntent,
    AcknowledgeAnomaly,
)

__all__ = [
    "COMMAND_TYPES",
    "AcknowledgeAnomaly",
    "ApprovePaymentIntent",
    "CancelPaymentIntent",
    "Command",
    "Corridor",
    "EscalatePaymentIntent",
    "ExpirePaymentIntent",
    "GetPaymentIntent",
    "GetPaymentIntentStatus",
    "Hex32",
    "RecordPaymentOutcome",
    "RejectPaymentIntent",
    "ResolvePaymentIntent",
    "SubmitPaymentIntent",
]
