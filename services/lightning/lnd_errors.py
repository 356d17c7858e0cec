"""LND vendor codes mapped onto the port's failure taxonomy: one table, one lookup per kind.

Sources (lightningnetwork/lnd; the facts are summarised in
shared/conformance/lnd/payment-semantics.md):

- ``PaymentFailureReason`` in ``lnrpc/lightning.proto``
  https://github.com/lightningnetwork/lnd/blob/master/lnrpc/lightning.proto
- duplicate-send errors in ``payments/db/errors.go`` and their gRPC codes in
  ``lnrpc/routerrpc/router_server.go``
  https://github.com/lightningnetwork/lnd/blob/master/lnrpc/routerrpc/router_server.go
- the expired-invoice check in ``lnrpc/routerrpc/router_backend.go``
  (a plain Go error, so it reaches us as gRPC ``UNKNOWN``).

Every row says whether the answer is *final*: only a final row may turn a payment into
``PaymentFailed``. Anything not in the table, or not final, leaves the payment in flight
("unknown is not failed"), and the caller recovers with ``lookup_payment``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import grpc

from services.lightning.port import FailureReason


class Kind(enum.Enum):
    FAILURE_REASON = "failure_reason"  # lnrpc.PaymentFailureReason on a FAILED Payment
    GRPC_STATUS = "grpc_status"  # status of a failed RPC, optionally narrowed by its text


class Action(enum.Enum):
    FAIL = "fail"  # final: the payment did not and will not pay through this attempt
    USE_RECORD = "use_record"  # the node already holds this hash; answer from its record
    NOT_FOUND = "not_found"  # the node never attempted this hash
    UNKNOWN = "unknown"  # outcome unknown: in flight for payments, NodeError otherwise


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    code: int | grpc.StatusCode  # PaymentFailureReason number, or gRPC status
    reason: FailureReason
    action: Action
    message_prefix: str = ""  # lower-case prefix of the gRPC details; "" matches any text


# PaymentFailureReason numbers from lightning.proto. FAILURE_REASON_CANCELED (6) is newer than
# the compiled protos we ship, so the numbers are written out rather than imported.
_TIMEOUT, _NO_ROUTE, _ERROR, _INCORRECT_DETAILS, _INSUFFICIENT_BALANCE, _CANCELED = range(1, 7)

_S = grpc.StatusCode
_FR, _GS = Kind.FAILURE_REASON, Kind.GRPC_STATUS
_R, _A = FailureReason, Action

# The one table. Rows with a message prefix come before the catch-all row for the same code.
LND_ERRORS: Final[tuple[Rule, ...]] = (
    Rule(_FR, _TIMEOUT, _R.TIMEOUT, _A.FAIL),
    Rule(_FR, _NO_ROUTE, _R.NO_ROUTE, _A.FAIL),
    Rule(_FR, _ERROR, _R.UNKNOWN, _A.FAIL),
    Rule(_FR, _INCORRECT_DETAILS, _R.INCORRECT_DETAILS, _A.FAIL),
    Rule(_FR, _INSUFFICIENT_BALANCE, _R.INSUFFICIENT_LIQUIDITY, _A.FAIL),
    Rule(_FR, _CANCELED, _R.UNKNOWN, _A.FAIL),
    # ErrAlreadyPaid / ErrPaymentInFlight / ErrPaymentExists: router_server.go returns all
    # three as AlreadyExists. The node's record, not this error, is the answer.
    Rule(_GS, _S.ALREADY_EXISTS, _R.ALREADY_PAID, _A.USE_RECORD, "invoice is already paid"),
    Rule(_GS, _S.ALREADY_EXISTS, _R.UNKNOWN, _A.USE_RECORD, "payment is in transition"),
    Rule(_GS, _S.ALREADY_EXISTS, _R.UNKNOWN, _A.USE_RECORD, "payment already exists"),
    Rule(_GS, _S.ALREADY_EXISTS, _R.UNKNOWN, _A.USE_RECORD),
    # ErrPaymentNotInitiated from TrackPaymentV2 (subscribePayment in router_server.go).
    Rule(_GS, _S.NOT_FOUND, _R.UNKNOWN, _A.NOT_FOUND, "payment isn't initiated"),
    # Request validation in router_backend.go runs before the payment is registered, so these
    # are final for the attempt: nothing was sent.
    Rule(_GS, _S.UNKNOWN, _R.INVOICE_EXPIRED, _A.FAIL, "invoice expired"),
    Rule(_GS, _S.INVALID_ARGUMENT, _R.INCORRECT_DETAILS, _A.FAIL),
    # Transport and server trouble: the request may or may not have reached the node.
    Rule(_GS, _S.UNAVAILABLE, _R.NODE_UNAVAILABLE, _A.UNKNOWN),
    Rule(_GS, _S.DEADLINE_EXCEEDED, _R.TIMEOUT, _A.UNKNOWN),
    Rule(_GS, _S.CANCELLED, _R.UNKNOWN, _A.UNKNOWN),
    # Credentials are wrong: no request is processed, and retrying will not help.
    Rule(_GS, _S.UNAUTHENTICATED, _R.NODE_UNAVAILABLE, _A.FAIL),
    Rule(_GS, _S.PERMISSION_DENIED, _R.NODE_UNAVAILABLE, _A.FAIL),
)

_UNLISTED: Final = Rule(_GS, _S.UNKNOWN, FailureReason.UNKNOWN, Action.UNKNOWN)


def failure_reason_rule(code: int) -> Rule:
    """The row for a FAILED payment's ``failure_reason``; unlisted numbers are final unknowns.

    A FAILED status is terminal in LND whatever the reason, so an unlisted reason still fails.
    """
    for rule in LND_ERRORS:
        if rule.kind is Kind.FAILURE_REASON and rule.code == code:
            return rule
    return Rule(_FR, code, FailureReason.UNKNOWN, Action.FAIL)


def grpc_status_rule(code: grpc.StatusCode, details: str) -> Rule:
    """The row for a failed RPC; unlisted statuses leave the outcome unknown."""
    text = details.strip().lower()
    for rule in LND_ERRORS:
        if (
            rule.kind is Kind.GRPC_STATUS
            and rule.code == code
            and text.startswith(rule.message_prefix)
        ):
            return rule
    return _UNLISTED
