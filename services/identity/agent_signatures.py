"""Agents sign their commands: the canonical bytes, the headers, and the check (ADR 0066).

The wire format, exactly:

- The signed bytes are the RFC 8785 (JCS) canonical JSON of the command body as sent (the
  NATS message's payload, decoded as JSON), without top-level ``key_id`` and ``signature``
  members (a body carries none today; the names are reserved so that the signature can never
  cover itself). Everything else is signed, ``idempotency_key`` included: a signature made for
  one command does not verify for another, not even the same payment under another key.
- The signature is Ed25519 (RFC 8032) over those bytes, sent in the NATS header
  ``Corridor-Agent-Signature`` as unpadded base64url (86 characters), with the key's id in
  ``Corridor-Agent-Key-Id``: the first 16 hex digits of the SHA-256 of the raw public key.
- JCS carries integers up to 2**53 - 1 only; a body with a larger number cannot be signed
  (no agent pays 90,000 BTC at once) and is refused as ``signature_invalid``. Duplicate member
  names are refused too: the engine and the signer must read the same object.

``verify_agent_command`` is pure: the key registry is handed in, and nothing is read or logged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas import errors
from services.identity.agent_keys import AgentKey, AgentKeyLookup
from services.signing.port import SIGNATURE_BYTES, b64url, from_b64url, key_id_for

HDR_KEY_ID: Final = "Corridor-Agent-Key-Id"
HDR_SIGNATURE: Final = "Corridor-Agent-Signature"
# Top-level members never signed: they would carry the signature itself.
SIGNATURE_FIELDS: Final = ("key_id", "signature")
_KEY_ID_CHARS: Final = 16


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate("a member name appears twice")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def canonical_bytes(body: bytes) -> bytes:
    """The bytes an agent signs for the command ``body`` (a JSON object)."""
    try:
        obj = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.SignatureInvalid(
            f"the body cannot be canonicalized: {exc}", field="body"
        ) from None
    if not isinstance(obj, dict):
        raise errors.SignatureInvalid("a signed command is a JSON object", field="body")
    for name in SIGNATURE_FIELDS:
        obj.pop(name, None)
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise errors.SignatureInvalid(
            f"the body has no RFC 8785 form: {exc}", field="body"
        ) from None


def sign_command(private_key: Ed25519PrivateKey, body: bytes) -> dict[str, str]:
    """The two headers that sign ``body`` with ``private_key`` (integrators, tests, the CLI)."""
    public_key = private_key.public_key().public_bytes_raw()
    signature = private_key.sign(canonical_bytes(body))
    return {HDR_KEY_ID: key_id_for(public_key), HDR_SIGNATURE: b64url(signature)}


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:  # header names are case-insensitive to HTTP-minded clients
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or None


def verify_agent_command(
    agent_id: str,
    body: bytes,
    headers: Mapping[str, str] | None,
    keys: AgentKeyLookup,
    *,
    amount_msat: int | None = None,
) -> AgentKey:
    """The live key of ``agent_id`` that signed ``body``, or a coded refusal:

    ``signature_missing`` (a header is absent), ``signature_invalid`` (unknown key id, another
    agent's key, or a signature that does not verify), ``key_revoked`` (a good signature by a
    revoked key), ``agent_limit_exceeded`` (``amount_msat`` above the key's
    ``amount_msat_max``). Checked in this order, so only the key's holder learns that it was
    revoked or what its limit is.
    """
    key_id = _header(headers, HDR_KEY_ID)
    signature_text = _header(headers, HDR_SIGNATURE)
    for name, value in ((HDR_KEY_ID, key_id), (HDR_SIGNATURE, signature_text)):
        if value is None:
            raise errors.SignatureMissing(
                f"an agent signs every command: header {name} is missing", field=name
            )
    assert key_id is not None and signature_text is not None
    key = keys.find(key_id) if len(key_id) == _KEY_ID_CHARS else None
    if key is None or key.agent_id != agent_id:
        raise errors.SignatureInvalid(
            f"no key {key_id[: _KEY_ID_CHARS * 2]!r} is registered for agent {agent_id!r}",
            field=HDR_KEY_ID,
        )
    try:
        signature = from_b64url(signature_text)
    except ValueError:
        signature = b""
    if len(signature) != SIGNATURE_BYTES:
        raise errors.SignatureInvalid(
            "the signature is not 64 bytes of unpadded base64url", field=HDR_SIGNATURE
        )
    message = canonical_bytes(body)
    try:
        Ed25519PublicKey.from_public_bytes(key.raw_public_key).verify(signature, message)
    except InvalidSignature:
        raise errors.SignatureInvalid(
            "the signature does not verify for this command under this key",
            field=HDR_SIGNATURE,
        ) from None
    if key.revoked:
        raise errors.KeyRevoked(f"key {key.key_id} of agent {agent_id} is revoked",
                                field=HDR_KEY_ID)  # fmt: skip
    limit = key.limits.amount_msat_max
    if limit is not None and amount_msat is not None and amount_msat > limit:
        raise errors.AgentLimitExceeded(
            f"amount_msat {amount_msat} is above key {key.key_id}'s amount_msat_max {limit}",
            field="amount_msat",
            limit=limit,
        )
    return key
