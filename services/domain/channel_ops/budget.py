"""Channel fees in the region's day budget (ADR 0285). Pure.

An open or a close holds its judged on-chain fee (``onchain_fee_msat``: the fixed virtual size
times its rate, ADR 0230) in the same ``rblb-`` stream as the region's rebalances (ADR 0245),
from the event that lets the executor act (the request, or an approval in tier ``approval``)
until the transaction confirms; then the fee is spent. The reservation's id is the operation's
id, so an operation is reserved at most once and released at most once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas import channel_messages as cm
from schemas.events import EventData
from schemas.rebalance_messages import RebalanceBudgetReleased, RebalanceBudgetReserved
from services.domain.channel_ops.state import ChannelOp
from services.domain.rebalance.budget import DayBudget

FEE_BUDGET_EXHAUSTED = "fee_budget_exhausted"


@dataclass(frozen=True, kw_only=True, slots=True)
class FeeBudget:
    """The day budget a command is judged by, as the engine read it."""

    stream_id: str
    region: str
    day: int
    budget_msat: int  # channel fees' limit per region and day (``channel_fee_budget_msat_per_day``)
    state: DayBudget | None


def fits(budget: FeeBudget, fee_msat: int) -> bool:
    used = budget.state.channel_used_msat if budget.state else 0
    return used + fee_msat <= budget.budget_msat


def budget_events(
    before: ChannelOp | None, events: Sequence[EventData], budget: FeeBudget | None
) -> list[EventData]:
    """The budget stream's events for an operation's new events: a reservation for an event
    that names a budget stream, the settlement when a reserved operation completes."""
    if budget is None:
        return []
    out: list[EventData] = []
    used = budget.state.channel_used_msat if budget.state else 0
    for event in events:
        if isinstance(event, cm.ChannelOpenRequested | cm.ChannelCloseRequested):
            if event.budget_stream is None:
                continue
            assert event.budget_stream == budget.stream_id
            out.append(RebalanceBudgetReserved(
                rebalance_id=event.op_id, source_region=budget.region, day=budget.day,
                reserved_msat=event.onchain_fee_msat, used_before_msat=used,
                budget_msat=budget.budget_msat,
            ))  # fmt: skip
        elif isinstance(event, cm.ChannelOpened | cm.ChannelClosed):
            if before is None or before.budget_stream is None:
                continue  # recorded before channel fees were budgeted: nothing was held
            assert before.budget_stream == budget.stream_id
            # The chain charged the judged fee: the transaction's size is fixed (ADR 0230).
            out.append(RebalanceBudgetReleased(
                rebalance_id=event.op_id, source_region=budget.region, day=budget.day,
                spent_msat=before.onchain_fee_msat, released_msat=0,
            ))  # fmt: skip
    return out
