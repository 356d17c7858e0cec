"""``intents get`` and ``intents status`` of a rebalance and of a day's budget stream
(ADR 0244, 0245), read from the log with the payment's replies (``stream_reads``)."""

from __future__ import annotations

from schemas.rebalance_messages import is_rebalance_budget_stream
from schemas.replies import CommandRejected, PaymentIntentStatus, PaymentIntentView
from services.domain.principal import Principal
from services.domain.rebalance import DayBudget, Rebalance, fold, fold_budget
from services.engine.stream_reads import StreamKind, stream_status, stream_view
from services.eventstore.port import EventStore


def may_read_rebalance(reader: Principal | None, state: Rebalance, history: bool) -> bool:
    """The planner that asked, operators, auditors; the source node's executor the status
    only (it asks before it pays, ADR 0203)."""
    if reader is None:
        return True
    match reader.role:
        case "engine" | "operator" | "auditor":
            return True
        case "caller" | "agent":
            return reader.id == state.caller.id
        case "executor":
            return not history and reader.id == state.node
    return False


def may_read_budget(reader: Principal | None, _state: DayBudget, _history: bool) -> bool:
    """A day's budget holds every caller's moves of that region: operators and auditors (the
    planner reads it with its operator connection, as it reads the liquidity view)."""
    return reader is None or reader.role in ("engine", "operator", "auditor")


REBALANCES: StreamKind[Rebalance] = StreamKind(
    noun="rebalance",
    fold=fold,
    may_read=may_read_rebalance,
    status=lambda state: str(state.status),
    version=lambda state: state.version,
    reason=lambda state: state.reason,
    attempt=lambda state: state.attempt,
)
BUDGETS: StreamKind[DayBudget] = StreamKind(
    noun="rebalance budget",
    fold=fold_budget,
    may_read=may_read_budget,
    status=lambda _: "open",
    version=lambda state: state.version,
    reason=lambda state: f"used_msat={state.used_msat}",
)


async def rebalance_view(
    store: EventStore, stream_id: str, reader: Principal | None
) -> PaymentIntentView | CommandRejected:
    if is_rebalance_budget_stream(stream_id):
        return await stream_view(store, BUDGETS, stream_id, reader)
    return await stream_view(store, REBALANCES, stream_id, reader)


async def rebalance_status(
    store: EventStore, stream_id: str, reader: Principal | None
) -> PaymentIntentStatus | CommandRejected:
    if is_rebalance_budget_stream(stream_id):
        return await stream_status(store, BUDGETS, stream_id, reader)
    return await stream_status(store, REBALANCES, stream_id, reader)
