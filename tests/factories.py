"""Builders for test messages. Deterministic: keys and hashes derive from a label."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from services.bolt11.codec import encode_invoice

PAYEE_KEY = hashlib.sha256(b"corridor-test-payee").digest()


def invoice(
    *,
    amount_msat: int | None = 50_000,
    network: str = "regtest",
    label: str = "inv",
    created_at_s: int | None = None,
    expiry_s: int = 3600,
) -> tuple[str, str, str]:
    """(payment_request, payment_hash, preimage) signed by a fixed test key."""
    preimage = hashlib.sha256(f"preimage:{label}".encode()).hexdigest()
    payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    bolt11 = encode_invoice(
        privkey=PAYEE_KEY,
        network=network,
        payment_hash=payment_hash,
        payment_secret=hashlib.sha256(f"secret:{label}".encode()).hexdigest(),
        amount_msat=amount_msat,
        description=f"test {label}",
        created_at_s=int(time.time()) if created_at_s is None else created_at_s,
        expiry_s=expiry_s,
    )
    return bolt11, payment_hash, preimage


def submit(
    *,
    key: str = "k-1",
    caller_id: str = "alice",
    kind: str = "service",
    amount_msat: int = 50_000,
    corridor: str = "us-eu",
    payment_request: str | None = None,
    destination: str | None = "02" + "11" * 32,
    max_fee_msat: int = 1_000,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "SubmitPaymentIntent",
        "version": 1,
        "idempotency_key": key,
        "caller": {"id": caller_id, "kind": kind},
        "corridor": corridor,
        "amount_msat": amount_msat,
        "max_fee_msat": max_fee_msat,
        **extra,
    }
    if payment_request is not None:
        body["payment_request"] = payment_request
    elif destination is not None:
        body["destination"] = destination
    return body
