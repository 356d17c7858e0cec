"""Core Lightning JSON-RPC error codes -> Corridor's payment taxonomy, in one table.

Codes: common/jsonrpc_errors.h, meanings per command in doc/schemas/{pay,xpay,keysend,sendpay,
waitsendpay}.json:
https://github.com/ElementsProject/lightning/blob/master/common/jsonrpc_errors.h
https://github.com/ElementsProject/lightning/tree/master/doc/schemas
(summary: shared/conformance/cln/pay-error-codes.md).

Only codes that say the payment is over and nothing is in flight are final. Anything else, and
any code missing here, sends the adapter to the node's own record (unknown is not failed).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from services.lightning.port import FailureReason


class Action(enum.Enum):
    FAIL = "fail"  # final: the payment failed with ``reason``
    USE_RECORD = "use_record"  # outcome unknown here: ask listpays / waitsendpay
    NOT_FOUND = "not_found"  # the node has no such payment
    BAD_REQUEST = "bad_request"  # our parameters were refused; nothing was sent


@dataclass(frozen=True, slots=True)
class ClnErrorRule:
    code: int
    name: str
    action: Action
    reason: FailureReason


CLN_ERROR_RULES: Final[dict[int, ClnErrorRule]] = {
    rule.code: rule
    for rule in (
        ClnErrorRule(
            -32602, "JSONRPC2_INVALID_PARAMS", Action.BAD_REQUEST, FailureReason.INCORRECT_DETAILS
        ),
        ClnErrorRule(-1, "LIGHTNINGD", Action.USE_RECORD, FailureReason.UNKNOWN),
        ClnErrorRule(-3, "PLUGIN_ERROR", Action.USE_RECORD, FailureReason.UNKNOWN),
        ClnErrorRule(-4, "PLUGIN_TERMINATED", Action.USE_RECORD, FailureReason.UNKNOWN),
        ClnErrorRule(-5, "LIGHTNINGD_SHUTDOWN", Action.USE_RECORD, FailureReason.NODE_UNAVAILABLE),
        ClnErrorRule(200, "PAY_IN_PROGRESS", Action.USE_RECORD, FailureReason.UNKNOWN),
        # The hash is taken (paid or pending) with other parameters: this request cannot be
        # honoured, and nothing was sent for it.
        ClnErrorRule(201, "PAY_RHASH_ALREADY_USED", Action.FAIL, FailureReason.ALREADY_PAID),
        ClnErrorRule(202, "PAY_UNPARSEABLE_ONION", Action.USE_RECORD, FailureReason.UNKNOWN),
        ClnErrorRule(
            203, "PAY_DESTINATION_PERM_FAIL", Action.FAIL, FailureReason.INCORRECT_DETAILS
        ),
        ClnErrorRule(204, "PAY_TRY_OTHER_ROUTE", Action.FAIL, FailureReason.NO_ROUTE),
        ClnErrorRule(205, "PAY_ROUTE_NOT_FOUND", Action.FAIL, FailureReason.NO_ROUTE),
        # The taxonomy has no "too expensive": no route within the fee limit.
        ClnErrorRule(206, "PAY_ROUTE_TOO_EXPENSIVE", Action.FAIL, FailureReason.NO_ROUTE),
        ClnErrorRule(207, "PAY_INVOICE_EXPIRED", Action.FAIL, FailureReason.INVOICE_EXPIRED),
        ClnErrorRule(208, "PAY_NO_SUCH_PAYMENT", Action.NOT_FOUND, FailureReason.UNKNOWN),
        # Failed for a reason the node did not keep: final, reason unknown.
        ClnErrorRule(209, "PAY_UNSPECIFIED_ERROR", Action.FAIL, FailureReason.UNKNOWN),
        # pay/keysend gave up after retry_for with no attempt left in flight.
        ClnErrorRule(210, "PAY_STOPPED_RETRYING", Action.FAIL, FailureReason.TIMEOUT),
        ClnErrorRule(211, "PAY_STATUS_UNEXPECTED", Action.USE_RECORD, FailureReason.UNKNOWN),
        ClnErrorRule(
            215, "PAY_INSUFFICIENT_FUNDS", Action.FAIL, FailureReason.INSUFFICIENT_LIQUIDITY
        ),
        ClnErrorRule(216, "PAY_UNREACHABLE", Action.FAIL, FailureReason.NO_ROUTE),
        ClnErrorRule(217, "PAY_USER_ERROR", Action.BAD_REQUEST, FailureReason.INCORRECT_DETAILS),
        # xpay: "already paid" successfully; the node's record holds the preimage.
        ClnErrorRule(
            219,
            "PAY_INJECTPAYMENTONION_ALREADY_PAID",
            Action.USE_RECORD,
            FailureReason.ALREADY_PAID,
        ),
        ClnErrorRule(
            220, "PAY_DESTINATION_INSUFFICIENT_CAPACITY", Action.FAIL, FailureReason.NO_ROUTE
        ),
    )
}

_UNLISTED = ClnErrorRule(0, "UNLISTED", Action.USE_RECORD, FailureReason.UNKNOWN)


def cln_error_rule(code: int | None) -> ClnErrorRule:
    """The rule for a CLN error code; unlisted codes go to the node's record."""
    if code is None:
        return _UNLISTED
    return CLN_ERROR_RULES.get(code, _UNLISTED)
