"""BOLT 11 invoices: decode (with the spec's reader rules) and encode (signed by a node key).

Pure code: no I/O, no grpc or pyln import, so the engine's intake can validate a
``payment_request`` with it. Decoding uses ``bolt11_reader`` (the hot path; ADR 0006), which
applies every reader rule of the spec; the ``bolt11`` package is the oracle it is tested
against. Spec: https://github.com/lightning/bolts/blob/master/11-payment-encoding.md
"""

from __future__ import annotations

import enum
import functools
import hashlib

import bech32
import coincurve
import msgspec

from services.bolt11.reader import ReaderError, read_invoice
from services.bolt11.reader import peek_invoice as _peek
from services.lightning.port import DecodedInvoice

# HRP currency prefix -> network name used across Corridor (port.NodeInfo.network).
CURRENCY_TO_NETWORK = {"bc": "mainnet", "tb": "testnet", "tbs": "signet", "bcrt": "regtest"}
NETWORK_TO_CURRENCY = {network: currency for currency, network in CURRENCY_TO_NETWORK.items()}

# Even (mandatory) feature bits a reader knows in invoice context (BOLT 9): var_onion_optin,
# payment_secret, basic_mpp, option_route_blinding, option_attribution_data,
# option_payment_metadata. BOLT 11 says a reader MUST NOT pay an invoice with an unknown even bit.
KNOWN_EVEN_FEATURE_BITS = frozenset({8, 14, 16, 24, 36, 48})

# BOLT 11 payment requests are far longer than bech32's 90-character limit, but a limit keeps a
# hostile string from costing unbounded work. 7089 is the longest string a 1023-u5 tagged
# field set can produce comfortably; LND uses the same ceiling.
PAYMENT_REQUEST_LENGTH_MAX = 7089

DEFAULT_MIN_FINAL_CLTV_EXPIRY = 18
# Decoding costs milliseconds (the package works bit by bit), and the same request is decoded
# by intake, adapter and simulator. Results are immutable, so a bounded memo is safe.
DECODE_CACHE_ENTRIES_MAX = 4096


class InvoiceErrorCode(enum.StrEnum):
    MALFORMED = "malformed"  # not bech32, bad checksum, mixed case, too long
    BAD_AMOUNT = "bad_amount"  # unparseable HRP amount or sub-millisatoshi precision
    BAD_SIGNATURE = "bad_signature"
    MISSING_FIELD = "missing_field"  # no payment hash / payment secret / description
    UNKNOWN_FEATURE = "unknown_feature"  # unknown even (mandatory) feature bit
    UNKNOWN_NETWORK = "unknown_network"


