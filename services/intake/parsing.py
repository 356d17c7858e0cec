"""From a NATS message to a command envelope: size, envelope, schema, and subject checks."""

from __future__ import annotations

import re
from collections.abc import Mapping

from schemas import codec, errors, limits
from schemas import commands as cmd
from schemas.policy_messages import ApprovePolicy, PolicyCommand, ProposePolicy
from services.bus import subjects
from services.engine.processor import CommandEnvelope

_TOKEN_RE = re.compile(limits.CALLER_ID_PATTERN)


def parse_command(
    subject: str,
    prefix: str,
    data: bytes,
    headers: Mapping[str, str] | None,
    *,
    bytes_max: int = limits.COMMAND_BYTES_MAX,
    verbs: Mapping[str, str] = subjects.VERBS,
) -> CommandEnvelope:
    """``<prefix>.<verb>.<caller_id>`` carrying a command of the verb's type for that caller."""
    tokens = subject[len(prefix) + 1 :].split(".") if subject.startswith(prefix + ".") else []
    if len(tokens) != 2 or tokens[0] not in verbs:
        raise errors.CorridorError(
            f"subject must be {prefix}.<verb>.<caller_id> with verb in {sorted(verbs)}",
            field="subject",
            code="bad_subject",
        )
    verb, caller_token = tokens
    if not _TOKEN_RE.match(caller_token):
        raise errors.CorridorError(
            "caller id token is invalid", field="subject", code="bad_subject"
        )
    command = codec.decode_command(data, bytes_max=bytes_max)
    expected_type = verbs[verb]
    if type(command).__name__ != expected_type:
        raise errors.CorridorError(
            f"subject verb {verb!r} carries {expected_type}, got {type(command).__name__}",
            field="type",
            code="subject_mismatch",
        )
    _check_identity(command, caller_token)
    headers = headers or {}
    return CommandEnvelope(
        command=command,
        correlation_id=headers.get(subjects.HDR_CORRELATION_ID) or None,
        causation_id=headers.get(subjects.HDR_MSG_ID) or None,
    )


def _check_identity(command: cmd.Command | PolicyCommand, caller_token: str) -> None:
    """The subject's caller token is the authenticated identity; the payload must agree."""
    match command:
        case cmd.SubmitPaymentIntent() | cmd.CancelPaymentIntent():
            claimed, field = command.caller.id, "caller.id"
        case cmd.ApprovePaymentIntent() | cmd.RejectPaymentIntent():
            claimed, field = command.operator_id, "operator_id"
        case ProposePolicy():
            claimed, field = command.proposer_id, "proposer_id"
        case ApprovePolicy():
            claimed, field = command.approver_id, "approver_id"
        case _:
            return
    if claimed != caller_token:
        raise errors.CallerMismatch(
            f"payload {field} {claimed!r} differs from the subject's caller {caller_token!r}",
            field=field,
        )
