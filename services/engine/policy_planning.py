"""One policy document command in the writer loop: decide, evolve, events to append, the reply
(ADR 0059). The writer loop adopts the new document once the batch is committed."""

from __future__ import annotations

from collections.abc import Callable

from schemas import errors
from schemas.policy_messages import PolicyCommand
from schemas.records import EventMetadata
from schemas.replies import PolicyCommandAccepted
from services.domain.policy import PolicyEngine, decide_policy, evolve_policy
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, Reply, actor, rejected
from services.engine.event_codec import POLICY_STREAM, to_new_events


def plan_policy_command(
    plan: BatchPlan,
    item: QueuedCommand,
    command: PolicyCommand,
    *,
    now_ms: int,
    baseline_version: int,
    new_id: Callable[[], str],
) -> Reply:
    state = plan.policy_state
    try:
        new_events = decide_policy(state, command, now_ms=now_ms, baseline_version=baseline_version)
    except errors.CorridorError as exc:
        return rejected(exc)
    if not new_events:
        return PolicyCommandAccepted(
            policy_version=command.policy_version,
            active_version=state.active_version if state else None,
            duplicate=True,
        )
    new_state = state
    for event in new_events:
        new_state = evolve_policy(new_state, event)
    assert new_state is not None
    metadata = EventMetadata(
        correlation_id=item.envelope.correlation_id or POLICY_STREAM,
        causation_id=item.envelope.causation_id or new_id(),
        actor=actor(item.envelope),
        policy_version=new_state.active_version,
    )
    plan.events += to_new_events(
        POLICY_STREAM, (state.version if state else 0) + 1, new_events, metadata, now_ms
    )
    plan.policy_state = new_state
    plan.policy_changed = True
    if new_state.active is not None and new_state.active_version != (
        state.active_version if state else None
    ):
        plan.activated = PolicyEngine(new_state.active)
    return PolicyCommandAccepted(
        policy_version=command.policy_version, active_version=new_state.active_version
    )
