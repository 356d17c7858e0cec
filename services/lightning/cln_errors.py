"""Core Lightning JSON-RPC error codes -> Corridor's payment taxonomy: one table per command.

Sources (ElementsProject/lightning; summarised in shared/conformance/cln/pay-error-codes.md):

- the numbers: ``common/jsonrpc_errors.h``
  https://github.com/ElementsProject/lightning/blob/master/common/jsonrpc_errors.h
- what each command documents: the ``errors`` section of ``doc/schemas/<command>.json``
  https://github.com/ElementsProject/lightning/tree/master/doc/schemas
- where xpay raises them: ``plugins/xpay/xpay.c``, and askrene's routing codes, which xpay
  passes on when it gives up before its first attempt: ``plugins/askrene/child/explain_failure.c``

Every row says whether the code is *final*. ``FAIL`` and ``BAD_REQUEST`` rows are: the code
alone proves that nothing is, or will be, in flight for this call. A ``CONFIRM`` row names the
reason, but the payment has failed only once the node's record (``listpays``) shows nothing
pending; until then it is unknown. ``USE_RECORD`` rows leave the outcome to the record
entirely. A code missing from a table is ``USE_RECORD`` ("unknown is not failed").

Why xpay needs ``CONFIRM``: unlike ``pay``, xpay answers as soon as it gives up (203 at the
first part the destination refuses, 209 when ``retry_for`` runs out) without waiting for the
parts it still has out; it even injects a part whose route was reserved just before. Its
``listpays`` keeps such a payment ``pending`` while xpay is still at work (``attempt_ongoing``
in ``plugins/xpay/xpay.h``), so the record, not the error, is the proof.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

from services.lightning.port import FailureReason

Command = Literal["xpay", "pay", "waitsendpay"]

_SCHEMAS: Final = "https://github.com/ElementsProject/lightning/blob/master/doc/schemas/"
XPAY_SCHEMA_URL: Final = _SCHEMAS + "xpay.json"
PAY_SCHEMA_URL: Final = _SCHEMAS + "pay.json"
WAITSENDPAY_SCHEMA_URL: Final = _SCHEMAS + "waitsendpay.json"
XPAY_SOURCE_URL: Final = (
    "https://github.com/ElementsProject/lightning/blob/master/plugins/xpay/xpay.c"
)
ASKRENE_SOURCE_URL: Final = (
    "https://github.com/ElementsProject/lightning/blob/master/"
    "plugins/askrene/child/explain_failure.c"
)
ERRORS_HEADER_URL: Final = (
    "https://github.com/ElementsProject/lightning/blob/master/common/jsonrpc_errors.h"
)


class Action(enum.Enum):
    FAIL = "fail"  # final: the payment failed with ``reason``; nothing is in flight
    BAD_REQUEST = "bad_request"  # final: our parameters were refused; nothing was sent
    CONFIRM = "confirm"  # unknown until the record shows nothing pending; then ``reason``
    USE_RECORD = "use_record"  # unknown: the node's record alone decides
    NOT_FOUND = "not_found"  # the node has no such payment (part)


@dataclass(frozen=True, slots=True)
class ClnErrorRule:
    code: int
    name: str  # the constant in common/jsonrpc_errors.h
    action: Action
    reason: FailureReason
    source: str  # where the vendor documents or raises this code for this command
    message_prefix: str = ""  # lower-case prefix of the message; "" matches any message

    @property
    def final(self) -> bool:
        """Whether the code alone proves the payment failed (no record needed)."""
        return self.action in (Action.FAIL, Action.BAD_REQUEST)


_A, _R = Action, FailureReason
_Rule = ClnErrorRule
# Short names for the sources, so that each row fits on one line.
_XPAY, _XPAY_C, _ASKRENE = XPAY_SCHEMA_URL, XPAY_SOURCE_URL, ASKRENE_SOURCE_URL
_PAY, _WAIT, _HEADER = PAY_SCHEMA_URL, WAITSENDPAY_SCHEMA_URL, ERRORS_HEADER_URL


def _generic(source: str) -> tuple[ClnErrorRule, ...]:
    """Codes any command can return (common/jsonrpc_errors.h)."""
    return (
        _Rule(-32602, "JSONRPC2_INVALID_PARAMS", _A.BAD_REQUEST, _R.INCORRECT_DETAILS, source),
        _Rule(-1, "LIGHTNINGD", _A.USE_RECORD, _R.UNKNOWN, source),
        # A plugin failed mid-command (xpay: an unexpected injectpaymentonion error), or died:
        # parts it sent may still be out.
        _Rule(-3, "PLUGIN_ERROR", _A.USE_RECORD, _R.UNKNOWN, _HEADER),
        _Rule(-4, "PLUGIN_TERMINATED", _A.USE_RECORD, _R.UNKNOWN, _HEADER),
        _Rule(-5, "LIGHTNINGD_SHUTDOWN", _A.USE_RECORD, _R.NODE_UNAVAILABLE, _HEADER),
    )


# xpay (v24.11+), the default. Its schema documents -1, 203, 205, 207, 209 and 219; the other
# rows are codes xpay.c raises or passes on from askrene and preapproveinvoice.
XPAY_ERRORS: Final[tuple[ClnErrorRule, ...]] = (
    *_generic(_XPAY),
    # The first part the destination refuses with incorrect_or_unknown_payment_details ends the
    # command; other parts may still be out.
    _Rule(203, "PAY_DESTINATION_PERM_FAIL", _A.CONFIRM, _R.INCORRECT_DETAILS, _XPAY),
    # getroutes failed before the first attempt: askrene's code is passed on and no HTLC was
    # ever sent (after an attempt, a routing failure comes back as 209 instead).
    _Rule(205, "PAY_ROUTE_NOT_FOUND", _A.FAIL, _R.NO_ROUTE, _XPAY),
    _Rule(206, "PAY_ROUTE_TOO_EXPENSIVE", _A.FAIL, _R.NO_ROUTE, _XPAY_C),
    _Rule(215, "PAY_INSUFFICIENT_FUNDS", _A.FAIL, _R.INSUFFICIENT_LIQUIDITY, _ASKRENE),
    _Rule(220, "PAY_DESTINATION_INSUFFICIENT_CAPACITY", _A.FAIL, _R.NO_ROUTE, _ASKRENE),
    # Checked against the invoice before anything is sent (xpay_core).
    _Rule(207, "PAY_INVOICE_EXPIRED", _A.FAIL, _R.INVOICE_EXPIRED, _XPAY),
    # preapproveinvoice (the signer's policy) refused before anything was sent.
    _Rule(213, "PAY_INVOICE_PREAPPROVAL_DECLINED", _A.FAIL, _R.UNKNOWN, _XPAY_C),
    # "Timed out after N attempts": retry_for ran out when xpay wanted to route again, or an
    # HTLC timed out. Parts may still be out: unknown, never failed, until the record says so.
    _Rule(209, "PAY_UNSPECIFIED_ERROR", _A.CONFIRM, _R.TIMEOUT, _XPAY_C, "timed out"),
    # "Other payment error": routing failed after attempts, no onion, a reservation failed.
    _Rule(209, "PAY_UNSPECIFIED_ERROR", _A.CONFIRM, _R.UNKNOWN, _XPAY),
    # "Already paid": our node paid this invoice before; its record holds the preimage. xpay
    # releases before v26.06 wrap lightningd's 219 in 218 ("Already paid this invoice
    # successfully").
    _Rule(218, "PAY_INJECTPAYMENTONION_FAILED", _A.USE_RECORD, _R.ALREADY_PAID, _XPAY_C),
    _Rule(219, "PAY_INJECTPAYMENTONION_ALREADY_PAID", _A.USE_RECORD, _R.ALREADY_PAID, _XPAY),
)  # fmt: skip

# pay (deprecated in v26.06, removed in v27.03), the opt-in. pay waits for every part before it
# answers, so its failure codes are final.
PAY_ERRORS: Final[tuple[ClnErrorRule, ...]] = (
    *_generic(_PAY),
    _Rule(200, "PAY_IN_PROGRESS", _A.USE_RECORD, _R.UNKNOWN, _HEADER),
    # The hash is taken (paid or pending) with other parameters: this request cannot be
    # honoured, and nothing was sent for it.
    _Rule(201, "PAY_RHASH_ALREADY_USED", _A.FAIL, _R.ALREADY_PAID, _PAY),
    _Rule(202, "PAY_UNPARSEABLE_ONION", _A.USE_RECORD, _R.UNKNOWN, _HEADER),
    _Rule(203, "PAY_DESTINATION_PERM_FAIL", _A.FAIL, _R.INCORRECT_DETAILS, _PAY),
    _Rule(204, "PAY_TRY_OTHER_ROUTE", _A.FAIL, _R.NO_ROUTE, _HEADER),
    _Rule(205, "PAY_ROUTE_NOT_FOUND", _A.FAIL, _R.NO_ROUTE, _PAY),
    # The taxonomy has no "too expensive": no route within the fee limit.
    _Rule(206, "PAY_ROUTE_TOO_EXPENSIVE", _A.FAIL, _R.NO_ROUTE, _PAY),
    _Rule(207, "PAY_INVOICE_EXPIRED", _A.FAIL, _R.INVOICE_EXPIRED, _PAY),
    _Rule(208, "PAY_NO_SUCH_PAYMENT", _A.NOT_FOUND, _R.UNKNOWN, _HEADER),
    # Failed for a reason the node did not keep: final, reason unknown.
    _Rule(209, "PAY_UNSPECIFIED_ERROR", _A.FAIL, _R.UNKNOWN, _HEADER),
    # pay gave up after retry_for with no attempt left in flight ("Payment timed out without a
    # payment in progress").
    _Rule(210, "PAY_STOPPED_RETRYING", _A.FAIL, _R.TIMEOUT, _PAY),
    _Rule(211, "PAY_STATUS_UNEXPECTED", _A.USE_RECORD, _R.UNKNOWN, _HEADER),
    _Rule(215, "PAY_INSUFFICIENT_FUNDS", _A.FAIL, _R.INSUFFICIENT_LIQUIDITY, _HEADER),
    _Rule(216, "PAY_UNREACHABLE", _A.FAIL, _R.NO_ROUTE, _HEADER),
    _Rule(217, "PAY_USER_ERROR", _A.BAD_REQUEST, _R.INCORRECT_DETAILS, _HEADER),
    _Rule(219, "PAY_INJECTPAYMENTONION_ALREADY_PAID", _A.USE_RECORD, _R.ALREADY_PAID, _HEADER),
    _Rule(220, "PAY_DESTINATION_INSUFFICIENT_CAPACITY", _A.FAIL, _R.NO_ROUTE, _HEADER),
)  # fmt: skip

# waitsendpay replays what happened to one part (lightningd/pay.c). "FAIL" here says that part
# failed and why; whether the *payment* failed is listpays' answer, never this one's. The same
# table maps the errors of the node's other calls (listpays, getinfo, invoice...).
WAITSENDPAY_ERRORS: Final[tuple[ClnErrorRule, ...]] = (
    *_generic(_WAIT),
    _Rule(200, "PAY_IN_PROGRESS", _A.USE_RECORD, _R.UNKNOWN, _WAIT),
    _Rule(202, "PAY_UNPARSEABLE_ONION", _A.FAIL, _R.UNKNOWN, _WAIT),
    _Rule(203, "PAY_DESTINATION_PERM_FAIL", _A.FAIL, _R.INCORRECT_DETAILS, _WAIT),
    _Rule(204, "PAY_TRY_OTHER_ROUTE", _A.FAIL, _R.NO_ROUTE, _WAIT),
    _Rule(208, "PAY_NO_SUCH_PAYMENT", _A.NOT_FOUND, _R.UNKNOWN, _WAIT),
    _Rule(209, "PAY_UNSPECIFIED_ERROR", _A.FAIL, _R.UNKNOWN, _WAIT),
)  # fmt: skip

ERROR_TABLES: Final[dict[Command, tuple[ClnErrorRule, ...]]] = {
    "xpay": XPAY_ERRORS,
    "pay": PAY_ERRORS,
    "waitsendpay": WAITSENDPAY_ERRORS,
}


def cln_error_rule(command: Command, code: int | None, message: str = "") -> ClnErrorRule:
    """The row for ``code`` (and its message) from ``command``; unlisted codes are unknown."""
    text = message.strip().lower()
    for rule in ERROR_TABLES[command]:
        if rule.code == code and text.startswith(rule.message_prefix):
            return rule
    return _Rule(
        0 if code is None else code, "UNLISTED", Action.USE_RECORD, FailureReason.UNKNOWN, ""
    )
