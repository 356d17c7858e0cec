"""Live state of the simulated network: nodes, channels and which nodes are online."""

from __future__ import annotations

import random
from collections.abc import Callable

from services.sim.chain import Chain
from services.sim.channels import ChannelState
from services.sim.errors import NodeExists, TopologyError, UnknownChannel, UnknownNode
from services.sim.invoices import InvoiceBook
from services.sim.keys import derive_bytes, node_privkey, pubkey_hex
from services.sim.records import SimChannel, SimHtlc, SimNode
from services.sim.topology import NODES_MAX, NodeSpec, Topology

# Simulated channels were funded in the chain's first blocks, after the coinbase maturity window.
_FIRST_FUNDING_BLOCK = 101


class NetworkState:
    def __init__(self, topology: Topology, *, seed: int, now_s: Callable[[], float]) -> None:
        topology.validate()
        self.seed = seed
        self.network = topology.network
        self.nodes: dict[str, SimNode] = {}
        self._by_pubkey: dict[str, SimNode] = {}
        for spec in topology.nodes:
            privkey = node_privkey(seed, spec.name)
            node = SimNode(
                name=spec.name,
                role=spec.role,
                region=spec.region,
                implementation=spec.implementation,
                pubkey=pubkey_hex(privkey),
                privkey=privkey,
                alias=spec.alias or spec.name,
            )
            self.nodes[node.name] = node
            self._by_pubkey[node.pubkey] = node
        self.channels: dict[str, ChannelState] = {}
        self.channels_by_node: dict[str, list[ChannelState]] = {name: [] for name in self.nodes}
        rng = random.Random(seed)
        for index, ch in enumerate(topology.channels):
            block = _FIRST_FUNDING_BLOCK + index
            channel_id = f"{block}x{rng.randrange(1, 2000)}x{rng.randrange(0, 2)}"
            a_balance_msat = (
                ch.capacity_msat // 2 if ch.a_balance_msat is None else ch.a_balance_msat
            )
            channel = ChannelState(
                channel_id=channel_id,
                node_a=ch.a,
                node_b=ch.b,
                capacity_msat=ch.capacity_msat,
                balance_msat={ch.a: a_balance_msat, ch.b: ch.capacity_msat - a_balance_msat},
                policy={ch.a: ch.a_policy, ch.b: ch.b_policy},
                funding_txid=derive_bytes(seed, "funding-tx", index).hex(),
                funding_output=int(channel_id.rsplit("x", 1)[1]),
            )
            self.channels[channel_id] = channel
            self.channels_by_node[ch.a].append(channel)
            self.channels_by_node[ch.b].append(channel)
        # Sorted adjacency makes routing independent of insertion order.
        for channel_list in self.channels_by_node.values():
            channel_list.sort(key=lambda c: c.channel_id)
        height = max(topology.block_height, _FIRST_FUNDING_BLOCK + len(self.channels) + 6)
        self.chain = Chain(seed=seed, height=height, start_s=now_s())
        for spec in topology.nodes:
            if spec.wallet_sat() > 0:
                self.chain.fund_wallet(spec.name, spec.wallet_sat())
        self.offline: set[str] = set()
        self.invoices = InvoiceBook(seed=seed, network=self.network, now_s=now_s)

    @property
    def block_height(self) -> int:
        return self.chain.height

    def add_node(self, spec: NodeSpec) -> SimNode:
        """A node joining the running network (a payee's wallet, ADR 0271): keys derived
        from the seed and its name like the topology's, no channels, its wallet funded."""
        if spec.name in self.nodes:
            raise NodeExists(spec.name)
        if len(self.nodes) >= NODES_MAX:
            raise TopologyError(f"the network has its {NODES_MAX} nodes")
        privkey = node_privkey(self.seed, spec.name)
        node = SimNode(
            name=spec.name, role=spec.role, region=spec.region,
            implementation=spec.implementation, pubkey=pubkey_hex(privkey), privkey=privkey,
            alias=spec.alias or spec.name,
        )  # fmt: skip
        self.nodes[node.name] = node
        self._by_pubkey[node.pubkey] = node
        self.channels_by_node[node.name] = []
        if spec.wallet_sat() > 0:
            self.chain.fund_wallet(spec.name, spec.wallet_sat())
        return node

    def node(self, name: str) -> SimNode:
        try:
            return self.nodes[name]
        except KeyError:
            raise UnknownNode(name) from None

    def node_by_pubkey(self, pubkey: str) -> SimNode:
        try:
            return self._by_pubkey[pubkey.lower()]
        except KeyError:
            raise UnknownNode(pubkey) from None

    def resolve_node(self, name_or_pubkey: str) -> SimNode:
        """A node by name, or by pubkey when the string is one."""
        if name_or_pubkey in self.nodes:
            return self.nodes[name_or_pubkey]
        return self.node_by_pubkey(name_or_pubkey)

    def channel(self, channel_id: str) -> ChannelState:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise UnknownChannel(channel_id) from None

    def is_online(self, name: str) -> bool:
        return name not in self.offline

    def is_active(self, channel: ChannelState) -> bool:
        return (
            not channel.disabled
            and channel.node_a not in self.offline
            and channel.node_b not in self.offline
        )

    def channel_view(self, channel: ChannelState, node: str) -> SimChannel:
        peer = channel.peer_of(node)
        return SimChannel(
            channel_id=channel.channel_id,
            node=node,
            peer=peer,
            peer_pubkey=self.nodes[peer].pubkey,
            capacity_msat=channel.capacity_msat,
            local_balance_msat=channel.balance_msat[node],
            remote_balance_msat=channel.balance_msat[peer],
            pending_htlc_msat=channel.pending_msat(),
            active=self.is_active(channel),
            fee_base_msat=channel.policy[node].fee_base_msat,
            fee_ppm=channel.policy[node].fee_ppm,
            cltv_delta=channel.policy[node].cltv_delta,
            funding_txid=channel.funding_txid,
            funding_output=channel.funding_output,
            opener_is_local=channel.node_a == node,
            memo=channel.memo if channel.node_a == node else "",
            htlcs=tuple(
                SimHtlc(
                    htlc_id=htlc_id,
                    incoming=htlc.sender != node,
                    amount_msat=htlc.amount_msat,
                    payment_hash=htlc.payment_hash,
                )
                for htlc_id, htlc in sorted(channel.htlcs.items())
            ),
            push_msat=channel.push_msat,
            private=channel.private,
            zero_conf=channel.zero_conf,
        )

    def channels_of(self, name: str) -> list[SimChannel]:
        self.node(name)
        return [self.channel_view(c, name) for c in self.channels_by_node[name]]
