"""Channel state: two balances and the HTLCs in flight, in integer msat.

Invariant (asserted): balance_a + balance_b + sum(htlcs) == capacity, nothing negative. An
HTLC takes liquidity from the sender's side when added; settling gives it to the receiver,
failing gives it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.sim.topology import PolicySpec


@dataclass(frozen=True, slots=True)
class Htlc:
    sender: str
    amount_msat: int
    payment_hash: str = ""


@dataclass(slots=True)
class ChannelState:
    channel_id: str
    node_a: str
    node_b: str
    capacity_msat: int
    balance_msat: dict[str, int]
    policy: dict[str, PolicySpec]  # keyed by the node that forwards out over this channel
    funding_txid: str
    funding_output: int
    disabled: bool = False
    htlcs: dict[int, Htlc] = field(default_factory=dict)
    memo: str = ""  # the opener's note-to-self, kept with the channel as lnd keeps it
    push_msat: int = 0
    private: bool = False  # unannounced: routed over only as a payer's first or last hop
    zero_conf: bool = False

    def peer_of(self, node: str) -> str:
        if node == self.node_a:
            return self.node_b
        assert node == self.node_b, (node, self.channel_id)
        return self.node_a

    def pending_msat(self) -> int:
        return sum(h.amount_msat for h in self.htlcs.values())

    def can_send(self, sender: str, amount_msat: int) -> bool:
        return 0 < amount_msat <= self.balance_msat[sender]

    def add_htlc(self, htlc_id: int, sender: str, amount_msat: int, payment_hash: str = "") -> None:
        assert htlc_id not in self.htlcs, htlc_id
        assert self.can_send(sender, amount_msat), (self.channel_id, sender, amount_msat)
        self.balance_msat[sender] -= amount_msat
        self.htlcs[htlc_id] = Htlc(
            sender=sender, amount_msat=amount_msat, payment_hash=payment_hash
        )

    def settle_htlc(self, htlc_id: int) -> None:
        htlc = self.htlcs.pop(htlc_id)
        self.balance_msat[self.peer_of(htlc.sender)] += htlc.amount_msat

    def fail_htlc(self, htlc_id: int) -> None:
        htlc = self.htlcs.pop(htlc_id)
        self.balance_msat[htlc.sender] += htlc.amount_msat

    def drain_toward(self, node: str) -> None:
        """Move every unlocked msat to ``node``'s side (HTLCs in flight stay put)."""
        other = self.peer_of(node)
        self.balance_msat[node] += self.balance_msat[other]
        self.balance_msat[other] = 0

    def check(self) -> None:
        a, b = self.balance_msat[self.node_a], self.balance_msat[self.node_b]
        assert a >= 0 and b >= 0, (self.channel_id, a, b)
        assert all(h.amount_msat > 0 for h in self.htlcs.values()), self.channel_id
        total = a + b + self.pending_msat()
        assert total == self.capacity_msat, (self.channel_id, total, self.capacity_msat)


def fee_msat(policy: PolicySpec, amount_msat: int) -> int:
    """BOLT 7 fee: base + amount * proportional / 1e6, rounded down."""
    return policy.fee_base_msat + amount_msat * policy.fee_ppm // 1_000_000
