"""Structured errors: one root class and a stable ``code`` per failure.

A caller sees ``{code, message, field}``; the code is the contract, the message is for people.
"""

from __future__ import annotations

from schemas.common import ErrorDetail


class CorridorError(Exception):
    code = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        limit: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.limit = limit
        if code is not None:
            self.code = code

    def detail(self) -> ErrorDetail:
        return ErrorDetail(code=self.code, message=self.message, field=self.field, limit=self.limit)


class MalformedJson(CorridorError):
    code = "malformed_json"


class PayloadTooLarge(CorridorError):
    code = "payload_too_large"


class MissingField(CorridorError):
    code = "missing_field"


class UnknownType(CorridorError):
    code = "unknown_type"


class UnknownVersion(CorridorError):
    code = "unknown_version"


class SchemaViolation(CorridorError):
    code = "schema_violation"


class UnstorableText(CorridorError):
    """A string or key holds text PostgreSQL cannot store (U+0000, or a header that is not
    UTF-8); ``field`` is its path, e.g. ``metadata.note`` (``schemas/storable.py``)."""

    code = "unstorable_text"


class NestingTooDeep(CorridorError):
    """JSON nested deeper than ``limits.NESTING_DEPTH_MAX``, unknown fields included."""

    code = "nesting_too_deep"


class StoreRefused(CorridorError):
    """The event store refused this command for a reason a retry cannot fix (a definite
    failure in ``services/failures.py``); nothing of it was committed."""

    code = "store_refused"


class IdentityMismatch(CorridorError):
    """The payload names someone other than the identity the subject (the credential) names:
    ``caller.id``, ``caller.kind``, ``operator_id``, ``proposer_id``, ``approver_id``, ``node``
    or ``region`` (ADR 0061). Identity comes from the credential, never from the payload."""

    code = "identity_mismatch"


class InvalidInvoice(CorridorError):
    """The BOLT 11 invoice is unusable; ``code`` is refined (e.g. ``invoice_expired``)."""

    code = "invalid_invoice"


class IdempotencyMismatch(CorridorError):
    code = "idempotency_mismatch"


class NotFound(CorridorError):
    code = "not_found"


class InvalidTransition(CorridorError):
    code = "invalid_transition"


class Unavailable(CorridorError):
    """A dependency (PostgreSQL, NATS) failed; the command was not committed. Safe to retry."""

    code = "unavailable"


class Forbidden(CorridorError):
    code = "forbidden"


class RateLimited(CorridorError):
    """Too many of this caller's submits were rejected by policy lately; nothing was
    recorded. Retry later (ADR 0079)."""

    code = "rate_limited"


class TwoPersonRule(Forbidden):
    """One person cannot both ask and approve: a policy's proposer cannot approve it, and an
    intent's caller cannot approve it as an operator."""

    code = "two_person_rule"


class SignatureMissing(CorridorError):
    """An agent's command without the ``Corridor-Agent-Key-Id`` or ``Corridor-Agent-Signature``
    header (ADR 0066). ``field`` names the missing header."""

    code = "signature_missing"


class SignatureInvalid(CorridorError):
    """An agent's signature that does not verify: unknown key id, another agent's key, a bad
    or replayed signature, or a body with no RFC 8785 form (ADR 0066)."""

    code = "signature_invalid"


class KeyRevoked(CorridorError):
    """A good signature by an agent key that is revoked (ADR 0066)."""

    code = "key_revoked"


class AgentLimitExceeded(CorridorError):
    """The command asks more than the agent key's limits allow (ADR 0066, 0068): ``field`` is
    ``amount_msat``, ``limit`` the key's ``amount_msat_max`` or ``window_msat_max``. Nothing
    is recorded or paid. The policy's tiers still judge whatever the key's limits let through."""

    code = "agent_limit_exceeded"
