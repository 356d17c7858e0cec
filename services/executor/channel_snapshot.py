"""Channel snapshots: every channel of one node, as its executor saw it (ADR 0240).

Each worker publishes a ``ChannelSnapshot`` on core NATS ``corridor.liquidity.v1.<region>.<node>``
beside its health report, every health interval. The health report stays a small fixed-size
summary the engine's router folds; the snapshot carries the rows the liquidity view, the
console and the planner need (capacity, balances, HTLCs in flight, peer, fee policy).

Rows come from ``NodePort.list_channels`` and, where the adapter serves it,
``pending_channels``; an adapter that does not yet (``NodeError``) gives a snapshot with
``pending_known`` false rather than none.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Final, Literal

import msgspec
import structlog

from services.bus import subjects
from services.lightning.port import Channel, NodeError, NodePort, PendingChannel

log = structlog.get_logger("corridor.executor")

LIQUIDITY_PREFIX: Final = subjects.LIQUIDITY_PREFIX
# Channels per snapshot: our regional nodes hold a few dozen channels; a node with more is a
# routing hub we do not run. The largest channels are kept and ``channels_total`` says how many
# there were, so a truncated view is flagged, never silently partial.
SNAPSHOT_CHANNELS_MAX: Final = 256
# Pending opens and closes per snapshot: a handful at a time in practice (each one is an
# on-chain transaction an operator or the planner asked for).
SNAPSHOT_PENDING_MAX: Final = 64
# A channel row encodes to ~400 bytes: 256 rows + 64 pending fit in 160 KiB, well under the
# NATS server's 1 MiB max_payload. Anything larger is not a snapshot.
SNAPSHOT_BYTES_MAX: Final = 160 * 1024
# Identifiers the node hands us: a channel point is a 64-hex txid, ':' and an index; a short
# channel id or LND chan_id is shorter; a pubkey is 66 hex. Generous, but bounded.
_ID_CHARS_MAX: Final = 96

_Id = Annotated[str, msgspec.Meta(max_length=_ID_CHARS_MAX)]
_Msat = Annotated[int, msgspec.Meta(ge=0)]


class ChannelRow(msgspec.Struct, frozen=True, kw_only=True):
    channel_id: _Id
    peer_pubkey: _Id
    capacity_msat: _Msat
    local_balance_msat: _Msat
    remote_balance_msat: _Msat
    pending_htlcs_msat: _Msat = 0
    active: bool
    channel_point: _Id = ""
    fee_base_msat: _Msat | None = None
    fee_ppm: _Msat | None = None
    initiator: bool | None = None


class PendingRow(msgspec.Struct, frozen=True, kw_only=True):
    channel_point: _Id
    peer_pubkey: _Id
    capacity_msat: _Msat
    local_balance_msat: _Msat
    state: Literal["opening", "closing"]
    confirmations: Annotated[int, msgspec.Meta(ge=0)] = 0


class ChannelSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    node: _Id
    region: _Id
    executor_id: _Id
    observed_at_ms: int
    # False: the node did not answer ``list_channels`` in time; the rows are then empty and
    # say nothing about the channels (the view keeps the last answer and shows its age).
    reachable: bool
    channels: Annotated[tuple[ChannelRow, ...], msgspec.Meta(max_length=SNAPSHOT_CHANNELS_MAX)]
    channels_total: Annotated[int, msgspec.Meta(ge=0)]
    pending: Annotated[tuple[PendingRow, ...], msgspec.Meta(max_length=SNAPSHOT_PENDING_MAX)] = ()
    pending_known: bool = False
    # The node's own pubkey ("" if it did not answer): where a rebalance to it is sent.
    node_pubkey: _Id = ""

    @property
    def truncated(self) -> bool:
        return self.channels_total > len(self.channels)


_decoder = msgspec.json.Decoder(ChannelSnapshot)


def snapshot_subject(region: str, node: str) -> str:
    return f"{LIQUIDITY_PREFIX}.{region}.{node}"


def subject_node(subject: str) -> tuple[str, str] | None:
    """``(region, node)`` from ``corridor.liquidity.v1.<region>.<node>``; None otherwise."""
    prefix = LIQUIDITY_PREFIX.split(".")
    tokens = subject.split(".")
    if len(tokens) != len(prefix) + 2 or tokens[: len(prefix)] != prefix:
        return None
    region, node = tokens[-2:]
    return (region, node) if region and node else None


def decode_snapshot(raw: bytes) -> ChannelSnapshot:
    """Raises ``msgspec.DecodeError`` (a ``ValueError``) for anything but a snapshot."""
    if len(raw) > SNAPSHOT_BYTES_MAX:
        raise ValueError(f"channel snapshot is {len(raw)} bytes, limit is {SNAPSHOT_BYTES_MAX}")
    return _decoder.decode(raw)


def channel_row(channel: Channel) -> ChannelRow:
    return ChannelRow(
        channel_id=channel.channel_id[:_ID_CHARS_MAX],
        peer_pubkey=channel.peer_pubkey[:_ID_CHARS_MAX],
        capacity_msat=max(0, channel.capacity_msat),
        local_balance_msat=max(0, channel.local_balance_msat),
        remote_balance_msat=max(0, channel.remote_balance_msat),
        pending_htlcs_msat=max(0, channel.pending_htlcs_msat),
        active=channel.active,
        channel_point=channel.channel_point[:_ID_CHARS_MAX],
        fee_base_msat=_not_negative(channel.fee_base_msat),
        fee_ppm=_not_negative(channel.fee_ppm),
        initiator=channel.initiator,
    )


def _not_negative(value: int | None) -> int | None:
    # Constraints are checked on decode only: a row the receivers would refuse is never sent.
    return None if value is None else max(0, value)


def pending_row(pending: PendingChannel) -> PendingRow:
    return PendingRow(
        channel_point=pending.channel_point[:_ID_CHARS_MAX],
        peer_pubkey=pending.peer_pubkey[:_ID_CHARS_MAX],
        capacity_msat=max(0, pending.capacity_msat),
        local_balance_msat=max(0, pending.local_balance_msat),
        state=pending.state,
        confirmations=max(0, pending.confirmations),
    )


async def observe_channels(
    node: NodePort, *, region: str, node_name: str, executor_id: str, timeout_s: float
) -> ChannelSnapshot:
    """One snapshot; each node call gets ``timeout_s``."""
    channels: list[Channel] = []
    reachable = True
    pubkey = ""
    try:
        async with asyncio.timeout(timeout_s):
            channels = await node.list_channels()
            pubkey = (await node.get_info()).pubkey
    except (NodeError, TimeoutError) as exc:
        log.info("node_channels_unreadable", error=type(exc).__name__)
        reachable = False
    pending: list[PendingChannel] = []
    pending_known = False
    if reachable:
        try:
            async with asyncio.timeout(timeout_s):
                pending = await node.pending_channels()
            pending_known = True
        except (NodeError, TimeoutError):
            pass  # adapters that do not serve it yet raise NodeError: the view says "unknown"
    kept = sorted(channels, key=lambda c: (-c.capacity_msat, c.channel_id))
    return ChannelSnapshot(
        node=node_name,
        region=region,
        executor_id=executor_id,
        observed_at_ms=time.time_ns() // 1_000_000,
        reachable=reachable,
        channels=tuple(channel_row(c) for c in kept[:SNAPSHOT_CHANNELS_MAX]),
        channels_total=len(channels),
        pending=tuple(pending_row(p) for p in pending[:SNAPSHOT_PENDING_MAX]),
        pending_known=pending_known,
        node_pubkey=pubkey[:_ID_CHARS_MAX],
    )
