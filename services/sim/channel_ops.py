"""Channel open and cooperative close on the simulated chain.

An open spends the opener's confirmed wallet outputs into a funding transaction (amount plus
fee, change back unconfirmed). The channel stays pending, out of routing, until the funding
transaction has ``FUNDING_CONFIRMATIONS`` confirmations; then it gets its short channel id
(block x index x output) and joins the network. A cooperative close takes the channel out of
routing at once; each side's balance (the opener's less the closing fee) goes to its wallet in
the closing transaction, spendable once that confirms. ADR 0230 explains the numbers.

Invariant (``check``): wallets + channel capacities + pending funding outputs + fees paid to
miners stay what they were at the start, to the msat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from services.sim.chain import (
    CLOSING_TX_VSIZE,
    FUNDING_TX_VSIZE,
    MSAT_PER_SAT,
    SAT_PER_VBYTE_MAX,
    Chain,
    fee_sat,
)
from services.sim.channels import ChannelState
from services.sim.errors import NodeOffline, SimError, UnknownNode
from services.sim.records import SimFundingTx, SimPendingChannel, SimUtxo, SimWallet
from services.sim.state import NetworkState
from services.sim.topology import PolicySpec

# lnd's and Core Lightning's default funding depth for a channel (lnd scales it with the channel
# size from 3; CLN's funding-confirms defaults to 3). One value for both keeps tests simple.
FUNDING_CONFIRMATIONS: Final = 3
# A cooperative close is final for us at its first confirmation (lnd's waiting-close ends then
# for small channels; CLN moves to ONCHAIN).
CLOSE_CONFIRMATIONS: Final = 1
# lnd's default minimum channel size (--minchansize, funding.MinChanFundingSize).
CHANNEL_SAT_MIN: Final = 20_000
# Outputs below this are not created (lnd's default dust limit); their value goes to fees.
DUST_LIMIT_SAT: Final = 354
# CLN lists a closed channel as ONCHAIN for this many blocks, then forgets it.
ONCHAIN_FORGET_BLOCKS: Final = 100
MEMO_CHARS_MAX: Final = 500  # lnd refuses longer channel memos
# lnd hands out scid aliases from block 16_000_000 up (aliasmgr.StartingAlias): far above any
# real block, so an alias never collides with a confirmed channel's short channel id.
ALIAS_FIRST_BLOCK: Final = 16_000_000


class ChannelRefused(SimError):
    """A channel operation the node refuses; ``code`` is a stable tag the RPC servers map.

    Codes: unknown_peer, self_channel, peer_offline, too_small, bad_push, bad_fee_rate,
    insufficient_funds, unknown_channel, pending_open, already_closing, active_htlcs,
    fee_exceeds_balance, memo_too_long.
    """

    def __init__(self, code: str, message: str, *, need_sat: int = 0, have_sat: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.need_sat = need_sat
        self.have_sat = have_sat


@dataclass(slots=True)
class _Opening:
    opener: str
    peer: str
    capacity_msat: int
    push_msat: int
    funding_txid: str
    funding_output: int
    memo: str
    policy: dict[str, PolicySpec]
    # A zero-conf channel is routable from broadcast on (under its alias); its funding
    # transaction confirming changes nothing but the opening's bookkeeping.
    zero_conf_channel: ChannelState | None = None
    private: bool = False


@dataclass(slots=True)
class _Closing:
    channel: ChannelState
    closer: str
    closing_txid: str
    balances_msat: dict[str, int]  # at close, before the fee


def bolt2_channel_id(funding_txid: str, output_index: int) -> str:
    """BOLT 2 channel_id: the funding txid (wire byte order) XOR the output index."""
    raw = bytearray(bytes.fromhex(funding_txid)[::-1])
    raw[30] ^= (output_index >> 8) & 0xFF
    raw[31] ^= output_index & 0xFF
    return bytes(raw).hex()


class ChannelOps:
    def __init__(self, state: NetworkState, chain: Chain) -> None:
        self._state = state
        self._chain = chain
        self._opening: dict[str, _Opening] = {}  # by funding txid, in broadcast order
        self._closing: dict[str, _Closing] = {}  # by closing txid
        self._closed: list[tuple[_Closing, int]] = []  # and the height it confirmed at
        self._total_msat = self._value_msat()
        self._aliases = 0

    # -- open ---------------------------------------------------------------------------------

    def open(
        self,
        opener: str,
        peer: str,
        *,
        amount_sat: int,
        push_msat: int,
        sat_per_vbyte: int,
        memo: str = "",
        policy: PolicySpec | None = None,
        zero_conf: bool = False,
        private: bool = False,
    ) -> SimFundingTx:
        """Broadcast a funding transaction; raises ``ChannelRefused`` or ``NodeOffline``.

        ``zero_conf`` (which needs ``option_scid_alias``: lnd's ``zero_conf`` with
        ``scid_alias``, CLN's ``mindepth: 0``) makes the channel usable at once under an
        alias; ``private`` leaves it unannounced."""
        if not self._state.is_online(opener):
            raise NodeOffline(opener)
        try:
            peer_node = self._state.resolve_node(peer)
        except UnknownNode:
            raise ChannelRefused("unknown_peer", f"unknown peer {peer}") from None
        if peer_node.name == opener:
            raise ChannelRefused("self_channel", "cannot open a channel to ourselves")
        if not self._state.is_online(peer_node.name):
            raise ChannelRefused("peer_offline", f"peer {peer_node.pubkey} is not online")
        if amount_sat < CHANNEL_SAT_MIN:
            raise ChannelRefused(
                "too_small", f"channel of {amount_sat} sat is below the minimum {CHANNEL_SAT_MIN}"
            )
        if not 0 <= push_msat <= amount_sat * MSAT_PER_SAT:
            raise ChannelRefused("bad_push", "push amount must be within the channel's capacity")
        if not 0 < sat_per_vbyte <= SAT_PER_VBYTE_MAX:
            raise ChannelRefused("bad_fee_rate", f"fee rate must be 1-{SAT_PER_VBYTE_MAX} sat/vB")
        if len(memo) > MEMO_CHARS_MAX:
            raise ChannelRefused("memo_too_long", f"memo longer than {MEMO_CHARS_MAX} characters")
        fee = fee_sat(sat_per_vbyte, FUNDING_TX_VSIZE)
        spends = self._chain.select(opener, amount_sat + fee)
        if spends is None:
            have = sum(
                u.amount_sat for u in self._chain.utxos(opener) if self._chain.confirmations(u.txid)
            )
            raise ChannelRefused(
                "insufficient_funds",
                f"not enough funds: need {amount_sat + fee} sat, have {have} sat confirmed",
                need_sat=amount_sat + fee,
                have_sat=have,
            )
        change = sum(u.amount_sat for u in spends) - amount_sat - fee
        outputs: tuple[tuple[str | None, int], ...] = ((None, amount_sat),)
        if change >= DUST_LIMIT_SAT:
            outputs += ((opener, change),)
        tx = self._chain.broadcast(
            "funding", spends=spends, outputs=outputs, vsize=FUNDING_TX_VSIZE, fee_sat=fee
        )
        if 0 < change < DUST_LIMIT_SAT:
            self._chain.fees_msat += change * MSAT_PER_SAT
        used = policy or PolicySpec()
        opening = _Opening(
            opener=opener,
            peer=peer_node.name,
            capacity_msat=amount_sat * MSAT_PER_SAT,
            push_msat=push_msat,
            funding_txid=tx.txid,
            funding_output=0,
            memo=memo,
            policy={opener: used, peer_node.name: PolicySpec()},
            private=private,
        )
        self._opening[tx.txid] = opening
        if zero_conf:
            self._aliases += 1
            opening.zero_conf_channel = self._activate(
                opening, channel_id=f"{ALIAS_FIRST_BLOCK}x{self._aliases}x0"
            )
        return SimFundingTx(
            txid=tx.txid,
            output_index=0,
            fee_sat=fee,
            raw_hex=tx.raw_hex,
            channel_id_hex=bolt2_channel_id(tx.txid, 0),
        )

    # -- close --------------------------------------------------------------------------------

    def close(self, node: str, channel_ref: str, *, sat_per_vbyte: int) -> str:
        """Broadcast a cooperative closing transaction; its txid. ``channel_ref`` is a short
        channel id, a funding outpoint ``txid:index`` or a BOLT 2 channel id."""
        if not self._state.is_online(node):
            raise NodeOffline(node)
        channel = self._find_open(node, channel_ref)
        peer = channel.peer_of(node)
        if channel.htlcs:
            raise ChannelRefused("active_htlcs", "cannot co-op close channel with active htlcs")
        if not self._state.is_online(peer):
            raise ChannelRefused("peer_offline", f"peer {self._state.nodes[peer].pubkey} offline")
        if not 0 < sat_per_vbyte <= SAT_PER_VBYTE_MAX:
            raise ChannelRefused("bad_fee_rate", f"fee rate must be 1-{SAT_PER_VBYTE_MAX} sat/vB")
        # The opener pays the closing fee, whoever asked for the close (BOLT 2).
        opener, acceptor = channel.node_a, channel.node_b
        fee = fee_sat(sat_per_vbyte, CLOSING_TX_VSIZE)
        balances = dict(channel.balance_msat)
        if balances[opener] < fee * MSAT_PER_SAT:
            raise ChannelRefused("fee_exceeds_balance", "the opener's balance cannot pay the fee")
        paid = {opener: balances[opener] - fee * MSAT_PER_SAT, acceptor: balances[acceptor]}
        outputs = tuple(
            (owner, msat // MSAT_PER_SAT)
            for owner, msat in paid.items()
            if msat // MSAT_PER_SAT >= DUST_LIMIT_SAT
        )
        tx = self._chain.broadcast(
            "closing", spends=[], outputs=outputs, vsize=CLOSING_TX_VSIZE, fee_sat=fee
        )
        # Sub-satoshi remainders and dust outputs are not on chain: they go to the miners.
        self._chain.fees_msat += sum(paid.values()) - sum(s for _, s in outputs) * MSAT_PER_SAT
        self._remove(channel)
        self._closing[tx.txid] = _Closing(
            channel=channel, closer=node, closing_txid=tx.txid, balances_msat=balances
        )
        return tx.txid

    def _find_open(self, node: str, channel_ref: str) -> ChannelState:
        for channel in self._state.channels_by_node[node]:
            point = f"{channel.funding_txid}:{channel.funding_output}"
            bolt2 = bolt2_channel_id(channel.funding_txid, channel.funding_output)
            if channel_ref in (channel.channel_id, point, bolt2):
                return channel
        for opening in self._opening.values():
            if node in (opening.opener, opening.peer) and channel_ref in (
                f"{opening.funding_txid}:{opening.funding_output}",
                bolt2_channel_id(opening.funding_txid, opening.funding_output),
            ):
                raise ChannelRefused("pending_open", "channel is still pending open")
        for closing in self._closing.values():
            channel = closing.channel
            if node in (channel.node_a, channel.node_b) and channel_ref in (
                channel.channel_id,
                f"{channel.funding_txid}:{channel.funding_output}",
                bolt2_channel_id(channel.funding_txid, channel.funding_output),
            ):
                raise ChannelRefused("already_closing", closing.closing_txid)
        raise ChannelRefused("unknown_channel", f"channel {channel_ref} not found")

    def _remove(self, channel: ChannelState) -> None:
        del self._state.channels[channel.channel_id]
        for end in (channel.node_a, channel.node_b):
            self._state.channels_by_node[end].remove(channel)

    # -- blocks -------------------------------------------------------------------------------

    def on_block(self) -> None:
        """Activate openings deep enough, finish closings that confirmed."""
        for txid in list(self._opening):
            if self._chain.confirmations(txid) >= FUNDING_CONFIRMATIONS:
                opening = self._opening.pop(txid)
                if opening.zero_conf_channel is None:
                    self._activate(opening)
        for txid in list(self._closing):
            if self._chain.confirmations(txid) >= CLOSE_CONFIRMATIONS:
                self._closed.append((self._closing.pop(txid), self._chain.height))
        horizon = self._chain.height - ONCHAIN_FORGET_BLOCKS
        self._closed = [(c, height) for c, height in self._closed if height > horizon]

    def _activate(self, opening: _Opening, *, channel_id: str | None = None) -> ChannelState:
        zero_conf = channel_id is not None
        if channel_id is None:
            channel_id = self._short_channel_id(opening.funding_txid, opening.funding_output)
        channel = ChannelState(
            channel_id=channel_id,
            node_a=opening.opener,
            node_b=opening.peer,
            capacity_msat=opening.capacity_msat,
            balance_msat={
                opening.opener: opening.capacity_msat - opening.push_msat,
                opening.peer: opening.push_msat,
            },
            policy=opening.policy,
            funding_txid=opening.funding_txid,
            funding_output=opening.funding_output,
            memo=opening.memo,
            push_msat=opening.push_msat,
            private=opening.private,
            zero_conf=zero_conf,
        )
        self._state.channels[channel_id] = channel
        for end in (opening.opener, opening.peer):
            listed = self._state.channels_by_node[end]
            listed.append(channel)
            listed.sort(key=lambda c: c.channel_id)  # routing reads them in a stable order
        return channel

    def _short_channel_id(self, txid: str, output: int) -> str:
        tx = self._chain.txs[txid]
        assert tx.block_height is not None and tx.tx_index is not None
        return f"{tx.block_height}x{tx.tx_index}x{output}"

    # -- views --------------------------------------------------------------------------------

    def pending_of(self, node: str) -> list[SimPendingChannel]:
        """Openings and closings that involve ``node``; closed ones until CLN forgets them."""
        views = [
            self._opening_view(o, node)
            for o in self._opening.values()
            if self._has(o, node) and o.zero_conf_channel is None
        ]
        for closing in self._closing.values():
            if node in (closing.channel.node_a, closing.channel.node_b):
                views.append(self._closing_view(closing, node, "closing"))
        for closing, _ in self._closed:
            if node in (closing.channel.node_a, closing.channel.node_b):
                views.append(self._closing_view(closing, node, "closed"))
        return views

    @staticmethod
    def _has(opening: _Opening, node: str) -> bool:
        return node in (opening.opener, opening.peer)

    def _opening_view(self, opening: _Opening, node: str) -> SimPendingChannel:
        peer = opening.peer if node == opening.opener else opening.opener
        confirmations = self._chain.confirmations(opening.funding_txid)
        tx = self._chain.txs[opening.funding_txid]
        local = opening.capacity_msat - opening.push_msat
        balances = {opening.opener: local, opening.peer: opening.push_msat}
        return SimPendingChannel(
            node=node,
            peer=peer,
            peer_pubkey=self._state.nodes[peer].pubkey,
            state="opening",
            capacity_msat=opening.capacity_msat,
            local_balance_msat=balances[node],
            remote_balance_msat=balances[peer],
            funding_txid=opening.funding_txid,
            funding_output=opening.funding_output,
            opener_is_local=node == opening.opener,
            push_msat=opening.push_msat,
            confirmations=confirmations,
            confirmations_needed=FUNDING_CONFIRMATIONS,
            confirmation_height=tx.block_height or 0,
            channel_id=(
                self._short_channel_id(opening.funding_txid, opening.funding_output)
                if confirmations
                else ""
            ),
            fee_base_msat=opening.policy[node].fee_base_msat,
            fee_ppm=opening.policy[node].fee_ppm,
            memo=opening.memo if node == opening.opener else "",
        )

    def _closing_view(self, closing: _Closing, node: str, state: str) -> SimPendingChannel:
        channel = closing.channel
        peer = channel.peer_of(node)
        tx = self._chain.txs[closing.closing_txid]
        return SimPendingChannel(
            node=node,
            peer=peer,
            peer_pubkey=self._state.nodes[peer].pubkey,
            state="closing" if state == "closing" else "closed",
            capacity_msat=channel.capacity_msat,
            local_balance_msat=closing.balances_msat[node],
            remote_balance_msat=closing.balances_msat[peer],
            funding_txid=channel.funding_txid,
            funding_output=channel.funding_output,
            opener_is_local=channel.node_a == node,
            push_msat=channel.push_msat,
            confirmations=self._chain.confirmations(closing.closing_txid),
            confirmations_needed=CLOSE_CONFIRMATIONS,
            confirmation_height=tx.block_height or 0,
            channel_id=channel.channel_id,
            fee_base_msat=channel.policy[node].fee_base_msat,
            fee_ppm=channel.policy[node].fee_ppm,
            memo=channel.memo if channel.node_a == node else "",
            closing_txid=closing.closing_txid,
            closer_is_local=closing.closer == node,
        )

    def wallet_of(self, node: str) -> SimWallet:
        confirmed, unconfirmed = self._chain.wallet_sat(node)
        return SimWallet(
            confirmed_msat=confirmed * MSAT_PER_SAT,
            unconfirmed_msat=unconfirmed * MSAT_PER_SAT,
            utxos=tuple(
                SimUtxo(
                    txid=u.txid,
                    vout=u.vout,
                    amount_msat=u.amount_sat * MSAT_PER_SAT,
                    confirmations=self._chain.confirmations(u.txid),
                    block_height=self._chain.txs[u.txid].block_height,
                )
                for u in self._chain.utxos(node)
            ),
        )

    # -- invariants ---------------------------------------------------------------------------

    def _value_msat(self) -> int:
        return (
            self._chain.wallets_total_sat() * MSAT_PER_SAT
            + sum(c.capacity_msat for c in self._state.channels.values())
            + sum(o.capacity_msat for o in self._opening.values() if o.zero_conf_channel is None)
            + self._chain.fees_msat
        )

    def check(self) -> None:
        assert self._value_msat() == self._total_msat, (self._value_msat(), self._total_msat)
