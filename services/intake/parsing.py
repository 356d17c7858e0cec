"""From a NATS message to a command envelope: size, envelope, schema, subject and identity."""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas import codec, errors, limits, storable
from services import tracing
from services.bus import subjects
from services.domain.principal import Principal
from services.engine.processor import CommandEnvelope
from services.intake.identity import Authenticator

_TOKEN_RE = re.compile(limits.CALLER_ID_PATTERN)

# corridor.api.v1.intents.<query>[.<role>.<id>]: the queries, and how many identity tokens
# may follow them (none: the engine's own subject, which only the engine may publish on).
QUERIES = ("get", "status")
_QUERY_IDENTITY_TOKENS = (0, 2)
_API_DOT = subjects.API_PREFIX + "."


def parse_command(
    subject: str,
    prefix: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    authenticator: Authenticator,
    bytes_max: int = limits.COMMAND_BYTES_MAX,
    verbs: Mapping[str, str] = subjects.VERBS,
) -> CommandEnvelope:
    """``<prefix>.<verb>.<id>`` carrying a command of the verb's type, sent by ``<id>``."""
    tokens = subject[len(prefix) + 1 :].split(".") if subject.startswith(prefix + ".") else []
    if len(tokens) != 2 or tokens[0] not in verbs:
        raise errors.CorridorError(
            f"subject must be {prefix}.<verb>.<id> with verb in {sorted(verbs)}",
            field="subject",
            code="bad_subject",
        )
    verb, identity_token = tokens
    if not _TOKEN_RE.match(identity_token):
        raise errors.CorridorError("identity token is invalid", field="subject", code="bad_subject")
    command = codec.decode_command(data, bytes_max=bytes_max)
    expected_type = verbs[verb]
    if type(command).__name__ != expected_type:
        raise errors.CorridorError(
            f"subject verb {verb!r} carries {expected_type}, got {type(command).__name__}",
            field="type",
            code="subject_mismatch",
        )
    principal = authenticator.command(identity_token, command)
    agent_key = authenticator.check_signature(principal, command, data, headers)
    headers = headers or {}
    correlation_id = headers.get(subjects.HDR_CORRELATION_ID) or None
    causation_id = headers.get(subjects.HDR_MSG_ID) or None
    # Both land in every event's metadata: the same rule as the payload's text.
    for name, value in ((subjects.HDR_CORRELATION_ID, correlation_id),
                        (subjects.HDR_MSG_ID, causation_id)):  # fmt: skip
        if value is not None:
            storable.check_header(name, value)
    return CommandEnvelope(
        command=command,
        correlation_id=correlation_id,
        causation_id=causation_id,
        principal=principal,
        agent_key=agent_key,
        traceparent=tracing.valid(headers.get(tracing.TRACEPARENT)),
    )


def query_of(subject: str) -> tuple[str, tuple[str, ...]] | None:
    """``(query, identity tokens)`` if ``subject`` is a query subject, else ``None``.

    Cheap and without errors: the fast status path calls it on every message."""
    if not subject.startswith(_API_DOT):
        return None
    query, _, identity = subject[len(_API_DOT) :].partition(".")
    if query not in QUERIES:
        return None
    return query, tuple(identity.split(".")) if identity else ()


def query_reader(
    query: str, tokens: tuple[str, ...], authenticator: Authenticator
) -> Principal | None:
    """Who asks: the principal of ``<query>.<role>.<id>``, or ``None`` for the bare subject,
    which is the engine's own (publish permission on it is granted to the engine role only)."""
    if len(tokens) not in _QUERY_IDENTITY_TOKENS:
        raise errors.CorridorError(
            f"subject must be {subjects.API_PREFIX}.{query}.<role>.<id>",
            field="subject",
            code="bad_subject",
        )
    if not tokens:
        return None
    role, ident = tokens
    return authenticator.reader(role, ident, history=query == "get")
