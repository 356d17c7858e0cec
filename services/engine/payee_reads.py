"""``intents get`` and ``intents status`` of a payee (ADR 0270), read from the log: the same
replies as a payment's, so ``corridor get payee-...`` shows the payee's events, which carry
no personal data."""

from __future__ import annotations

from schemas import errors
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.payees import replay
from services.domain.principal import Principal
from services.engine.commands import rejected
from services.engine.event_codec import to_domain, to_recorded
from services.eventstore.port import EventStore


def may_read_payee(reader: Principal | None) -> bool:
    """Operators, auditors and the engine; callers and executors do not list our payees."""
    return reader is None or reader.role in ("engine", "operator", "auditor")


async def payee_view(
    store: EventStore, payee_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    history = await store.read_stream(payee_id)
    state = replay(to_domain(e) for e in history)
    if state is None or not may_read_payee(reader):
        return _not_found(payee_id)
    return PaymentIntentView(
        intent_id=payee_id, state=str(state.status), stream_version=state.version,
        events=[to_recorded(e) for e in history],
    )  # fmt: skip


async def payee_status(
    store: EventStore, payee_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    history = await store.read_stream(payee_id)
    state = replay(to_domain(e) for e in history)
    if state is None or not may_read_payee(reader):
        return _not_found(payee_id)
    return PaymentIntentStatus(
        intent_id=payee_id, state=str(state.status), attempt=0, stream_version=state.version
    )


def _not_found(payee_id: str) -> CommandRejected:
    return rejected(errors.NotFound(f"no payee {payee_id}", field="intent_id"))
