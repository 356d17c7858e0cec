"""Channel opens in the whole-engine simulation (issue 18, ADR 0233, 0234, 0283): the operator
asks for ``OpenChannel`` operations from an LND node of ours to a merchant, some asked again
with the same key, while the world's faults go on and a block is mined every step. Its own
seeded draws, so the other workloads draw as before.

Invariants (``channel_open_invariants``, over the log and the simulated chain's channels):
- ``channel_open_funded_once``: at most one funding transaction per operation on the chain,
  found by the memo the executor gives every open (``corridor:open:<op id>``);
- ``channel_open_matches_chain``: an operation the log says broadcast names that funding
  transaction;
- ``channel_open_at_rest`` (at rest): every operation is ``completed`` or ``rejected``, or
  waits for an operator's approval.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from schemas.channel_messages import CHANNEL_OP_STREAM_PREFIX, FUNDING_TX_VSIZE
from services.bus import subjects
from services.eventstore.port import StoredEvent
from services.executor.channel_open import MEMO_PREFIX
from services.sim.network import SimNetwork
from services.simulation.invariants import Violation, by_stream

CHANNEL_OPEN_FUNDED_ONCE: Final = "channel_open_funded_once"
CHANNEL_OPEN_MATCHES_CHAIN: Final = "channel_open_matches_chain"
CHANNEL_OPEN_AT_REST: Final = "channel_open_at_rest"
# The share of steps an open is asked for, and of requests asked again with the same key.
OPEN_SHARE: Final = 0.15
REPEAT_SHARE: Final = 0.2
# Channel sizes in sat: within the engine's auto tier (2**24 - 1 sat), far below the 2 BTC
# each node of ours holds on chain.
AMOUNT_SAT_MIN: Final = 200_000
AMOUNT_SAT_MAX: Final = 2_000_000
SAT_PER_VBYTE_MAX: Final = 10
# The whole funding fee at the highest rate fits.
MAX_ONCHAIN_FEE_MSAT: Final = SAT_PER_VBYTE_MAX * FUNDING_TX_VSIZE * 1_000

Ask = Callable[[str, str, dict[str, Any]], Any]  # (connection id, subject, body) -> answer


class ChannelOpenWorkload:
    def __init__(
        self, seed: int, *, network: SimNetwork, ours: Mapping[str, str], merchants: list[str]
    ) -> None:
        self.rng = random.Random(f"channel-opens:{seed}")
        self._network = network
        self._ours = dict(sorted(ours.items()))  # node -> region
        self._merchants = merchants
        self._keys = 0
        self._asked: list[dict[str, Any]] = []

    def step(self, spawn: Callable[[Any], None], ask: Ask, operator: str) -> None:
        if self.rng.random() < OPEN_SHARE:
            self._keys += 1
            lnd = [n for n in self._ours if self._network.nodes[n].implementation == "lnd"]
            node = lnd[self.rng.randrange(len(lnd))]
            peer = self._merchants[self.rng.randrange(len(self._merchants))]
            body = {
                "type": "OpenChannel", "version": 1,
                "idempotency_key": f"sim-chop-{self._keys}", "region": self._ours[node],
                "node": node, "sat_per_vbyte": self.rng.randrange(1, SAT_PER_VBYTE_MAX + 1),
                "max_onchain_fee_msat": MAX_ONCHAIN_FEE_MSAT,
                "peer_pubkey": self._network.nodes[peer].pubkey,
                "local_amount_msat": self.rng.randrange(AMOUNT_SAT_MIN, AMOUNT_SAT_MAX) * 1_000,
            }  # fmt: skip
            self._asked.append(body)
            spawn(ask(operator, f"{subjects.API_PREFIX}.channel_open.{operator}", body))
        if self._asked and self.rng.random() < REPEAT_SHARE:
            body = self._asked[self.rng.randrange(len(self._asked))]
            spawn(ask(operator, f"{subjects.API_PREFIX}.channel_open.{operator}", body))


def funding_by_op(network: SimNetwork, nodes: Iterable[str]) -> dict[str, set[str]]:
    """Op id -> the funding txids on the chain whose channel carries its memo."""
    found: dict[str, set[str]] = {}
    for node in sorted(nodes):
        seen = [(c.memo, c.funding_txid) for c in network.channels_of(node)]
        seen += [(c.memo, c.funding_txid) for c in network.pending_channels_of(node)]
        for memo, txid in seen:
            if memo.startswith(MEMO_PREFIX):
                found.setdefault(memo.removeprefix(MEMO_PREFIX), set()).add(txid)
    return found


def channel_open_invariants(
    events: Iterable[StoredEvent], funding: Mapping[str, set[str]], *, at_rest: bool
) -> list[Violation]:
    out: list[Violation] = []
    for op_id, txids in sorted(funding.items()):
        if len(txids) > 1:
            out.append(Violation(CHANNEL_OPEN_FUNDED_ONCE, f"{len(txids)} funding txs", op_id))
    for stream_id, history in by_stream(events).items():
        if not stream_id.startswith(CHANNEL_OP_STREAM_PREFIX):
            continue
        if history[0].type != "ChannelOpenRequested":
            continue
        types = [e.type for e in history]
        for event in history:
            if event.type != "ChannelOpening":
                continue
            txid = str(event.payload["funding_txid"])
            if txid not in funding.get(stream_id, set()):
                detail = f"log names {txid[:16]}, the chain has none with its memo"
                out.append(Violation(CHANNEL_OPEN_MATCHES_CHAIN, detail, stream_id))
        resting = "ChannelOpened" in types or "ChannelOpDeclined" in types
        approval = history[0].payload.get("tier") == "approval"
        waiting = approval and "ChannelOpenApproved" not in types
        if at_rest and not (resting or waiting):
            out.append(Violation(CHANNEL_OPEN_AT_REST, f"left after {types[-1]}", stream_id))
    return out
