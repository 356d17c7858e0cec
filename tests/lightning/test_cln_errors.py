"""Unit tests for the CLN error tables (no node): one expectation per xpay row, and the rules
that keep the tables honest against CLN's own schemas."""

from __future__ import annotations

import json
import re

import pytest

from services.lightning.cln_errors import (
    ERROR_TABLES,
    PAY_ERRORS,
    XPAY_ERRORS,
    Action,
    ClnErrorRule,
    cln_error_rule,
)
from services.lightning.port import FailureReason as R
from tests.sim.cln_schema import SCHEMAS_DIR, schemas_available

A = Action

# The xpay table as we settled it, row by row: (code, message) -> (finality, reason). Written
# out again here so that a change to any row has to change this list too, on purpose.
XPAY_EXPECTED: list[tuple[int, str, Action, R]] = [
    (-32602, "Invalid bolt11 invoice: bad checksum", A.BAD_REQUEST, R.INCORRECT_DETAILS),
    (-1, "Catchall nonspecific error", A.USE_RECORD, R.UNKNOWN),
    (-3, "Unexpected injectpaymentonion error 200: in progress", A.USE_RECORD, R.UNKNOWN),
    (-4, "Plugin terminated before replying to xpay", A.USE_RECORD, R.UNKNOWN),
    (-5, "lightningd is shutting down", A.USE_RECORD, R.NODE_UNAVAILABLE),
    (203, "Destination said it doesn't know invoice: ...", A.CONFIRM, R.INCORRECT_DETAILS),
    (205, "Failed: We could not find a usable set of paths.", A.FAIL, R.NO_ROUTE),
    (206, "Failed: Fee exceeds our fee budget", A.FAIL, R.NO_ROUTE),
    (207, "Invoice expired 12 seconds ago", A.FAIL, R.INVOICE_EXPIRED),
    (213, "preapproveinvoice declined", A.FAIL, R.UNKNOWN),
    (209, "Timed out after after 3 attempts. ...", A.CONFIRM, R.TIMEOUT),
    (209, "Timed out waiting for blockheight 800000. ", A.CONFIRM, R.TIMEOUT),
    (209, "Failed after 2 attempts. ... Then routing failed: ...", A.CONFIRM, R.UNKNOWN),
    (209, "Could not create payment onion: path too long!", A.CONFIRM, R.UNKNOWN),
    (209, "Reservation failed: '...'", A.CONFIRM, R.UNKNOWN),
    (215, "Failed: We could not find a usable set of paths. Total source ...", A.FAIL,
     R.INSUFFICIENT_LIQUIDITY),
    (218, "Already paid this invoice successfully", A.USE_RECORD, R.ALREADY_PAID),
    (219, "Invoice has already been paid", A.USE_RECORD, R.ALREADY_PAID),
    (220, "Failed: ... Total destination capacity is only ...", A.FAIL, R.NO_ROUTE),
]  # fmt: skip


@pytest.mark.parametrize(("code", "message", "action", "reason"), XPAY_EXPECTED)
def test_every_xpay_row(code: int, message: str, action: Action, reason: R) -> None:
    rule = cln_error_rule("xpay", code, message)
    assert (rule.action, rule.reason) == (action, reason)
    assert rule.source.startswith("https://github.com/ElementsProject/lightning/")


def test_every_xpay_row_is_expected() -> None:
    """No row without an expectation above (and so without a mapping test)."""
    covered = {cln_error_rule("xpay", code, message) for code, message, _, _ in XPAY_EXPECTED}
    assert covered == set(XPAY_ERRORS)


@pytest.mark.parametrize(
    "message",
    ["Timed out after after 1 attempts. ", "timed out after 7 attempts", "  Timed out waiting"],
)
def test_xpay_htlc_timeout_is_unknown_never_failed(message: str) -> None:
    """Regression: xpay answers "Timed out" without waiting for the parts it still has out.

    Mapping it to a final failure would let the executor retry elsewhere while the first
    payment can still settle: paying twice. It stays unknown until ``listpays`` proves it.
    """
    rule = cln_error_rule("xpay", 209, message)
    assert rule.reason is R.TIMEOUT
    assert rule.action is Action.CONFIRM
    assert not rule.final


def test_xpay_final_rows_are_only_codes_raised_before_anything_is_sent() -> None:
    """xpay.c raises these before injecting any part: expired invoice, preapproval, and
    getroutes failing before the first attempt (askrene's code passed on). Every other code
    can come while parts are out, so it must not be final."""
    final = {rule.code for rule in XPAY_ERRORS if rule.final}
    assert final == {-32602, 205, 206, 207, 213, 215, 220}


def test_unlisted_codes_are_unknown_for_every_command() -> None:
    for command in ERROR_TABLES:
        for code in (None, 0, 212, 999, -32700):
            rule = cln_error_rule(command, code, "anything")
            assert rule.action is Action.USE_RECORD and rule.reason is R.UNKNOWN
            assert not rule.final


def test_pay_keeps_its_final_codes() -> None:
    """pay (the opt-in) waits for every part before it answers: its codes stay final."""
    expected = {
        201: R.ALREADY_PAID,
        203: R.INCORRECT_DETAILS,
        205: R.NO_ROUTE,
        206: R.NO_ROUTE,
        207: R.INVOICE_EXPIRED,
        209: R.UNKNOWN,
        210: R.TIMEOUT,
        215: R.INSUFFICIENT_LIQUIDITY,
    }
    for code, reason in expected.items():
        rule = cln_error_rule("pay", code, "whatever pay says")
        assert rule.final and rule.reason is reason, rule
    assert not cln_error_rule("pay", -1).final


def test_waitsendpay_replays_a_part_failure() -> None:
    assert cln_error_rule("waitsendpay", 203).reason is R.INCORRECT_DETAILS
    assert cln_error_rule("waitsendpay", 204).reason is R.NO_ROUTE
    assert cln_error_rule("waitsendpay", 208).action is Action.NOT_FOUND
    assert not cln_error_rule("waitsendpay", 200).final  # still in progress


def _rows_are_unique(table: tuple[ClnErrorRule, ...]) -> bool:
    keys = [(rule.code, rule.message_prefix) for rule in table]
    return len(keys) == len(set(keys))


def test_tables_have_one_row_per_code_and_prefix() -> None:
    for table in ERROR_TABLES.values():
        assert _rows_are_unique(table)
        # A prefixed row must come before the catch-all row of its code, or it never matches.
        for index, rule in enumerate(table):
            if rule.message_prefix:
                assert rule.message_prefix == rule.message_prefix.lower()
                catch_all = [
                    i for i, r in enumerate(table) if r.code == rule.code and not r.message_prefix
                ]
                assert all(index < i for i in catch_all), rule


def _documented_codes(command: str) -> set[int]:
    schema = json.loads((SCHEMAS_DIR / f"{command}.json").read_text("utf-8"))
    return {int(code) for code in re.findall(r"^- (-?\d+):", "\n".join(schema["errors"]), re.M)}


@pytest.mark.skipif(not schemas_available(), reason="CLN schemas not found")
@pytest.mark.parametrize(("command", "table"), [("xpay", XPAY_ERRORS), ("pay", PAY_ERRORS)])
def test_tables_cover_every_code_the_schema_documents(
    command: str, table: tuple[ClnErrorRule, ...]
) -> None:
    documented = _documented_codes(command)
    assert documented, command
    assert documented <= {rule.code for rule in table}
