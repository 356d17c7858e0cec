"""``routerrpc.SendPaymentRequest`` validated and unpacked the way lnd does it.

Rules and texts follow ``extractIntentFromSendRequest`` in lnd's
``lnrpc/routerrpc/router_backend.go`` and ``UnmarshallAmt`` in ``lnrpc/marshall_utils.go``
(https://github.com/lightningnetwork/lnd/tree/master/lnrpc). lnd returns these as plain Go
errors, which a gRPC client sees as status ``UNKNOWN`` with the text.

``cancelable`` is accepted and has no effect here: it only stops lnd from trying further
routes once the client closes the stream, and a simulated payment locks its one HTLC before
the stream opens (HTLCs already in flight settle or fail either way).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from services.lightning.lnd_convert import KEYSEND_RECORD_TYPE, MSAT_PER_SAT, scid_to_str
from services.sim.errors import InvalidPaymentRequest

# routing.DefaultPayAttemptTimeout, used when timeout_seconds is 0 (payment-semantics.md).
DEFAULT_PAY_ATTEMPT_TIMEOUT_S: Final = 60
PUBKEY_BYTES: Final = 33
HASH_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class SendArgs:
    payment_request: str | None
    destination: str | None  # pubkey hex (keysend)
    amount_msat: int | None
    payment_hash: str | None
    preimage: str | None
    max_fee_msat: int
    timeout_s: float
    no_inflight_updates: bool
    # ``outgoing_chan_ids`` (as BLOCKxTXxOUT), ``last_hop_pubkey`` (hex), ``allow_self_payment``.
    outgoing_channels: frozenset[str] = frozenset()
    last_hop_pubkey: str | None = None
    allow_self_payment: bool = False


def _invalid(message: str) -> InvalidPaymentRequest:
    return InvalidPaymentRequest("invalid_request", message)


def _msat(sat: int, msat: int) -> int:
    if sat and msat:
        raise _invalid("sat and msat arguments are mutually exclusive")
    if sat < 0 or msat < 0:
        raise _invalid("amount cannot be negative")
    return sat * MSAT_PER_SAT + msat


def send_args(request: Any, network: Any) -> SendArgs:
    """Check ``request`` like lnd; raises ``InvalidPaymentRequest`` with lnd's text."""
    amount_msat = _msat(request.amt, request.amt_msat)
    max_fee_msat = _msat(request.fee_limit_sat, request.fee_limit_msat)
    if request.timeout_seconds < 0:
        raise _invalid("timeout_seconds must be positive")
    # lnd: ``route.NewVertexFromBytes(LastHopPubkey)`` when set (router_backend.go).
    if request.last_hop_pubkey and len(request.last_hop_pubkey) != PUBKEY_BYTES:
        raise _invalid(
            f"invalid vertex length of {len(request.last_hop_pubkey)}, want {PUBKEY_BYTES}"
        )
    common = {
        "outgoing_channels": frozenset(scid_to_str(c) for c in request.outgoing_chan_ids),
        "last_hop_pubkey": request.last_hop_pubkey.hex() or None,
        "allow_self_payment": request.allow_self_payment,
        "max_fee_msat": max_fee_msat,
        "timeout_s": float(request.timeout_seconds or DEFAULT_PAY_ATTEMPT_TIMEOUT_S),
        "no_inflight_updates": request.no_inflight_updates,
    }
    if request.payment_request:
        if request.dest:
            raise _invalid("dest and payment_request cannot appear together")
        if request.payment_hash:
            raise _invalid("payment_hash and payment_request cannot appear together")
        if request.final_cltv_delta:
            raise _invalid("final_cltv_delta and payment_request cannot appear together")
        decoded = network.decode(request.payment_request)
        if decoded.amount_msat is not None and amount_msat:
            raise _invalid("amount must not be specified when paying a non-zero amount invoice")
        if decoded.amount_msat is None and not amount_msat:
            raise _invalid("amount must be specified when paying a zero amount invoice")
        return SendArgs(
            payment_request=request.payment_request,
            destination=None,
            amount_msat=amount_msat or None,
            payment_hash=None,
            preimage=None,
            **common,
        )
    if len(request.dest) != PUBKEY_BYTES:
        raise _invalid(f"invalid vertex length of {len(request.dest)}, want {PUBKEY_BYTES}")
    if not amount_msat:
        raise _invalid("amount must be specified")
    preimage = request.dest_custom_records.get(KEYSEND_RECORD_TYPE)
    payment_hash = request.payment_hash
    if not payment_hash and preimage is not None:
        payment_hash = hashlib.sha256(preimage).digest()
    if len(payment_hash) != HASH_BYTES:
        raise _invalid(f"invalid hash length of {len(payment_hash)}, want {HASH_BYTES}")
    return SendArgs(
        payment_request=None,
        destination=request.dest.hex(),
        amount_msat=amount_msat,
        payment_hash=payment_hash.hex(),
        preimage=None if preimage is None else preimage.hex(),
        **common,
    )
