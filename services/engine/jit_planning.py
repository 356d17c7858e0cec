"""JIT channel sales in the engine (ADR 0261): the writer loop's committed state of ``jit-``
streams and the planner that decides a command against it. The processor only routes
``SellJitChannel``, ``RecordJitHtlc`` and ``RecordJitReport`` here.

Only the LSP node's own executor speaks for a sale: it sells on its node, and it records the
HTLCs and reports of sales on its node; anything else reads as not found. The identity is the
credential's (the subject token), never a payload field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Final

from schemas import errors
from schemas import jit_messages as jm
from schemas.records import EventMetadata
from schemas.replies import CommandAccepted
from services.domain.jit_channels import (
    JitChannel,
    JitContext,
    JitPolicy,
    Refusal,
    decide,
    evolve,
    replay,
)
from services.engine.batch_plan import BatchPlan
from services.engine.commands import QueuedCommand, actor, rejected
from services.engine.event_codec import to_new_events
from services.engine.ids import jit_scid_for
from services.engine.stream_state_cache import StreamStateCache
from services.eventstore.port import EventStore
from services.settings import Settings
from services.signing.jit_orders import sign_jit_orders
from services.signing.port import Signer

JIT_COMMANDS: Final = jm.JIT_COMMAND_TYPES
MSAT_PER_SAT: Final = 1000
# Defaults of the JIT policy (settings ``jit_*`` override them, ADR 0262): an opening fee of
# at most 50k sat and 5 % of the payment; channels from 100k sat up to lnd's non-wumbo
# maximum, 1 % above the forward for the reserve; lnd's default CLTV delta.
DEFAULT_JIT_POLICY: Final = JitPolicy(
    fee_max_msat=50_000 * MSAT_PER_SAT,
    fee_max_ppm=50_000,
    htlc_minimum_msat=1_000,
    channel_msat_min=100_000 * MSAT_PER_SAT,
    channel_msat_max=(2**24 - 1) * MSAT_PER_SAT,
    channel_headroom_ppm=10_000,
    cltv_expiry_delta=80,
)


def jit_policy_from(settings: Settings) -> JitPolicy:
    """The default policy with the settings' fee caps (ADR 0262)."""
    return dataclasses.replace(
        DEFAULT_JIT_POLICY,
        fee_max_msat=settings.jit_fee_max_msat,
        fee_max_ppm=settings.jit_fee_max_ppm,
    )


class JitCache(StreamStateCache[JitChannel]):
    """Committed JIT channel sales."""

    def __init__(self, store: EventStore, *, cache_max: int) -> None:
        super().__init__(store, cache_max=cache_max, fold=replay)


def jit_accepted(state: JitChannel, *, duplicate: bool) -> CommandAccepted:
    return CommandAccepted(
        intent_id=state.sale_id, state=str(state.status), duplicate=duplicate,
        reason=state.refusal or state.failure,
    )  # fmt: skip


class JitPlanner:
    def __init__(
        self,
        *,
        new_id: Callable[[], str],
        signer: Signer | None,
        policy: JitPolicy = DEFAULT_JIT_POLICY,
    ) -> None:
        self._new_id = new_id
        self._signer = signer  # ``None``: orders go unsigned and executors refuse them
        self._policy = policy

    def plan(
        self,
        plan: BatchPlan,
        item: QueuedCommand,
        command: jm.JitCommand,
        state: JitChannel | None,
        *,
        now_ms: int,
    ) -> None:
        principal = item.envelope.principal
        if principal is not None and principal.role != "executor":
            plan.replies.append(rejected(errors.Forbidden("the LSP node's executor sells")))
            return
        if principal is not None:
            node = command.node if isinstance(command, jm.SellJitChannel) else None
            if node is not None and node != principal.id:
                plan.replies.append(rejected(errors.Forbidden("an executor sells on its node")))
                return
            if state is not None and state.node != principal.id:
                state = None  # another node's sale reads as not found
        if isinstance(command, jm.SellJitChannel):
            scid = jit_scid_for(command.node, command.client_pubkey, command.request_id)
        else:
            scid = (state.jit_scid or "") if state is not None else ""
        ctx = JitContext(sale_id=item.stream_id, jit_scid=scid, now_ms=now_ms, policy=self._policy)
        decision = decide(state, command, ctx)
        if isinstance(decision, Refusal):
            error = errors.CorridorError(
                f"jit channel sale refused: {decision.code}", field=decision.field,
                code=decision.code,
            )  # fmt: skip
            plan.replies.append(rejected(error))
            return
        if not decision:
            assert state is not None
            plan.replies.append(jit_accepted(state, duplicate=True))
            return
        first_version = (state.version if state else 0) + 1
        new_events = decision
        if self._signer is not None:
            new_events = sign_jit_orders(self._signer, item.stream_id, first_version, decision)
        new_state = state
        for event in new_events:
            new_state = evolve(new_state, event)
        assert new_state is not None
        metadata = EventMetadata(
            correlation_id=item.envelope.correlation_id or item.stream_id,
            causation_id=item.envelope.causation_id or self._new_id(),
            actor=actor(item.envelope),
            owner=new_state.node,  # the relay's subject token: the LSP node
        )
        plan.events += to_new_events(item.stream_id, first_version, new_events, metadata, now_ms)
        plan.jit_sales[item.stream_id] = new_state
        plan.replies.append(jit_accepted(new_state, duplicate=False))
