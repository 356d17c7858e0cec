"""Which day budget stream (``rblb-``, ADR 0245) a channel command is judged by (ADR 0285):
today's of its region for an open, a close or an approval; the one its operation reserved on
for an executor's report. The writer reads these streams with the batch's other budgets, the
planner appends to them in the same batch as the operation's events."""

from __future__ import annotations

from collections.abc import Sequence

from schemas import channel_messages as cm
from schemas.commands import ApprovePaymentIntent
from schemas.rebalance_messages import budget_day, budget_stream_id
from services.domain.channel_ops import ChannelOp
from services.engine.commands import QueuedCommand
from services.engine.rebalance_planning import RebalanceBook
from services.engine.stream_state_cache import StreamStateCache


def budget_stream_of(command: object, state: ChannelOp | None, now_ms: int) -> str | None:
    if isinstance(command, cm.OpenChannel | cm.CloseChannel):
        return budget_stream_id(command.region, budget_day(now_ms))
    if state is None:
        return None
    if isinstance(command, ApprovePaymentIntent):
        if state.region is None or state.tier != "approval":
            return None
        return budget_stream_id(state.region, budget_day(now_ms))
    if isinstance(command, cm.RecordChannelOpReport):
        return state.budget_stream
    return None


def day_of(stream_id: str) -> int:
    """The UTC day in ``rblb-<region>-<day>`` (a region may hold dashes, the day does not)."""
    return int(stream_id.rsplit("-", 1)[1])


async def load_channel_budgets(
    book: RebalanceBook, ops: StreamStateCache[ChannelOp], items: Sequence[QueuedCommand]
) -> None:
    now_ms = book.now_ms()
    wanted: list[str] = []
    for item in items:
        if item.error is not None or not cm.is_channel_op_stream(item.stream_id):
            continue
        stream_id = budget_stream_of(item.envelope.command, ops.get(item.stream_id), now_ms)
        if stream_id is not None and not book.budgets.known(stream_id):
            wanted.append(stream_id)
    if wanted:
        await book.budgets.load(wanted)
