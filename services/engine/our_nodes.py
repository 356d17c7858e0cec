"""The engine's directory of our nodes (ADR 0249): which nodes are ours, from its own node
table (the corridor table's region/node pairs, as the health board's), and each one's pubkey,
from the channel snapshots that node's executor publishes (``corridor.liquidity.v1.<region>.
<node>``, ADR 0240). NATS lets an executor publish on its own node's subject only (ADR 0061),
so a pubkey here is the word of that node's executor, never of a request. A rebalance may
pay nothing but a pubkey found here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec
import structlog

from services.domain.rebalance.ours import NodeDirectory
from services.executor.channel_snapshot import SNAPSHOT_BYTES_MAX, subject_node

log = structlog.get_logger("corridor.engine.our_nodes")
# A compressed secp256k1 pubkey in hex: anything else a snapshot names is not learned.
_PUBKEY_CHARS: Final = 66
# Snapshots waiting for the engine's subscription: a few per node and health interval; the
# newest wins, so one dropped when the engine lags loses nothing.
SNAPSHOTS_PENDING_MAX: Final = 64
SNAPSHOTS_PENDING_BYTES_MAX: Final = SNAPSHOTS_PENDING_MAX * SNAPSHOT_BYTES_MAX


class _Head(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a channel snapshot (``ChannelSnapshot``) the engine reads: its channels
    are skipped unread, so the writer's event loop spends little on them."""

    node: str
    region: str
    reachable: bool
    node_pubkey: str = ""


_decode_head = msgspec.json.Decoder(_Head).decode


class OurNodes:
    def __init__(self, nodes: Iterable[tuple[str, str]]) -> None:
        # Bounded by the node table: snapshots of other nodes teach nothing.
        self._pubkeys: dict[tuple[str, str], str | None] = dict.fromkeys(nodes)

    def directory(self) -> NodeDirectory:
        return dict(self._pubkeys)

    def learn(self, region: str, node: str, pubkey: str) -> bool:
        key = (region, node)
        if key not in self._pubkeys or not _is_pubkey(pubkey):
            return False
        if self._pubkeys[key] != pubkey:
            log.info("node_pubkey_learned", region=region, node=node, pubkey=pubkey)
            self._pubkeys[key] = pubkey
        return True

    def receive(self, subject: str, raw: bytes) -> bool:
        """One channel snapshot; False when it taught nothing."""
        key = subject_node(subject)
        if key is None:
            return False
        if len(raw) > SNAPSHOT_BYTES_MAX:
            return False
        try:
            snapshot = _decode_head(raw)
        except msgspec.DecodeError:
            return False
        if (snapshot.region, snapshot.node) != key or not snapshot.reachable:
            return False
        return self.learn(*key, snapshot.node_pubkey)


def _is_pubkey(value: str) -> bool:
    if len(value) != _PUBKEY_CHARS or value[:2] not in ("02", "03"):
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
