"""Opening a channel for a channel-open intent, never twice (ADR 0233).

The node's own record decides, as for payments (ADR 0203): every open carries the memo
``corridor:open:<intent_id>``, which the node keeps with the channel (lnd's
``OpenChannelRequest.memo``). Before opening, every delivery (the first included: a relay may
re-publish) looks for a pending or open channel with that memo. Found: report it, open
nothing. Not found: open once. A node that cannot be asked raises ``NodeError`` and nothing is
opened; the order comes back later.

Called by the executor's channel worker (``channel_worker.py``, ADR 0234) for every channel-open
order the engine dispatches.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec
import structlog

from services.lightning.port import ChannelOpening, NodePort

log = structlog.get_logger(__name__)

MEMO_PREFIX: Final = "corridor:open:"


class ChannelOpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    intent_id: str
    peer_pubkey: str
    local_amount_msat: int
    sat_per_vbyte: int
    push_msat: int = 0
    # A JIT channel (ADR 0261): usable at once under an scid alias, unannounced.
    zero_conf: bool = False
    private: bool = False


class ChannelOpenReport(msgspec.Struct, frozen=True, kw_only=True):
    """What the executor reports: the funding outpoint, and whether this delivery opened it
    (``opened``) or found an earlier delivery's open on the node (``found``)."""

    intent_id: str
    channel_point: str
    funding_txid: str
    how: Literal["opened", "found"]
    state: Literal["opening", "open"]


def memo_for(intent_id: str) -> str:
    return f"{MEMO_PREFIX}{intent_id}"


async def find_open(node: NodePort, intent_id: str) -> ChannelOpenReport | None:
    """The node's record of this intent's open: a pending or an open channel with its memo."""
    memo = memo_for(intent_id)
    for pending in await node.pending_channels():
        if pending.memo == memo and pending.state == "opening":
            return _report(intent_id, pending.channel_point, "found", "opening")
    for channel in await node.list_channels():
        if channel.memo == memo:
            return _report(intent_id, channel.channel_point, "found", "open")
    return None


async def open_once(node: NodePort, order: ChannelOpenOrder) -> ChannelOpenReport:
    """Open the order's channel unless the node already holds it; raises ``NodeError`` (and
    opens nothing more) when the node cannot be asked or refuses."""
    existing = await find_open(node, order.intent_id)
    if existing is not None:
        log.info("channel_open_found", intent_id=order.intent_id, point=existing.channel_point)
        return existing
    opening: ChannelOpening = await node.open_channel(
        peer_pubkey=order.peer_pubkey,
        local_amount_msat=order.local_amount_msat,
        sat_per_vbyte=order.sat_per_vbyte,
        push_msat=order.push_msat,
        memo=memo_for(order.intent_id),
        zero_conf=order.zero_conf,
        private=order.private,
    )
    log.info("channel_open_broadcast", intent_id=order.intent_id, point=opening.channel_point)
    return _report(order.intent_id, opening.channel_point, "opened", "opening")


def _report(
    intent_id: str,
    channel_point: str,
    how: Literal["opened", "found"],
    state: Literal["opening", "open"],
) -> ChannelOpenReport:
    return ChannelOpenReport(
        intent_id=intent_id,
        channel_point=channel_point,
        funding_txid=channel_point.partition(":")[0],
        how=how,
        state=state,
    )
