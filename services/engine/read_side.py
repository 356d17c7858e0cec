"""The read side: ``intents status``, ``intents get`` and ``policy show`` answered from the
writer loop's committed state when the log agrees, else from the log. Nothing here writes the
cache or the policy book's state, so it cannot race the writer loop."""

from __future__ import annotations

from schemas import errors
from schemas.channel_messages import is_channel_op_stream
from schemas.payee_messages import is_payee_stream
from schemas.rebalance_messages import is_rebalance_budget_stream, is_rebalance_stream
from schemas.receive_messages import is_receive_stream
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView, PolicyView
from services.domain.intent import PaymentIntent, fold
from services.domain.intent.access import may_read
from services.domain.policy import PolicyEngine, fold_policy
from services.domain.principal import Principal
from services.engine.channel_op_reads import CHANNEL_OPS
from services.engine.commands import rejected
from services.engine.event_codec import POLICY_STREAM, to_domain, to_recorded
from services.engine.intent_cache import IntentCache
from services.engine.payee_reads import payee_status, payee_view
from services.engine.policy_book import PolicyBook, policy_event
from services.engine.rebalance_reads import rebalance_status, rebalance_view
from services.engine.receive_reads import RECEIVES
from services.engine.stream_reads import stream_status, stream_view
from services.engine.version_probe import VersionProbe
from services.engine.views import policy_view, why_unpaid
from services.eventstore.port import EventStore


class ReadSide:
    def __init__(self, store: EventStore, cache: IntentCache, policy: PolicyBook) -> None:
        self._store = store
        self._cache = cache
        self._policy = policy
        # Open intents' versions, checked many per round trip (ADR 0074's check, batched).
        self.versions = VersionProbe(store)

    async def status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | CommandRejected:
        """From the committed-state cache when the log agrees, else from the log.

        A cached ``None`` ("no such stream" when the writer loop last looked) is not trusted:
        the stream may have been committed since, by this engine or another one, so the log
        answers. Nor is a cached open state whose version the log has passed: another engine
        moved the intent (ADR 0074), and an executor asking whether to send must not hear of
        an attempt that is no longer current. This path never writes the cache, so it cannot
        race the writer loop. ``reader`` ``None`` is the engine itself; anyone else sees only
        what ``may_read`` allows, and an intent it may not read is ``not_found``, as if it did
        not exist.
        """
        if is_receive_stream(intent_id):  # ADR 0220
            return await stream_status(self._store, RECEIVES, intent_id, reader)
        if is_channel_op_stream(intent_id):  # ADR 0234
            return await stream_status(self._store, CHANNEL_OPS, intent_id, reader)
        if is_rebalance_stream(intent_id) or is_rebalance_budget_stream(intent_id):  # ADR 0244
            return await rebalance_status(self._store, intent_id, reader)
        if is_payee_stream(intent_id):  # ADR 0270
            return await payee_status(self._store, intent_id, reader)
        cached = self.cached_status(intent_id, reader=reader)
        if cached is not None:
            return cached
        state = self._cache.get(intent_id)
        if (
            state is not None
            and _readable(reader, state, history=False)
            and await self.versions.version(intent_id) == state.version
        ):
            return _status_of(intent_id, state)
        history = await self._store.read_stream(intent_id)
        state = fold(to_domain(e) for e in history)
        if state is None or not _readable(reader, state, history=False):
            return _not_found(intent_id)
        return _status_of(intent_id, state)

    def cached_status(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentStatus | None:
        """The status from the committed-state cache if it is final, or ``None`` if only the
        log can tell (another engine may have moved an open intent since, ADR 0074; or
        ``reader`` may not read it: ``status`` then says so)."""
        state = self._cache.get(intent_id)
        if state is None or not state.is_terminal or not _readable(reader, state, history=False):
            return None
        return _status_of(intent_id, state)

    async def view(
        self, intent_id: str, *, reader: Principal | None = None
    ) -> PaymentIntentView | CommandRejected:
        """The state and full history; ``reader`` as in ``status``."""
        if is_receive_stream(intent_id):  # ADR 0220
            return await stream_view(self._store, RECEIVES, intent_id, reader)
        if is_channel_op_stream(intent_id):  # ADR 0234
            return await stream_view(self._store, CHANNEL_OPS, intent_id, reader)
        if is_rebalance_stream(intent_id) or is_rebalance_budget_stream(intent_id):  # ADR 0244
            return await rebalance_view(self._store, intent_id, reader)
        if is_payee_stream(intent_id):  # ADR 0270
            return await payee_view(self._store, intent_id, reader)
        history = await self._store.read_stream(intent_id)
        if not history:
            return _not_found(intent_id)
        state = fold(to_domain(e) for e in history)
        assert state is not None
        if not _readable(reader, state, history=True):
            return _not_found(intent_id)
        reason, failures = why_unpaid(state)
        return PaymentIntentView(
            intent_id=intent_id,
            state=str(state.status),
            stream_version=state.version,
            events=[to_recorded(e) for e in history],
            reason=reason,
            failures=failures,
        )

    async def current_policy_view(self) -> PolicyView | CommandRejected:
        """``policy_view`` as the log has it: another engine may have recorded a proposal or
        an activation since this one loaded the stream (ADR 0074). Then the view is read
        from the log, and the writer loop reloads before it judges again."""
        known = self._policy.version
        if await self._store.stream_version(POLICY_STREAM) == known:
            return self.policy_view()
        self._policy.stale = True
        history = await self._store.read_stream(POLICY_STREAM)
        state = fold_policy([policy_event(e) for e in history])  # type: ignore[misc]
        if state is None or state.active is None:
            return self.policy_view()
        return policy_view(state.active, state)

    def policy_view(self) -> PolicyView | CommandRejected:
        """The document this engine judges intents by, and proposals awaiting approval."""
        active = self._policy.in_force()
        if not isinstance(active, PolicyEngine):
            return rejected(
                errors.NotFound(
                    "this engine judges with a built-in policy, not a policy document",
                    code="no_policy_document",
                )
            )
        return policy_view(active.document, self._policy.state)

    @property
    def active_policy_version(self) -> int | None:
        return getattr(self._policy.in_force(), "version", None)


def _status_of(intent_id: str, state: PaymentIntent) -> PaymentIntentStatus:
    return PaymentIntentStatus(
        intent_id=intent_id,
        state=str(state.status),
        attempt=state.attempt,
        stream_version=state.version,
    )


def _readable(reader: Principal | None, state: PaymentIntent, *, history: bool) -> bool:
    return reader is None or may_read(reader, state, history=history)


def _not_found(intent_id: str) -> CommandRejected:
    # The same answer whether the intent does not exist or is not the reader's: intent ids are
    # derived from (caller id, idempotency key), so a different answer would let anyone probe
    # for another caller's intents.
    return rejected(errors.NotFound(f"no payment intent {intent_id}", field="intent_id"))
