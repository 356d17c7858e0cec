"""Replies to request/reply API calls. ``ok`` says which shape you have."""

from __future__ import annotations

from typing import Literal

import msgspec

from schemas.common import ErrorDetail
from schemas.records import RecordedEvent


class CommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """The command is durably committed in PostgreSQL."""

    ok: Literal[True] = True
    intent_id: str
    state: str
    duplicate: bool = False
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
    version: Literal[1] = 1


class PaymentIntentStatus(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Reply to ``GetPaymentIntentStatus``."""

    ok: Literal[True] = True
    intent_id: str
    state: str
    attempt: int
    stream_version: int
    version: Literal[1] = 1


Reply = (
    CommandAccepted
    | PolicyCommandAccepted
    | CommandRejected
    | PaymentIntentView
    | PaymentIntentStatus
)
