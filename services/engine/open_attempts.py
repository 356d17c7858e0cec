"""Intents whose current attempt still waits for the node's evidence, read from the log:
payments, and the orders of rebalances and receives (ADR 0249) and channel operations
(ADR 0280), whose streams say which.

The one source the sweeper and the relay's start-up repair re-issue work orders from: the
current attempt's ``IntentDispatched`` exactly as the log holds it, signed by the engine when
it was dispatched (ADR 0063), so a re-issued order is the same order, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.channel_messages import is_channel_op_stream
from schemas.rebalance_messages import is_rebalance_stream
from schemas.receive_messages import is_receive_stream
from services.domain import channel_ops, rebalance, receive
from services.domain.channel_ops import ChannelOpStatus
from services.domain.intent import PaymentIntent, fold
from services.domain.intent.transitions import AWAITING_EVIDENCE_STATUSES
from services.domain.receive.status import ReceiveStatus
from services.engine.event_codec import to_domain
from services.eventstore.order_events import REISSUABLE_ORDERS
from services.eventstore.port import EventStore, StoredEvent

# Streams read in one round trip; the processor loads batches of the same size.
READ_CHUNK_STREAMS = 1000
# Work orders read per page when every open one up to a position is looked for.
SCAN_PAGE_ORDERS = 10_000


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    intent_id: str
    # A payment's state; None for a rebalance's, a receive's or a channel operation's order,
    # which are re-issued but not escalated (``EscalatePaymentIntent`` is a payment's).
    state: PaymentIntent | None
    order: StoredEvent  # the current attempt's work order, as logged (signed)
    last_event_at_ms: int  # when anything last happened to the intent
    attempt: int
    status: str

    @property
    def dispatched_at_ms(self) -> int:
        return self.order.recorded_at_ms


@dataclass(frozen=True, slots=True)
class LoggedOrder:
    intent_id: str
    position: int


async def dispatched_between(
    store: EventStore, *, after_position: int, through_position: int, limit: int
) -> list[LoggedOrder]:
    """The work orders in positions ``(after, through]`` of intents that have not settled or
    failed, oldest first, at most ``limit``."""
    rows = await store.open_orders_between(
        after_position=after_position, through_position=through_position, limit=limit
    )
    return [LoggedOrder(stream_id, position) for stream_id, position in rows]


async def last_order_position(store: EventStore, *, through_position: int) -> int:
    """The position of the newest work order of any re-issuable kind at or before
    ``through_position`` (0: none)."""
    positions = [
        await store.last_position_of(kind, through_position=through_position)
        for kind in REISSUABLE_ORDERS
    ]
    return max(positions)


async def open_attempts(store: EventStore, intent_ids: Sequence[str]) -> list[OpenAttempt]:
    """Those of ``intent_ids`` that are on the wire, or ``succeeded`` without proof, now."""
    found: list[OpenAttempt] = []
    unique = list(dict.fromkeys(intent_ids))
    for start in range(0, len(unique), READ_CHUNK_STREAMS):
        streams = await store.read_streams(unique[start : start + READ_CHUNK_STREAMS])
        for intent_id, history in streams.items():
            attempt = _open_attempt(intent_id, history)
            if attempt is not None:
                found.append(attempt)
    return found


def _open_attempt(intent_id: str, history: Sequence[StoredEvent]) -> OpenAttempt | None:
    if not history:
        return None
    if is_rebalance_stream(intent_id):
        moved = rebalance.fold(to_domain(e) for e in history)
        if moved is None or moved.status not in rebalance.ON_THE_WIRE_STATUSES:
            return None
        return _other_order(intent_id, history, "RebalanceDispatched", str(moved.status))
    if is_receive_stream(intent_id):
        asked = receive.fold(to_domain(e) for e in history)
        if asked is None or asked.status is not ReceiveStatus.DISPATCHED:
            return None  # after InvoiceIssued the settlement follower carries it
        return _other_order(intent_id, history, "ReceiveDispatched", str(asked.status))
    if is_channel_op_stream(intent_id):
        return _channel_order(intent_id, history)
    state = fold(to_domain(e) for e in history)
    if state is None or state.status not in AWAITING_EVIDENCE_STATUSES:
        return None
    order = next(e for e in reversed(history) if e.type == "IntentDispatched")
    assert order.payload["attempt"] == state.attempt, "the newest order is the current attempt"
    return OpenAttempt(
        intent_id=intent_id,
        state=state,
        order=order,
        last_event_at_ms=history[-1].recorded_at_ms,
        attempt=state.attempt,
        status=str(state.status),
    )


def _other_order(
    intent_id: str, history: Sequence[StoredEvent], order_type: str, status: str
) -> OpenAttempt:
    """A rebalance's, a receive's or a channel operation's one order (never re-routed:
    attempt 1)."""
    order = next(e for e in reversed(history) if e.type == order_type)
    return OpenAttempt(
        intent_id=intent_id, state=None, order=order,
        last_event_at_ms=history[-1].recorded_at_ms, attempt=1, status=status,
    )  # fmt: skip


# A channel operation waits for its node while requested (its order sent) or broadcast
# (waiting for confirmations): the executor's open and close resume from the node's record
# (memo or datastore, ADR 0233/0235), so a re-issued order never funds or closes twice.
_CHANNEL_WAITING: frozenset[ChannelOpStatus] = frozenset(
    {ChannelOpStatus.REQUESTED, ChannelOpStatus.BROADCAST}
)
_CHANNEL_ORDERS = ("ChannelOpenApproved", "ChannelOpenRequested", "ChannelCloseRequested")


def _channel_order(op_id: str, history: Sequence[StoredEvent]) -> OpenAttempt | None:
    op = channel_ops.replay(to_domain(e) for e in history)
    if op is None or op.status not in _CHANNEL_WAITING:
        return None
    # Tier approval: the approval is the order (ADR 0236); until it comes the request is a
    # notice, and re-sending it would only wake executors for nothing.
    if op.tier == "approval" and op.approved_by is None:
        return None
    order = next(e for e in reversed(history) if e.type in _CHANNEL_ORDERS)
    return _other_order(op_id, history, order.type, str(op.status))


async def open_orders_through(store: EventStore, through_position: int) -> list[StoredEvent]:
    """The logged work order of every attempt dispatched at or before ``through_position``
    that still waits for its node: what to re-issue when the dispatch stream lost orders."""
    after = 0
    orders: dict[str, StoredEvent] = {}  # by event id: an intent re-routed shows twice
    while True:
        page = await dispatched_between(
            store, after_position=after, through_position=through_position, limit=SCAN_PAGE_ORDERS
        )
        if not page:
            return list(orders.values())
        after = page[-1].position
        for attempt in await open_attempts(store, [order.intent_id for order in page]):
            orders[attempt.order.event_id] = attempt.order
