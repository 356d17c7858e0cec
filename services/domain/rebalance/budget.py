"""The fee budget of one source region for one UTC day, folded from its budget stream
(ADR 0245). Pure. A reservation holds a move's whole ``max_fee_msat`` from its request until
it ends; then what it spent stays used and the rest is released."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from schemas.channel_messages import CHANNEL_OP_STREAM_PREFIX as CHANNEL_OP_PREFIX
from schemas.events import EventData
from schemas.rebalance_messages import RebalanceBudgetReleased, RebalanceBudgetReserved


class DayBudget(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 0
    spent_msat: int = 0  # fees of moves that ended (succeeded)
    open_msat: Mapping[str, int] = msgspec.field(default_factory=dict)  # rebalance -> reserved

    channel_spent_msat: int = 0  # the part of ``spent_msat`` that channel fees spent

    @property
    def used_msat(self) -> int:
        """Spent, plus every open move's whole reservation: the most the day can have paid."""
        return self.spent_msat + sum(self.open_msat.values())

    @property
    def channel_used_msat(self) -> int:
        """The channel operations' share (ADR 0285): each kind is judged by its own limit, so
        an open's on-chain fee never uses up the rebalances' day, nor the other way round."""
        return self.channel_spent_msat + sum(
            v for k, v in self.open_msat.items() if k.startswith(CHANNEL_OP_PREFIX)
        )

    @property
    def rebalance_used_msat(self) -> int:
        """The rebalances' share: what their own day limit is judged by."""
        return self.used_msat - self.channel_used_msat


def evolve_budget(state: DayBudget | None, event: EventData) -> DayBudget:
    state = state or DayBudget()
    match event:
        case RebalanceBudgetReserved():
            assert event.rebalance_id not in state.open_msat, "one reservation per rebalance"
            assert event.reserved_msat >= 0
            opened = {**state.open_msat, event.rebalance_id: event.reserved_msat}
            return DayBudget(version=state.version + 1, spent_msat=state.spent_msat,
                             open_msat=opened,
                             channel_spent_msat=state.channel_spent_msat)  # fmt: skip
        case RebalanceBudgetReleased():
            reserved = state.open_msat.get(event.rebalance_id)
            assert reserved is not None, "a release follows its reservation"
            # A fee over the reservation (a node that broke its limit) is still what was spent.
            assert event.released_msat == max(0, reserved - event.spent_msat)
            left = {k: v for k, v in state.open_msat.items() if k != event.rebalance_id}
            channel = event.spent_msat if event.rebalance_id.startswith(CHANNEL_OP_PREFIX) else 0
            return DayBudget(version=state.version + 1,
                             spent_msat=state.spent_msat + event.spent_msat,
                             open_msat=left,
                             channel_spent_msat=state.channel_spent_msat + channel)  # fmt: skip
    raise AssertionError(f"{type(event).__name__} is not a budget event")


def fold_budget(events: Iterable[EventData]) -> DayBudget | None:
    state: DayBudget | None = None
    for event in events:
        state = evolve_budget(state, event)
    return state
