"""Deterministic secrets for the simulated network: same seed, same keys and preimages."""

from __future__ import annotations

import hashlib

import coincurve

# secp256k1 group order: a secret must be in [1, n-1].
_SECP256K1_ORDER = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)


def derive_bytes(seed: int, *labels: str | int) -> bytes:
    """32 bytes that depend only on the seed and the labels (domain-separated)."""
    text = "corridor-sim/" + "/".join([str(seed), *map(str, labels)])
    return hashlib.sha256(text.encode()).digest()


def node_privkey(seed: int, name: str) -> bytes:
    for counter in range(1000):
        secret = derive_bytes(seed, "node-key", name, counter)
        if 0 < int.from_bytes(secret, "big") < _SECP256K1_ORDER:
            return secret
    raise AssertionError("no valid secp256k1 secret in 1000 tries")  # probability ~2^-1000


def pubkey_hex(privkey: bytes) -> str:
    return coincurve.PrivateKey(privkey).public_key.format(compressed=True).hex()
