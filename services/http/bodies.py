"""Request bodies, derived from the NATS commands in ``schemas/`` (one source for both).

A body is its command's Struct without the fields the HTTP API fills in itself: ``type`` and
``version`` (the route says which), the identity field (the API key says who), the path's
parameters, and ``idempotency_key`` (the ``Idempotency-Key`` header). ``optional`` fields
become ``X | None = None``. Field types keep their constraints, so the OpenAPI document and the
first check of a body are the engine's own limits.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.channel_messages import CloseChannel, OpenChannel
from schemas.commands import (
    ApprovePaymentIntent,
    CancelPaymentIntent,
    RejectPaymentIntent,
    ResolvePaymentIntent,
    SubmitPaymentIntent,
)
from schemas.dead_letters import DropDeadLetters, ReplayDeadLetters
from schemas.policy_messages import ApprovePolicy, ProposePolicy
from schemas.receive_messages import CreateReceiveIntent
from schemas.reconciliation_messages import ClearNodeBreaker, ResolveReconciliationMismatch


def body_of(
    name: str,
    command: type[msgspec.Struct],
    *,
    omit: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> type[msgspec.Struct]:
    fields: list[Any] = []
    for f in msgspec.structs.fields(command):
        if f.name in (*omit, "version"):
            continue
        if f.name in optional:
            fields.append((f.name, f.type | None, None))
        elif f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct(
        name, fields, kw_only=True, frozen=True, forbid_unknown_fields=True,
        module=__name__,
    )  # fmt: skip


SubmitIntentBody = body_of(
    "SubmitIntentBody", SubmitPaymentIntent, omit=("idempotency_key",), optional=("caller",)
)
CancelIntentBody = body_of("CancelIntentBody", CancelPaymentIntent, omit=("intent_id", "caller"))
ApproveIntentBody = body_of(
    "ApproveIntentBody", ApprovePaymentIntent, omit=("intent_id", "operator_id")
)
RejectIntentBody = body_of(
    "RejectIntentBody", RejectPaymentIntent, omit=("intent_id", "operator_id")
)
ResolveIntentBody = body_of(
    "ResolveIntentBody", ResolvePaymentIntent, omit=("intent_id", "operator_id")
)
ReplayDeadLettersBody = body_of("ReplayDeadLettersBody", ReplayDeadLetters, omit=())
DropDeadLettersBody = body_of("DropDeadLettersBody", DropDeadLetters, omit=())
ProposePolicyBody = body_of("ProposePolicyBody", ProposePolicy, omit=("proposer_id",))
ApprovePolicyBody = body_of(
    "ApprovePolicyBody", ApprovePolicy, omit=("policy_version", "approver_id")
)
ResolveMismatchBody = body_of(
    "ResolveMismatchBody", ResolveReconciliationMismatch, omit=("node", "key", "operator_id")
)
ClearBreakerBody = body_of("ClearBreakerBody", ClearNodeBreaker, omit=("node", "operator_id"))

# Receives and channel operations (the operator windows of issue 18).
ReceiveBody = body_of(
    "ReceiveBody", CreateReceiveIntent, omit=("idempotency_key",), optional=("caller",)
)
OpenChannelBody = body_of("OpenChannelBody", OpenChannel, omit=("idempotency_key",))
CloseChannelBody = body_of("CloseChannelBody", CloseChannel, omit=("idempotency_key",))


def fields_of(body: msgspec.Struct) -> dict[str, Any]:
    """A decoded body as the JSON object the command carries (defaults included)."""
    out: dict[str, Any] = msgspec.to_builtins(body)
    return out
