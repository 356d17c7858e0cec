"""bLIP-52 (LSPS2) ``opening_fee_params``, the opening fee and its promise.

``compute_opening_fee`` follows the spec's C and Rust routines (shared/conformance/lsps/
blip-0052.md, "Computing The opening_fee"): every multiplication and addition is checked
against unsigned 64-bit overflow, the division is by 1_000_000 and rounds up through the
``+ 999_999``. The pseudo-code line above those routines divides by 10_000_000 and says
``+ 9999999``; the conformance README calls both typos, and the routines agree with LSPS0's
ppm definition, so we follow the routines (ADR 0262).

The promise is an HMAC-SHA256 over a fixed serialization of the other seven fields, keyed by
a server secret the caller passes in (never stored in an event, never logged).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from typing import Final

import msgspec

U64_MAX: Final = 2**64 - 1
# bLIP-52: a promise is at most 512 bytes as a JSON string; ours is 64 hex characters.
PROMISE_CHARS_MAX: Final = 512
# LSPS0.ppm: parts per million. The proportional fee is an amount of msat per million msat;
# anything above a million means charging more than the payment, a unit mistake.
PROPORTIONAL_PPM_MAX: Final = 1_000_000
_ROUND_UP: Final = 999_999
_PPM: Final = 1_000_000


class OpeningFeeParams(msgspec.Struct, frozen=True, kw_only=True):
    """One ``opening_fee_params`` entry (bLIP-52 section 1), amounts as integers here.

    On the wire ``*_msat`` are decimal strings (LSPS0.msat); ``schemas/lsps2.py`` converts.
    """

    min_fee_msat: int
    proportional: int  # ppm
    valid_until: str  # ISO 8601, UTC, as sent (the promise commits to the exact string)
    min_lifetime: int  # blocks
    max_client_to_self_delay: int  # blocks
    min_payment_size_msat: int
    max_payment_size_msat: int
    promise: str


def compute_opening_fee(payment_size_msat: int, min_fee_msat: int, proportional: int) -> int | None:
    """The opening fee in msat, or ``None`` when a u64 step overflows (the flow aborts).

    ``max(min_fee_msat, ceil(payment_size_msat * proportional / 1_000_000))`` computed as the
    spec's routine does, overflow checked at each step, including the rounding addition.
    """
    for value in (payment_size_msat, min_fee_msat, proportional):
        if not 0 <= value <= U64_MAX:
            return None
    product = payment_size_msat * proportional
    if product > U64_MAX:
        return None
    rounded = product + _ROUND_UP
    if rounded > U64_MAX:
        return None
    fee = rounded // _PPM
    return max(fee, min_fee_msat)


def _committed_fields(
    *,
    min_fee_msat: int,
    proportional: int,
    valid_until: str,
    min_lifetime: int,
    max_client_to_self_delay: int,
    min_payment_size_msat: int,
    max_payment_size_msat: int,
) -> bytes:
    # Fixed order, one field per line: a change of any field changes the MAC input, and no
    # field can bleed into the next (none of them may contain a newline).
    parts = (
        str(min_fee_msat),
        str(proportional),
        valid_until,
        str(min_lifetime),
        str(max_client_to_self_delay),
        str(min_payment_size_msat),
        str(max_payment_size_msat),
    )
    assert not any("\n" in p for p in parts)
    return ("lsps2-opening-fee-params-v1\n" + "\n".join(parts)).encode()


def make_promise(secret: bytes, params: OpeningFeeParams) -> str:
    """The promise for ``params`` (its own ``promise`` field is ignored)."""
    assert len(secret) >= 32, "the promise key must be at least 256 bits"
    message = _committed_fields(
        min_fee_msat=params.min_fee_msat,
        proportional=params.proportional,
        valid_until=params.valid_until,
        min_lifetime=params.min_lifetime,
        max_client_to_self_delay=params.max_client_to_self_delay,
        min_payment_size_msat=params.min_payment_size_msat,
        max_payment_size_msat=params.max_payment_size_msat,
    )
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def with_promise(secret: bytes, params: OpeningFeeParams) -> OpeningFeeParams:
    return msgspec.structs.replace(params, promise=make_promise(secret, params))


def promise_holds(secret: bytes, params: OpeningFeeParams) -> bool:
    """Whether ``params.promise`` is ours for exactly these fields (constant-time compare)."""
    if len(params.promise) > PROMISE_CHARS_MAX or "\n" in params.valid_until:
        return False
    return hmac.compare_digest(params.promise, make_promise(secret, params))


class FeeMenuEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the fee menu in settings; ``valid_for_s`` sets ``valid_until``."""

    min_fee_msat: int
    proportional: int
    valid_for_s: int
    min_lifetime: int
    max_client_to_self_delay: int
    min_payment_size_msat: int
    max_payment_size_msat: int


def menu_is_ordered(entries: list[FeeMenuEntry]) -> bool:
    """bLIP-52's ordering rule: each entry is dearer than the one before in one of three ways."""
    for before, after in itertools.pairwise(entries):
        larger_min = after.min_fee_msat > before.min_fee_msat
        larger_prop = after.proportional > before.proportional
        same_min = after.min_fee_msat == before.min_fee_msat
        same_prop = after.proportional == before.proportional
        if not (
            (larger_min and same_prop) or (larger_prop and same_min) or (larger_min and larger_prop)
        ):
            return False
    return True


def fee_within_policy(
    *, opening_fee_msat: int, payment_size_msat: int, fee_max_msat: int, fee_max_ppm: int
) -> bool:
    """Our own ceiling on what a payee may be charged: an absolute cap, and a cap relative to
    the payment (a fee that eats most of a contractor's first payment is refused)."""
    if opening_fee_msat > fee_max_msat:
        return False
    # Compare in integers: fee / size <= ppm / 1e6.
    return opening_fee_msat * _PPM <= fee_max_ppm * payment_size_msat
