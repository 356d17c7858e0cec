"""Topology of a simulated network: node and channel specs, the default map, and file loading.

A topology is plain data; ``SimNetwork.from_topology`` turns it into live state. Files are YAML
or JSON with the same shape as ``Topology`` (see ``topologies/small.yaml``).
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import yaml

from services.sim.errors import TopologyError
from services.sim.records import Implementation, NodeRole

BTC_MSAT = 100_000_000_000
# Bounds that keep a hostile or mistyped topology file from eating the machine.
NODES_MAX = 1000
CHANNELS_MAX = 10_000
# Starting on-chain wallets (sat) when a topology gives none: enough for our nodes to open a
# few channels the size of the default map's, finite so that running dry can be tested.
ONCHAIN_SAT_DEFAULT: dict[str, int] = {
    "ours": 200_000_000,  # 2 BTC
    "hub": 1_000_000_000,  # 10 BTC
    "merchant": 10_000_000,  # 0.1 BTC
    "lsp": 1_000_000_000,  # 10 BTC: it funds the channels it sells
    "wallet": 0,  # a payee's new wallet: inbound liquidity comes from us (ADR 0271)
}
# No more bitcoin than will ever exist, per node: a bigger number is a unit mistake.
ONCHAIN_SAT_MAX = 21_000_000 * 100_000_000


class PolicySpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Forwarding policy a node applies to HTLCs it sends out over one channel."""

    fee_base_msat: int = 1000
    fee_ppm: int = 1
    cltv_delta: int = 40


class NodeSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    role: NodeRole
    implementation: Implementation = "lnd"
    region: str | None = None
    alias: str | None = None
    # The node's on-chain wallet at the start, in sat; None: the default for its role.
    onchain_sat: int | None = None

    def wallet_sat(self) -> int:
        return ONCHAIN_SAT_DEFAULT[self.role] if self.onchain_sat is None else self.onchain_sat


class ChannelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    a: str  # the opener
    b: str
    capacity_msat: int
    a_balance_msat: int | None = None  # None: half of the capacity on each side
    a_policy: PolicySpec = PolicySpec()
    b_policy: PolicySpec = PolicySpec()


