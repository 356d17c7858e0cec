"""Receive preimages (ADR 0221): derived by the executor from the node-local secret and the
intent id, so a redelivered order asks its node for the same payment hash, and recognisable
afterwards, so the settlement follower knows which intent a settled invoice credits.

    tag  = HMAC-SHA256(secret, CONTEXT || "tag" || uuid)[:16]
    mask = HMAC-SHA256(secret, CONTEXT || "mask" || tag)[:16]
    preimage = (uuid XOR mask) || tag

``uuid`` is the 16 bytes of the intent id (``rcv-<uuid>``). Without the secret the preimage is
unguessable (the tag is 128 bits of HMAC) and, once revealed by the payment, tells nobody the
intent id (it is masked). A preimage is never logged before its payment: only the settled
invoice's, in ``InvoicePaid``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Final

from schemas.receive_messages import RECEIVE_STREAM_PREFIX

CONTEXT: Final = b"corridor/receive-preimage/v1\x00"


def _hmac16(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, CONTEXT + b"".join(parts), hashlib.sha256).digest()[:16]


def preimage_for(secret: bytes, intent_id: str) -> str:
    """The hex preimage of a receive's invoice. ``ValueError`` for an id that is not
    ``rcv-<uuid>``."""
    if not intent_id.startswith(RECEIVE_STREAM_PREFIX):
        raise ValueError(f"not a receive intent id: {intent_id!r}")
    raw = uuid.UUID(intent_id.removeprefix(RECEIVE_STREAM_PREFIX)).bytes
    tag = _hmac16(secret, b"tag", raw)
    mask = _hmac16(secret, b"mask", tag)
    return (bytes(a ^ b for a, b in zip(raw, mask, strict=True)) + tag).hex()


def payment_hash_of(preimage_hex: str) -> str:
    return hashlib.sha256(bytes.fromhex(preimage_hex)).hexdigest()


def intent_of(secret: bytes, preimage_hex: str) -> str | None:
    """The receive intent a settled invoice's preimage was derived for, or ``None`` if this
    secret did not derive it (an invoice not ours, or another executor secret's)."""
    try:
        preimage = bytes.fromhex(preimage_hex)
    except ValueError:
        return None
    if len(preimage) != 32:
        return None
    masked, tag = preimage[:16], preimage[16:]
    mask = _hmac16(secret, b"mask", tag)
    raw = bytes(a ^ b for a, b in zip(masked, mask, strict=True))
    if not hmac.compare_digest(_hmac16(secret, b"tag", raw), tag):
        return None
    return RECEIVE_STREAM_PREFIX + str(uuid.UUID(bytes=raw))
