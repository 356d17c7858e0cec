"""The simulated bitcoin chain: blocks, transactions, and each node's on-chain wallet (UTXOs).

Pure bookkeeping, no asyncio: ``SimNetwork`` mines through it and the channel lifecycle
(``channel_ops.py``) spends from it. Everything is derived from the seed and the caller's clock,
so a seeded run repeats exactly (ADR 0230).

Fees are ``sat_per_vbyte`` times a fixed virtual size per transaction type (ADR 0231): the
wallet does not model input counts, so a funding transaction costs the same with one input or
five. Amounts on chain are whole satoshis, as in bitcoin itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Literal

from schemas import channel_messages
from services.sim.keys import derive_bytes

MSAT_PER_SAT: Final = 1000
# Virtual sizes (vbytes) charged per transaction type, for segwit v0 transactions:
# funding: 1 P2WPKH input, a P2WSH 2-of-2 funding output and a P2WPKH change output
#   (125 bytes x 4 + 2 marker/flag + 108 witness = 610 weight units, rounded up);
# closing: the 2-of-2 P2WSH input with two signatures and two P2WPKH outputs (674 WU).
FUNDING_TX_VSIZE: Final = channel_messages.FUNDING_TX_VSIZE
CLOSING_TX_VSIZE: Final = channel_messages.CLOSING_TX_VSIZE
# A fee rate above this is a unit mistake (sat/kvB given as sat/vB), not a choice.
SAT_PER_VBYTE_MAX: Final = 10_000
# Seconds between simulated blocks' timestamps when the caller's clock does not move (a
# deterministic simulation mining several blocks at one instant): bitcoin needs them to rise.
BLOCK_TIME_STEP_S: Final = 1
# A node's wallet starts as one output confirmed this deep, like a matured coinbase.
GENESIS_DEPTH: Final = 100

TxKind = Literal["genesis", "funding", "closing"]


@dataclass(frozen=True, slots=True)
class Utxo:
    txid: str
    vout: int
    amount_sat: int
    owner: str


@dataclass(slots=True)
class Tx:
    txid: str
    kind: TxKind
    vsize: int
    fee_sat: int
    outputs: tuple[tuple[str | None, int], ...]  # (wallet owner or None for a channel, sat)
    block_height: int | None = None
    tx_index: int | None = None  # position in its block; 0 is the coinbase

    @property
    def raw_hex(self) -> str:
        """A stand-in for the serialized transaction: deterministic, not parseable bitcoin."""
        return "02000000" + self.txid + "".join(f"{sat:016x}" for _, sat in self.outputs)


@dataclass(slots=True)
class Block:
    height: int
    timestamp_s: int
    txids: list[str] = field(default_factory=list)


class Chain:
    """Blocks, a mempool and wallets. ``height`` is the tip."""

    def __init__(self, *, seed: int, height: int, start_s: float) -> None:
        assert height > GENESIS_DEPTH, height
        self._seed = seed
        self.height = height
        self._tip_time_s = int(start_s)
        self.blocks: dict[int, Block] = {}
        self.txs: dict[str, Tx] = {}
        self.mempool: list[str] = []
        self._wallets: dict[str, dict[tuple[str, int], Utxo]] = {}
        self._tx_count = 0
        self.fees_msat = 0  # everything paid to miners, including sub-satoshi channel dust

    # -- reading ------------------------------------------------------------------------------

    def block_hash(self, height: int) -> str:
        return derive_bytes(self._seed, "block", height).hex()

    def tip_time_s(self) -> int:
        return self._tip_time_s

    def confirmations(self, txid: str) -> int:
        tx = self.txs[txid]
        return 0 if tx.block_height is None else self.height - tx.block_height + 1

    def utxos(self, owner: str) -> list[Utxo]:
        """The owner's unspent outputs, oldest transaction first (a stable order)."""
        return sorted(self._wallets.get(owner, {}).values(), key=self._utxo_order)

    def wallet_sat(self, owner: str) -> tuple[int, int]:
        """(confirmed, unconfirmed) satoshis of the owner's wallet."""
        confirmed = unconfirmed = 0
        for utxo in self._wallets.get(owner, {}).values():
            if self.confirmations(utxo.txid) > 0:
                confirmed += utxo.amount_sat
            else:
                unconfirmed += utxo.amount_sat
        return confirmed, unconfirmed

    def wallets_total_sat(self) -> int:
        return sum(u.amount_sat for wallet in self._wallets.values() for u in wallet.values())

    # -- writing ------------------------------------------------------------------------------

    def fund_wallet(self, owner: str, amount_sat: int) -> Utxo:
        """A starting output for ``owner``, confirmed ``GENESIS_DEPTH`` blocks deep."""
        assert amount_sat > 0, amount_sat
        tx = self._new_tx("genesis", vsize=0, fee_sat=0, outputs=((owner, amount_sat),))
        tx.block_height = self.height - GENESIS_DEPTH
        tx.tx_index = 1
        utxo = Utxo(tx.txid, 0, amount_sat, owner)
        self._wallets.setdefault(owner, {})[(tx.txid, 0)] = utxo
        return utxo

    def select(self, owner: str, need_sat: int) -> list[Utxo] | None:
        """Confirmed outputs covering ``need_sat``, largest first; ``None`` if they cannot."""
        confirmed = [u for u in self.utxos(owner) if self.confirmations(u.txid) > 0]
        confirmed.sort(key=lambda u: -u.amount_sat)  # stable: ties keep the oldest first
        chosen: list[Utxo] = []
        total = 0
        for utxo in confirmed:
            if total >= need_sat:
                break
            chosen.append(utxo)
            total += utxo.amount_sat
        return chosen if total >= need_sat else None

    def broadcast(
        self,
        kind: TxKind,
        *,
        spends: list[Utxo],
        outputs: tuple[tuple[str | None, int], ...],
        vsize: int,
        fee_sat: int,
    ) -> Tx:
        """Spend wallet outputs into new ones; wallet-owned outputs are unconfirmed until mined."""
        assert all(sat > 0 for _, sat in outputs), outputs
        for utxo in spends:
            del self._wallets[utxo.owner][(utxo.txid, utxo.vout)]
        tx = self._new_tx(kind, vsize=vsize, fee_sat=fee_sat, outputs=outputs)
        for vout, (owner, sat) in enumerate(outputs):
            if owner is not None:
                self._wallets.setdefault(owner, {})[(tx.txid, vout)] = Utxo(
                    tx.txid, vout, sat, owner
                )
        self.mempool.append(tx.txid)
        self.fees_msat += fee_sat * MSAT_PER_SAT
        return tx

    def mine(self, now_s: float) -> Block:
        """One block holding the whole mempool, in broadcast order."""
        self.height += 1
        self._tip_time_s = max(int(now_s), self._tip_time_s + BLOCK_TIME_STEP_S)
        block = Block(height=self.height, timestamp_s=self._tip_time_s)
        for index, txid in enumerate(self.mempool, start=1):
            tx = self.txs[txid]
            tx.block_height, tx.tx_index = self.height, index
            block.txids.append(txid)
        self.mempool.clear()
        self.blocks[self.height] = block
        return block

    def _new_tx(
        self, kind: TxKind, *, vsize: int, fee_sat: int, outputs: tuple[tuple[str | None, int], ...]
    ) -> Tx:
        self._tx_count += 1
        txid = derive_bytes(self._seed, "tx", self._tx_count).hex()
        tx = Tx(txid=txid, kind=kind, vsize=vsize, fee_sat=fee_sat, outputs=outputs)
        self.txs[txid] = tx
        return tx

    def _utxo_order(self, utxo: Utxo) -> tuple[int, int, str, int]:
        tx = self.txs[utxo.txid]
        height = tx.block_height if tx.block_height is not None else self.height + 1
        return height, tx.tx_index or 0, utxo.txid, utxo.vout


def fee_sat(sat_per_vbyte: int, vsize: int) -> int:
    assert 0 < sat_per_vbyte <= SAT_PER_VBYTE_MAX, sat_per_vbyte
    return sat_per_vbyte * vsize
