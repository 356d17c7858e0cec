"""One agent key command in the writer loop: decide, evolve, events to append, the reply.

Kept out of the processor, which only routes the command here and adopts the new view once
the batch is committed (ADR 0068).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from schemas import errors
from schemas.agent_key_messages import (
    AgentKeyCommandAccepted,
    AgentKeyView,
    ApproveAgentKey,
    ProposeAgentKey,
    RevokeAgentKey,
)
from schemas.records import EventMetadata
from schemas.replies import CommandRejected
from services.domain.agent_keys import AGENT_KEYS_STREAM, decide, evolve
from services.domain.principal import Principal, claimed_identity
from services.engine.agent_key_book import AgentKeyBook
from services.engine.event_codec import to_new_events
from services.eventstore.port import NewEvent

if TYPE_CHECKING:
    from services.engine.commands import CommandEnvelope

AGENT_KEY_COMMANDS: Final = (ProposeAgentKey, ApproveAgentKey, RevokeAgentKey)


def plan_agent_key_command(
    book: AgentKeyBook,
    command: ProposeAgentKey | ApproveAgentKey | RevokeAgentKey,
    envelope: CommandEnvelope,
    *,
    now_ms: int,
    new_id: Callable[[], str],
    actor: str,
) -> tuple[AgentKeyCommandAccepted | CommandRejected, AgentKeyBook | None, list[NewEvent]]:
    """``(reply, the view after this command or None if unchanged, events to append)``."""
    principal = envelope.principal or _internal_principal(command)
    try:
        new_events = decide(book.state, command, actor=principal, now_ms=now_ms)
    except errors.CorridorError as exc:
        return CommandRejected(error=exc.detail()), None, []
    if not new_events:
        return AgentKeyCommandAccepted(keys=_touched(book, command), duplicate=True), None, []
    state = book.state
    for event in new_events:
        state = evolve(state, event)
    assert state is not None
    metadata = EventMetadata(
        correlation_id=envelope.correlation_id or AGENT_KEYS_STREAM,
        causation_id=envelope.causation_id or new_id(),
        actor=actor,
    )
    stored = to_new_events(AGENT_KEYS_STREAM, book.version + 1, new_events, metadata, now_ms)
    after = AgentKeyBook()
    after.adopt(state)
    changed = {e.key_id for e in new_events}
    keys = tuple(state.keys[k].view() for k in sorted(changed))
    return AgentKeyCommandAccepted(keys=keys), after, stored


def _touched(
    book: AgentKeyBook, command: ProposeAgentKey | ApproveAgentKey | RevokeAgentKey
) -> tuple[AgentKeyView, ...]:
    """What a duplicate command's reply shows: the keys it names, as they are."""
    if book.state is None:
        return ()
    if isinstance(command, ApproveAgentKey) or (
        isinstance(command, RevokeAgentKey) and command.key_id is not None
    ):
        assert command.key_id is not None
        record = book.state.keys.get(command.key_id)
        return (record.view(),) if record else ()
    return tuple(r.view() for r in book.state.of_agent(command.agent_id))


def _internal_principal(command: ProposeAgentKey | ApproveAgentKey | RevokeAgentKey) -> Principal:
    # Envelopes built inside the engine (tests, tools) carry no principal: the sender is the
    # operator the command names, as for the engine's other commands (``commands.actor``).
    claimed = claimed_identity(command)
    assert claimed is not None
    return Principal(role="operator", id=claimed[1])
