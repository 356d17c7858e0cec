"""The canonical bytes a log checkpoint's signature covers (ADR 0065), and the check of it."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.engine.checkpoints import sign_checkpoint
from services.eventstore.checkpoint_verify import check_signature, checkpoint_message
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer


def test_canonical_bytes_are_compact_json_in_a_fixed_order() -> None:
    message = checkpoint_message("0123456789abcdef", 42, "ab" * 32)
    assert message == (b'["corridor/checkpoint/v1","0123456789abcdef",42,"' + b"ab" * 32 + b'"]')


def test_a_signed_checkpoint_verifies_and_any_change_does_not() -> None:
    signer = Ed25519Signer(Ed25519PrivateKey.generate())
    keyring = Ed25519Keyring([signer.public_key])
    checkpoint = sign_checkpoint(signer, position=7, chain_hash=bytes(range(32)), signed_at_ms=1)
    assert checkpoint.key_id == signer.key_id
    assert checkpoint.checkpoint_id == f"ckpt-7-{bytes(range(32)).hex()[:16]}"
    assert check_signature(keyring, checkpoint) is None
    for forged in (
        checkpoint.__class__(**{**_fields(checkpoint), "position": 8}),
        checkpoint.__class__(**{**_fields(checkpoint), "hash": "00" * 32}),
        checkpoint.__class__(**{**_fields(checkpoint), "signature": "AAAA"}),
    ):
        problem = check_signature(keyring, forged)
        assert problem is not None and "bad_signature" in problem
    other = Ed25519Keyring([Ed25519Signer(Ed25519PrivateKey.generate()).public_key])
    problem = check_signature(other, checkpoint)
    assert problem is not None and "unknown_key" in problem


def _fields(checkpoint: object) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(checkpoint)  # type: ignore[arg-type]
