"""Deterministic source routing: the cheapest-fee path, ties broken by hop count then names.

Dijkstra runs backwards from the destination, because the fee each forwarder charges depends
on the amount it forwards, which is only known from the destination's end (BOLT 7 fees). The
sender knows its own channel balances exactly but only the capacity of remote channels, like
a real node: a remote hop without liquidity is discovered when the attempt fails there.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from services.sim.channels import ChannelState, fee_msat

# BOLT 4 onion packets carry at most 20 hops (1300-byte payload with legacy 65-byte hops).
ROUTE_HOPS_MAX = 20


@dataclass(frozen=True, slots=True)
class RouteLimits:
    """lnd's ``SendPaymentRequest`` restrictions (``routerrpc/router.proto``): the channels the
    first hop may use (``outgoing_chan_ids``; empty: any), the node the last hop must come
    from (``last_hop_pubkey``, here its name), and ``allow_self_payment``, which makes a
    circular route from a node back to itself a route at all (a rebalance, ADR 0247)."""

    first_channels: frozenset[str] = frozenset()
    last_hop: str | None = None
    allow_self_payment: bool = False


NO_LIMITS = RouteLimits()
# The destination as the search's start when it is also the origin (a circular route): the
# origin reached as the first leg's sender is then a different search node.
_START = "\x00start"


@dataclass(frozen=True, slots=True)
class Leg:
    """One channel crossing: ``sender`` pushes ``amount_msat`` to ``receiver`` over ``channel``."""

    channel_id: str
    sender: str
    receiver: str
    amount_msat: int
    cltv_delta: int  # added by ``sender`` when it is a forwarder (0 for the origin)


@dataclass(frozen=True, slots=True)
class Route:
    legs: tuple[Leg, ...]
    amount_msat: int  # delivered to the destination

    @property
    def sent_msat(self) -> int:
        return self.legs[0].amount_msat

    @property
    def fee_msat(self) -> int:
        return self.sent_msat - self.amount_msat

    def nodes(self) -> tuple[str, ...]:
        return (self.legs[0].sender, *(leg.receiver for leg in self.legs))


def find_route(
    *,
    channels_by_node: Mapping[str, Sequence[ChannelState]],
    origin: str,
    destination: str,
    amount_msat: int,
    usable: Callable[[ChannelState], bool],
    excluded_channels: frozenset[str] = frozenset(),
    limits: RouteLimits = NO_LIMITS,
) -> Route | None:
    """The cheapest route from ``origin`` to ``destination`` delivering ``amount_msat``,
    within ``limits``. From a node to itself only with ``allow_self_payment``: then at least
    two channels, out one and back in another (lnd's circular rebalance)."""
    assert amount_msat > 0
    circular = origin == destination
    if circular and not limits.allow_self_payment:
        return None
    start = _START if circular else destination

    def at(node: str) -> str:
        return destination if node == _START else node

    # need[v]: msat that must arrive at v. Entries: (need, hops, node, path of (channel, sender)).
    best: dict[str, tuple[int, int]] = {start: (amount_msat, 0)}
    heap: list[tuple[int, int, str, tuple[tuple[str, str], ...]]] = [(amount_msat, 0, start, ())]
    channel_index = {c.channel_id: c for cs in channels_by_node.values() for c in cs}
    while heap:
        need_msat, hops, node, path = heapq.heappop(heap)
        if best[node] < (need_msat, hops):  # stale entry
            continue
        if node == origin and path:
            return _build_route(path, channel_index, amount_msat)
        if hops >= ROUTE_HOPS_MAX:
            continue
        for channel in channels_by_node.get(at(node), ()):
            sender = channel.peer_of(at(node))
            if channel.channel_id in excluded_channels or any(
                channel.channel_id == used for used, _ in path
            ):
                continue  # a circle crosses each channel once
            if sender == destination and not (circular and node != start):
                continue  # no route passes through its destination; a circle closes there
            if node == start and limits.last_hop is not None and sender != limits.last_hop:
                continue
            if need_msat > channel.capacity_msat or not usable(channel):
                continue
            # An unannounced channel is known only to its ends, and to a payer from the
            # payee's route hint: usable as the first or the last hop only.
            if channel.private and node != destination and sender != origin:
                continue
            if sender == origin:
                if limits.first_channels and channel.channel_id not in limits.first_channels:
                    continue
                if not channel.can_send(origin, need_msat):
                    continue
                sender_need_msat = need_msat
            else:
                sender_need_msat = need_msat + fee_msat(channel.policy[sender], need_msat)
            candidate = (sender_need_msat, hops + 1)
            if sender in best and best[sender] <= candidate:
                continue
            best[sender] = candidate
            heapq.heappush(
                heap,
                (sender_need_msat, hops + 1, sender, ((channel.channel_id, sender), *path)),
            )
    return None


def _build_route(
    path: tuple[tuple[str, str], ...], channel_index: Mapping[str, ChannelState], amount_msat: int
) -> Route:
    # Walk from the destination backwards to fill in the amount each leg carries.
    legs_reversed: list[Leg] = []
    carried_msat = amount_msat
    for index in range(len(path) - 1, -1, -1):
        channel_id, sender = path[index]
        channel = channel_index[channel_id]
        receiver = channel.peer_of(sender)
        is_origin = index == 0
        cltv_delta = 0 if is_origin else channel.policy[sender].cltv_delta
        legs_reversed.append(Leg(channel_id, sender, receiver, carried_msat, cltv_delta))
        if not is_origin:
            carried_msat += fee_msat(channel.policy[sender], carried_msat)
    return Route(legs=tuple(reversed(legs_reversed)), amount_msat=amount_msat)