class InvoiceDecodeError(ValueError):
    """A payment request that a BOLT 11 reader must reject."""

    def __init__(self, code: InvoiceErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


def decode_invoice(payment_request: str) -> DecodedInvoice:
    """Decode and validate a BOLT 11 payment request; raise ``InvoiceDecodeError`` if invalid."""
    return _decode_cached(payment_request.strip())


@functools.lru_cache(maxsize=DECODE_CACHE_ENTRIES_MAX)
def _decode_cached(text: str) -> DecodedInvoice:
    if len(text) > PAYMENT_REQUEST_LENGTH_MAX:
        raise InvoiceDecodeError(
            InvoiceErrorCode.MALFORMED,
            f"payment request is {len(text)} characters, limit {PAYMENT_REQUEST_LENGTH_MAX}",
        )
    if text.startswith(("lightning:", "LIGHTNING:")):
        text = text[len("lightning:") :]
    # The package lower-cases before checking, so mixed case would slip through; BOLT 11
    # (via bech32) says a reader MUST fail on mixed case.
    if text != text.lower() and text != text.upper():
        raise InvoiceDecodeError(InvoiceErrorCode.MALFORMED, "mixed-case payment request")
    try:
        read = read_invoice(text, known_even_features=KNOWN_EVEN_FEATURE_BITS)
    except ReaderError as exc:
        raise InvoiceDecodeError(InvoiceErrorCode(exc.code), str(exc)) from None
    network = CURRENCY_TO_NETWORK.get(read.currency)
    if network is None:
        raise InvoiceDecodeError(
            InvoiceErrorCode.UNKNOWN_NETWORK, f"unknown currency {read.currency!r}"
        )
    return DecodedInvoice(
        payment_request=text,
        payment_hash=read.payment_hash,
        destination=read.payee,
        amount_msat=read.amount_msat,
        network=network,
        created_at_s=read.timestamp_s,
        expiry_s=read.expiry_s,
        description=read.description,
        min_final_cltv_expiry=read.min_final_cltv_expiry,
    )


def peek_invoice(payment_request: str) -> tuple[str, int | None]:
    """(payment hash, amount_msat) of an invoice already validated upstream; no signature check.

    Raises ``InvoiceDecodeError`` if the string is not shaped like a BOLT 11 invoice at all.
    """
    try:
        return _peek(payment_request.strip())
    except ReaderError as exc:
        raise InvoiceDecodeError(InvoiceErrorCode(exc.code), str(exc)) from None


class InvoiceFacts(msgspec.Struct, frozen=True):
    payment_hash: str
    amount_msat: int | None


def invoice_facts(payment_request: str, expected_hash: str | None) -> InvoiceFacts:
    """Hash and amount for paying: fully decoded and verified, unless the caller names the
    hash it expects (it validated the invoice already, as the engine's intake does); then a
    quick read suffices, and the node itself verifies the invoice before paying."""
    if expected_hash is None:
        decoded = decode_invoice(payment_request)
        return InvoiceFacts(decoded.payment_hash, decoded.amount_msat)
    payment_hash, amount_msat = peek_invoice(payment_request)
    return InvoiceFacts(payment_hash, amount_msat)


def encode_invoice(
    *,
    privkey: bytes,
    network: str,
    payment_hash: str,
    payment_secret: str,
    amount_msat: int | None,
    description: str,
    created_at_s: int,
    expiry_s: int,
    min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY,
    route_hint: tuple[str, str, int, int, int] | None = None,
) -> str:
    """Encode a BOLT 11 invoice signed with ``privkey`` (32-byte secp256k1 secret).

    Written directly on bech32 + coincurve rather than through the ``bolt11`` package: the
    package's bit-by-bit encoder costs milliseconds per invoice (the simulator creates
    thousands) and mis-encodes multiples of 1000 BTC. Tests decode our output with the
    package to keep the two in agreement.
    """
    currency = NETWORK_TO_CURRENCY.get(network)
    if currency is None:
        raise ValueError(f"unknown network {network!r}")
    if amount_msat is not None and amount_msat <= 0:
        raise ValueError("amount_msat must be positive or None")
    if not 0 <= created_at_s < 2**35:
        raise ValueError("created_at_s does not fit BOLT 11's 35-bit timestamp")
    hrp = "ln" + currency + ("" if amount_msat is None else _hrp_amount(amount_msat))
    data = _int_to_u5(created_at_s, width=7)
    data += _tagged("p", _bytes_to_u5(bytes.fromhex(payment_hash)))
    data += _tagged("s", _bytes_to_u5(bytes.fromhex(payment_secret)))
    data += _tagged("d", _bytes_to_u5(description.encode()))
    data += _tagged("x", _int_to_u5(expiry_s))
    data += _tagged("c", _int_to_u5(min_final_cltv_expiry))
    if route_hint is not None:
        data += _tagged("r", _bytes_to_u5(_route_hop(*route_hint)))
    # var_onion_optin (bit 8) and payment_secret (bit 14), required by current implementations.
    data += _tagged("9", _int_to_u5((1 << 8) | (1 << 14)))
    signing_data = hrp.encode() + _u5_to_bytes(data)
    # sign_recoverable hashes with SHA-256: the signature covers sha256(hrp || data), per spec.
    signature = coincurve.PrivateKey(privkey).sign_recoverable(signing_data)
    encoded: str | None = bech32.bech32_encode(hrp, data + _bytes_to_u5(signature))
    assert encoded is not None
    return encoded


def _route_hop(
    pubkey: str, short_channel_id: str, fee_base_msat: int, fee_ppm: int, cltv_delta: int
) -> bytes:
    """One BOLT 11 ``r`` hop: pubkey (33), short_channel_id (8), fee_base_msat (4),
    fee_proportional_millionths (4), cltv_expiry_delta (2), all big-endian."""
    block, tx, out = (int(part) for part in short_channel_id.split("x"))
    scid = (block << 40) | (tx << 16) | out
    return (
        bytes.fromhex(pubkey)
        + scid.to_bytes(8, "big")
        + fee_base_msat.to_bytes(4, "big")
        + fee_ppm.to_bytes(4, "big")
        + cltv_delta.to_bytes(2, "big")
    )


def _hrp_amount(amount_msat: int) -> str:
    """Shortest exact BOLT 11 amount: 1 msat is 10 pico-bitcoin."""
    pico_btc = amount_msat * 10
    for unit, scale in (("", 10**12), ("m", 10**9), ("u", 10**6), ("n", 10**3)):
        if pico_btc % scale == 0:
            return f"{pico_btc // scale}{unit}"
    return f"{pico_btc}p"


def _tagged(tag: str, field: list[int]) -> list[int]:
    if len(field) >= 1024:  # data_length is 10 bits
        raise ValueError(f"field {tag!r} is too long for BOLT 11")
    return [bech32.CHARSET.index(tag), len(field) >> 5, len(field) & 31, *field]


def _int_to_u5(value: int, width: int | None = None) -> list[int]:
    words = []
    while value:
        words.append(value & 31)
        value >>= 5
    words.reverse()
    if width is not None:
        assert len(words) <= width
        words = [0] * (width - len(words)) + words
    return words or [0]


def _bytes_to_u5(data: bytes) -> list[int]:
    words = bech32.convertbits(data, 8, 5, True)
    assert words is not None
    return words


def _u5_to_bytes(words: list[int]) -> bytes:
    data = bech32.convertbits(words, 5, 8, True)
    assert data is not None
    return bytes(data)


def pubkey_of(privkey: bytes) -> str:
    """Compressed secp256k1 public key, hex, of a 32-byte secret."""
    return coincurve.PrivateKey(privkey).public_key.format(compressed=True).hex()


def payment_hash_of(preimage_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(preimage_hex)).hexdigest()
