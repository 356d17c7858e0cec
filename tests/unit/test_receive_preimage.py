"""Receive preimages (ADR 0221): the same intent and secret give the same preimage (a retried
order asks for the same hash), another secret or intent another one, and the follower reads the
intent back from a settled preimage only with the secret that derived it."""

from __future__ import annotations

import hashlib

import pytest

from services.engine.ids import receive_id_for
from services.executor.receive_preimage import intent_of, payment_hash_of, preimage_for

SECRET = b"k" * 32
INTENT = receive_id_for("alice", "order-42")


def test_derived_again_the_same_and_recognised_with_its_secret_only() -> None:
    preimage = preimage_for(SECRET, INTENT)
    assert preimage == preimage_for(SECRET, INTENT) and len(bytes.fromhex(preimage)) == 32
    assert payment_hash_of(preimage) == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    assert intent_of(SECRET, preimage) == INTENT
    assert intent_of(b"other" * 8, preimage) is None
    assert preimage_for(b"other" * 8, INTENT) != preimage
    assert preimage_for(SECRET, receive_id_for("alice", "order-43")) != preimage


def test_the_intent_id_is_not_readable_from_the_preimage() -> None:
    preimage = preimage_for(SECRET, INTENT)
    raw_uuid = bytes.fromhex(INTENT.removeprefix("rcv-").replace("-", ""))
    assert raw_uuid.hex() not in preimage


def test_foreign_and_malformed_preimages_are_not_ours() -> None:
    assert intent_of(SECRET, hashlib.sha256(b"someone else's").hexdigest()) is None
    assert intent_of(SECRET, "zz") is None and intent_of(SECRET, "ab" * 16) is None
    with pytest.raises(ValueError):
        preimage_for(SECRET, "6f1c1d8e-43a1-4a43-9a5e-1f0c7d3c2b10")  # a payment's id
