"""The engine's directory of our nodes (ADR 0249): a pubkey is learned only from a snapshot
on the node's own subject, of a node in the engine's table, that names a valid pubkey."""

from __future__ import annotations

import msgspec

from services.engine.our_nodes import OurNodes
from services.executor.channel_snapshot import ChannelSnapshot, snapshot_subject

PUBKEY = "02" + "ab" * 32


def _raw(region: str = "us", node: str = "us-lnd", *, pubkey: str = PUBKEY,
         reachable: bool = True) -> bytes:  # fmt: skip
    return msgspec.json.encode(ChannelSnapshot(
        node=node, region=region, executor_id="x", observed_at_ms=1, reachable=reachable,
        channels=(), channels_total=0, node_pubkey=pubkey,
    ))  # fmt: skip


def test_a_pubkey_is_learned_from_the_node_s_own_snapshot_only() -> None:
    nodes = OurNodes({("us", "us-lnd"), ("eu", "eu-lnd")})
    assert nodes.directory() == {("us", "us-lnd"): None, ("eu", "eu-lnd"): None}
    us = snapshot_subject("us", "us-lnd")
    assert not nodes.receive(snapshot_subject("eu", "eu-lnd"), _raw())  # another node's subject
    assert not nodes.receive(snapshot_subject("us", "mallory"), _raw("us", "mallory"))
    assert not nodes.receive(us, _raw(reachable=False))
    assert not nodes.receive(us, _raw(pubkey="04" + "ab" * 32))
    assert not nodes.receive(us, _raw(pubkey="02" + "zz" * 32))
    assert not nodes.receive(us, b"{not json")
    assert nodes.directory()[("us", "us-lnd")] is None
    assert nodes.receive(us, _raw())
    assert nodes.directory() == {("us", "us-lnd"): PUBKEY, ("eu", "eu-lnd"): None}
    assert ("us", "mallory") not in nodes.directory()
