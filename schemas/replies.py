"""Replies to request/reply API calls. ``ok`` says which shape you have."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.common import ErrorDetail
from schemas.events import NodeFailure, RuleFired
from schemas.policy_document import PolicyDocument
from schemas.records import RecordedEvent


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The command is durably committed in PostgreSQL (also for a duplicate of a request).

    For an intent that ended ``rejected`` or ``failed``, ``reason`` is the short code of why.
    ``explanation`` lists the policy rules that ran (``rule``, ``effect``, ``inputs``) while
    the policy decides the intent's fate: ``rejected`` by policy or ``awaiting_approval``.
    ``failures`` names, for a ``failed`` intent, each node tried and each candidate refused.
    """

    ok: Literal[True] = True
    intent_id: str
    state: str
    duplicate: bool = False
    reason: str | None = None
    explanation: tuple[RuleFired, ...] = ()
    failures: tuple[NodeFailure, ...] = ()
    version: Literal[1] = 1


class PolicyCommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """A policy proposal or approval is durably committed."""

    ok: Literal[True] = True
    policy_version: int
    active_version: int | None
    duplicate: bool = False
    version: Literal[1] = 1


class CommandRejected(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    ok: Literal[False] = False
    error: ErrorDetail
    version: Literal[1] = 1


class PaymentIntentView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``GetPaymentIntent``: the current state and the full event history."""

    ok: Literal[True] = True
    intent_id: str
    state: str
    stream_version: int
    events: list[RecordedEvent]
    # As in ``CommandAccepted``: why a rejected or failed intent ended, and the nodes it failed on.
    reason: str | None = None
    failures: tuple[NodeFailure, ...] = ()
    version: Literal[1] = 1


class PaymentIntentStatus(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``GetPaymentIntentStatus``."""

    ok: Literal[True] = True
    intent_id: str
    state: str
    attempt: int
    stream_version: int
    version: Literal[1] = 1


class PendingPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """A proposed policy version waiting for a second operator's approval."""

    policy_version: int
    proposed_by: str
    proposed_at_ms: int


class PolicyView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``GetPolicy``: the policy document the running engine judges intents by."""

    ok: Literal[True] = True
    policy_version: int
    document: PolicyDocument
    pending: tuple[PendingPolicy, ...] = ()
    version: Literal[1] = 1


class CorridorCandidate(msgspec.Struct, frozen=True, kw_only=True):
    """One route candidate; ``rank`` 1 is tried first. ``keysend`` false: invoices only."""

    rank: int
    region: str
    node: str
    keysend: bool


class CorridorRoutes(msgspec.Struct, frozen=True, kw_only=True):
    corridor: str
    candidates: tuple[CorridorCandidate, ...]


class CorridorsView(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``ListCorridors``: the running engine's corridors, by name, and their candidates
    in the order the engine tries them."""

    ok: Literal[True] = True
    corridors: tuple[CorridorRoutes, ...]
    version: Literal[1] = 1


Reply = (
    CommandAccepted
    | PolicyCommandAccepted
    | CommandRejected
    | PaymentIntentView
    | PaymentIntentStatus
    | PolicyView
    | CorridorsView
)
