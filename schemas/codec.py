"""Decode and encode wire messages with msgspec, turning every failure into a coded error.

The envelope (``type``, ``version``) is read first, so an unknown type or version is refused
by name instead of being guessed from the fields.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from schemas import errors, limits, storable
from schemas.agent_key_messages import (
    AGENT_KEY_COMMAND_TYPES,
    AGENT_KEY_QUERY_TYPES,
    AgentKeyCommand,
)
from schemas.channel_messages import CHANNEL_OP_COMMAND_TYPES
from schemas.commands import COMMAND_TYPES, Command, GetPaymentIntent, GetPaymentIntentStatus
from schemas.jit_messages import JIT_COMMAND_TYPES
from schemas.lsp_messages import LSP_ORDER_COMMAND_TYPES
from schemas.payee_messages import PAYEE_COMMAND_TYPES
from schemas.policy_messages import (
    POLICY_COMMAND_TYPES,
    POLICY_QUERY_TYPES,
    PolicyCommand,
)
from schemas.rebalance_messages import REBALANCE_COMMAND_TYPES
from schemas.receive_messages import RECEIVE_COMMAND_TYPES, GetExpiredInvoices, GetInvoiceCursor
from schemas.reconciliation_messages import RECONCILIATION_COMMAND_TYPES, ReconciliationCommand
from schemas.webhook_messages import (
    CallerWebhookCommand,
    ListWebhookEndpoints,
    RegisterWebhookEndpoint,
    RemoveWebhookEndpoint,
)

T = TypeVar("T")


class _Head(msgspec.Struct):
    type: str | None = None
    version: int | None = None


_head_decoder = msgspec.json.Decoder(_Head)
_encoder = msgspec.json.Encoder()

# Queries only read; ``decode_command`` refuses them whatever subject they arrive on.
QUERY_TYPES: tuple[type[Any], ...] = (
    GetPaymentIntent,
    GetPaymentIntentStatus,
    *POLICY_QUERY_TYPES,
    *AGENT_KEY_QUERY_TYPES,
    ListWebhookEndpoints,
    GetInvoiceCursor,
    GetExpiredInvoices,
)
# (type, version) -> class. A new version of a command is a new class registered here.
REQUEST_REGISTRY: dict[tuple[str, int], type[Any]] = {
    (cls.__name__, 1): cls
    for cls in (
        *COMMAND_TYPES,
        *POLICY_COMMAND_TYPES,
        *AGENT_KEY_COMMAND_TYPES,
        *RECONCILIATION_COMMAND_TYPES,
        *CHANNEL_OP_COMMAND_TYPES,  # ADR 0234
        *REBALANCE_COMMAND_TYPES,  # ADR 0244
        *JIT_COMMAND_TYPES,  # ADR 0261
        *PAYEE_COMMAND_TYPES,  # ADR 0270
        *LSP_ORDER_COMMAND_TYPES,  # ADR 0252
        # A caller's webhook commands; the dispatcher's are the engine's own, never on the wire.
        RegisterWebhookEndpoint,
        RemoveWebhookEndpoint,
        *RECEIVE_COMMAND_TYPES,
        *QUERY_TYPES,
    )
}
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in REQUEST_REGISTRY.values()
}

_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_RE = re.compile(r"Object missing required field `(?P<name>[^`]+)`")
_UNKNOWN_RE = re.compile(r"Object contains unknown field `(?P<name>[^`]+)`")


def _field_of(message: str) -> tuple[str, str | None]:
    """Split msgspec's "... - at `$.a.b`" into (text, "a.b")."""
    match = _PATH_RE.search(message)
    path = match.group("path") if match else None
    text = message[: match.start()] if match else message
    return text, (path or None)


def schema_error(exc: msgspec.ValidationError) -> errors.CorridorError:
    """The coded error (with its field) for a message that fails its schema."""
    return _violation(exc)


def _violation(exc: msgspec.ValidationError) -> errors.CorridorError:
    text, path = _field_of(str(exc))
    if m := _MISSING_RE.match(text):
        name = m.group("name")
        return errors.MissingField(
            f"missing required field {name!r}", field=f"{path}.{name}" if path else name
        )
    if m := _UNKNOWN_RE.match(text):
        name = m.group("name")
        return errors.SchemaViolation(
            f"unknown field {name!r}", field=f"{path}.{name}" if path else name
        )
    return errors.SchemaViolation(text, field=path)


def decode_request(raw: bytes, *, bytes_max: int = limits.COMMAND_BYTES_MAX) -> Any:
    """Decode one command or query. Raises a ``CorridorError`` subclass on any problem."""
    if len(raw) > bytes_max:
        raise errors.PayloadTooLarge(f"message is {len(raw)} bytes, limit is {bytes_max}")
    storable.check_nesting(raw)  # before any decoder recurses into it
    try:
        head = _head_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        text, path = _field_of(str(exc))
        if path in ("type", "version"):
            raise errors.SchemaViolation(text, field=path) from None
        raise errors.MalformedJson("message is not a JSON object") from None
    except msgspec.DecodeError as exc:
        raise errors.MalformedJson(f"malformed JSON: {exc}") from None
    if head.type is None:
        raise errors.MissingField("envelope field 'type' is required", field="type")
    if head.version is None:
        raise errors.MissingField("envelope field 'version' is required", field="version")
    known_versions = sorted(v for (t, v) in REQUEST_REGISTRY if t == head.type)
    if not known_versions:
        raise errors.UnknownType(f"unknown message type {head.type[:64]!r}", field="type")
    cls = REQUEST_REGISTRY.get((head.type, head.version))
    if cls is None:
        raise errors.UnknownVersion(
            f"{head.type} version {head.version} is not supported (known: {known_versions})",
            field="version",
        )
    try:
        message = _decoders[cls].decode(raw)
    except msgspec.ValidationError as exc:
        raise _violation(exc) from None
    storable.check_text(raw, message)
    return message


def decode_command(
    raw: bytes, *, bytes_max: int = limits.COMMAND_BYTES_MAX
) -> Command | PolicyCommand | AgentKeyCommand | ReconciliationCommand | CallerWebhookCommand:
    message = decode_request(raw, bytes_max=bytes_max)
    if isinstance(message, QUERY_TYPES):
        raise errors.UnknownType(
            f"{type(message).__name__} is a query, not a command", field="type"
        )
    return message  # type: ignore[no-any-return]


def encode(message: Any) -> bytes:
    return _encoder.encode(message)
