"""Unit tests for the LND error table and the protobuf <-> port conversions (no network)."""

from __future__ import annotations

import hashlib
from typing import Any

import grpc
import pytest

from services.lightning import lnd_convert
from services.lightning.lnd import parse_lnd_uri
from services.lightning.lnd_errors import (
    LND_ERRORS,
    Action,
    Kind,
    failure_reason_rule,
    grpc_status_rule,
)
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.port import FailureReason, PaymentFailed, PaymentInFlight, PaymentSucceeded


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (ln.FAILURE_REASON_TIMEOUT, FailureReason.TIMEOUT),
        (ln.FAILURE_REASON_NO_ROUTE, FailureReason.NO_ROUTE),
        (ln.FAILURE_REASON_ERROR, FailureReason.UNKNOWN),
        (ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS, FailureReason.INCORRECT_DETAILS),
        (ln.FAILURE_REASON_INSUFFICIENT_BALANCE, FailureReason.INSUFFICIENT_LIQUIDITY),
        (ln.FAILURE_REASON_CANCELED, FailureReason.UNKNOWN),
        (99, FailureReason.UNKNOWN),  # a reason from a future lnd
    ],
)
def test_every_failure_reason_is_final(code: int, reason: FailureReason) -> None:
    rule = failure_reason_rule(code)
    assert rule.reason is reason
    assert rule.action is Action.FAIL


def test_table_covers_every_compiled_failure_reason() -> None:
    listed = {rule.code for rule in LND_ERRORS if rule.kind is Kind.FAILURE_REASON}
    compiled = set(ln.PaymentFailureReason.values()) - {ln.FAILURE_REASON_NONE}
    assert compiled <= listed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("invoice is already paid", FailureReason.ALREADY_PAID),
        ("payment is in transition", FailureReason.UNKNOWN),
        ("payment already exists", FailureReason.UNKNOWN),
        ("something newer", FailureReason.UNKNOWN),
    ],
)
def test_already_exists_always_answers_from_the_record(text: str, reason: FailureReason) -> None:
    rule = grpc_status_rule(grpc.StatusCode.ALREADY_EXISTS, text)
    assert rule.action is Action.USE_RECORD
    assert rule.reason is reason


def test_transport_errors_leave_the_outcome_unknown() -> None:
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert grpc_status_rule(code, "").action is Action.UNKNOWN
    # An unrecognised Unknown-status text is not a failure either.
    assert grpc_status_rule(grpc.StatusCode.UNKNOWN, "disk full").action is Action.UNKNOWN
    assert grpc_status_rule(grpc.StatusCode.INTERNAL, "boom").action is Action.UNKNOWN


def test_expired_invoice_and_not_found() -> None:
    expired = grpc_status_rule(grpc.StatusCode.UNKNOWN, "invoice expired. Valid until 12:00")
    assert (expired.reason, expired.action) == (FailureReason.INVOICE_EXPIRED, Action.FAIL)
    missing = grpc_status_rule(grpc.StatusCode.NOT_FOUND, "payment isn't initiated")
    assert missing.action is Action.NOT_FOUND


@pytest.mark.parametrize(
    "scid", ["0x0x0", "101x1234x1", "700000x1500x3", "16777215x16777215x65535"]
)
def test_short_channel_id_round_trip(scid: str) -> None:
    assert lnd_convert.scid_to_str(lnd_convert.scid_from_str(scid)) == scid


@pytest.mark.parametrize("bad", ["", "1x2", "1x2x3x4", "16777216x0x0", "1x-1x0", "axbxc"])
def test_malformed_short_channel_id_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        lnd_convert.scid_from_str(bad)


@pytest.mark.parametrize(
    ("prefix", "network"),
    [("lnbcrt1", "regtest"), ("lnbc1", "mainnet"), ("lntbs1", "signet"), ("lntb1", "testnet")],
)
def test_network_of_invoice_prefix(prefix: str, network: str) -> None:
    assert lnd_convert.network_of(prefix + "qqqq") == network
    assert lnd_convert.network_of((prefix + "qqqq").upper()) == network


PREIMAGE = "cd" * 32
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()


def _payment(**fields: Any) -> ln.Payment:
    base: dict[str, Any] = {"payment_hash": PAYMENT_HASH, "value_msat": 5_000, "fee_msat": 7}
    base.update(fields)
    return ln.Payment(**base)


def test_payment_result_by_status() -> None:
    hop = ln.Hop(chan_id=lnd_convert.scid_from_str("101x2x0"), pub_key="02" + "11" * 32)
    hop.amt_to_forward_msat, hop.fee_msat = 5_000, 7
    htlc = ln.HTLCAttempt(status=ln.HTLCAttempt.SUCCEEDED, route=ln.Route(hops=[hop]))
    succeeded = lnd_convert.payment_result(
        _payment(status=ln.Payment.SUCCEEDED, payment_preimage=PREIMAGE, htlcs=[htlc])
    )
    assert isinstance(succeeded, PaymentSucceeded)
    assert (succeeded.amount_msat, succeeded.fee_msat) == (5_000, 7)
    assert succeeded.hops[0].channel_id == "101x2x0"

    failed = lnd_convert.payment_result(
        _payment(status=ln.Payment.FAILED, failure_reason=ln.FAILURE_REASON_NO_ROUTE)
    )
    assert isinstance(failed, PaymentFailed)
    assert failed.reason is FailureReason.NO_ROUTE
    assert failed.detail == "FAILURE_REASON_NO_ROUTE"

    in_flight = lnd_convert.payment_result(_payment(status=ln.Payment.IN_FLIGHT))
    assert in_flight == PaymentInFlight(payment_hash=PAYMENT_HASH, amount_msat=5_000)
    # INITIATED: registered, no HTLC yet. UNKNOWN (0) is deprecated. Neither is terminal.
    for status in (ln.Payment.INITIATED, ln.Payment.UNKNOWN):
        assert lnd_convert.payment_result(_payment(status=status)) == in_flight


@pytest.mark.parametrize("preimage", ["00" * 32, "ef" * 32, "not hex", ""])
def test_success_with_a_preimage_that_does_not_match_is_not_trusted(preimage: str) -> None:
    claimed = _payment(status=ln.Payment.SUCCEEDED, payment_preimage=preimage)
    assert isinstance(lnd_convert.payment_result(claimed), PaymentInFlight)


def test_parse_lnd_uri() -> None:
    host, port, cert, macaroon = parse_lnd_uri(
        "lnd://127.0.0.1:10009?tlscert=/a/tls.cert&macaroon=/a/admin.macaroon"
    )
    assert (host, port, str(cert), str(macaroon)) == (
        "127.0.0.1",
        10009,
        "/a/tls.cert",
        "/a/admin.macaroon",
    )
    for bad in (
        "cln://127.0.0.1:1?tlscert=a&macaroon=b",
        "lnd://127.0.0.1?tlscert=a&macaroon=b",
        "lnd://127.0.0.1:1?tlscert=a",
        "lnd://127.0.0.1:1?tlscert=a&tlscert=b&macaroon=c",
    ):
        with pytest.raises(ValueError):
            parse_lnd_uri(bad)