class Topology(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    nodes: tuple[NodeSpec, ...]
    channels: tuple[ChannelSpec, ...]
    network: str = "regtest"
    block_height: int = 800

    def validate(self) -> None:
        """Raise ``TopologyError`` on an inconsistent topology."""
        if len(self.nodes) > NODES_MAX or len(self.channels) > CHANNELS_MAX:
            raise TopologyError(
                f"topology too large (max {NODES_MAX} nodes, {CHANNELS_MAX} channels)"
            )
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise TopologyError(f"duplicate node names: {duplicates}")
        known = set(names)
        for node in self.nodes:
            if node.onchain_sat is not None and not 0 <= node.onchain_sat <= ONCHAIN_SAT_MAX:
                raise TopologyError(f"node {node.name}: onchain_sat must be within [0, 21e14]")
        for index, ch in enumerate(self.channels):
            where = f"channel #{index} ({ch.a}-{ch.b})"
            if ch.a not in known or ch.b not in known:
                raise TopologyError(f"{where}: unknown node")
            if ch.a == ch.b:
                raise TopologyError(f"{where}: a channel needs two different nodes")
            if ch.capacity_msat <= 0:
                raise TopologyError(f"{where}: capacity_msat must be positive")
            if ch.a_balance_msat is not None and not 0 <= ch.a_balance_msat <= ch.capacity_msat:
                raise TopologyError(f"{where}: a_balance_msat must be within [0, capacity_msat]")
            for policy in (ch.a_policy, ch.b_policy):
                if policy.fee_base_msat < 0 or policy.fee_ppm < 0 or policy.cltv_delta < 0:
                    raise TopologyError(f"{where}: fees and cltv_delta must be non-negative")


def load_topology(path: Path) -> Topology:
    """Read a YAML or JSON topology file; raise ``TopologyError`` with a readable reason."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read topology {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        topology = msgspec.convert(raw, Topology)
    except (yaml.YAMLError, json.JSONDecodeError, msgspec.ValidationError) as exc:
        raise TopologyError(f"invalid topology {path}: {exc}") from exc
    topology.validate()
    return topology


REGIONS = ("us", "eu", "asia")
MERCHANTS = 20


def default_topology() -> Topology:
    """Three regions with an LND and a CLN node of ours each, four hubs, 20 merchants.

    Our nodes open 0.5-1 BTC channels to their regional hub and to the global hub; hubs are
    fully meshed with 5 BTC channels; merchants are reached through hubs only, so every
    payment of ours is multi-hop, like in production.
    """
    nodes: list[NodeSpec] = []
    channels: list[ChannelSpec] = []
    hubs = [f"hub-{region}" for region in REGIONS] + ["hub-global"]
    hub_policy = {
        "hub-us": PolicySpec(fee_base_msat=1000, fee_ppm=100, cltv_delta=40),
        "hub-eu": PolicySpec(fee_base_msat=500, fee_ppm=200, cltv_delta=40),
        "hub-asia": PolicySpec(fee_base_msat=1000, fee_ppm=250, cltv_delta=80),
        "hub-global": PolicySpec(fee_base_msat=2000, fee_ppm=50, cltv_delta=144),
    }
    ours_policy = PolicySpec(fee_base_msat=0, fee_ppm=10, cltv_delta=40)
    for hub in hubs:
        region = hub.removeprefix("hub-")
        nodes.append(
            NodeSpec(
                name=hub,
                role="hub",
                implementation="lnd",
                region=region if region in REGIONS else None,
            )
        )
    for i, a in enumerate(hubs):
        for b in hubs[i + 1 :]:
            channels.append(
                ChannelSpec(
                    a=a,
                    b=b,
                    capacity_msat=5 * BTC_MSAT,
                    a_policy=hub_policy[a],
                    b_policy=hub_policy[b],
                )
            )
    for region in REGIONS:
        for implementation in ("lnd", "cln"):
            name = f"{region}-{implementation}"
            nodes.append(
                NodeSpec(
                    name=name,
                    role="ours",
                    implementation=implementation,
                    region=region,
                    alias=f"corridor-{name}",
                )
            )
            # We opened these: most liquidity is ours (outbound for paying merchants).
            for hub, capacity_msat in ((f"hub-{region}", BTC_MSAT), ("hub-global", BTC_MSAT // 2)):
                channels.append(
                    ChannelSpec(
                        a=name,
                        b=hub,
                        capacity_msat=capacity_msat,
                        a_balance_msat=capacity_msat * 8 // 10,
                        a_policy=ours_policy,
                        b_policy=hub_policy[hub],
                    )
                )
    merchant_policy = PolicySpec(fee_base_msat=1000, fee_ppm=1, cltv_delta=40)
    for i in range(1, MERCHANTS + 1):
        region = REGIONS[(i - 1) % len(REGIONS)]
        name = f"merchant-{i:02d}"
        nodes.append(
            NodeSpec(
                name=name, role="merchant", region=region, implementation="lnd" if i % 2 else "cln"
            )
        )
        # Hubs opened these to sell inbound liquidity: most balance is on the hub side.
        capacity_msat = (10 + (i % 5) * 5) * BTC_MSAT // 100  # 0.10-0.30 BTC
        hub = f"hub-{region}"
        channels.append(
            ChannelSpec(
                a=hub,
                b=name,
                capacity_msat=capacity_msat,
                a_balance_msat=capacity_msat * 7 // 10,
                a_policy=hub_policy[hub],
                b_policy=merchant_policy,
            )
        )
        if i % 3 == 0:
            channels.append(
                ChannelSpec(
                    a="hub-global",
                    b=name,
                    capacity_msat=capacity_msat,
                    a_balance_msat=capacity_msat * 7 // 10,
                    a_policy=hub_policy["hub-global"],
                    b_policy=merchant_policy,
                )
            )
    topology = Topology(nodes=tuple(nodes), channels=tuple(channels))
    topology.validate()
    return topology
