"""The simulated Core Lightning node's on-chain and channel-lifecycle commands: ``fundchannel``,
``close``, ``listfunds`` and ``listpeerchannels`` with every channel state the simulator has
(CHANNELD_AWAITING_LOCKIN, CHANNELD_NORMAL, CLOSINGD_COMPLETE, ONCHAIN).

Parameters and results follow doc/schemas/<method>.json (shared/conformance/cln/schemas), error
codes common/jsonrpc_errors.h. The simulator has no peer connections to manage: every online
node of the network counts as connected, so ``fundchannel`` needs no ``connect`` first.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from services.sim.chain import MSAT_PER_SAT
from services.sim.channel_ops import (
    FUNDING_CONFIRMATIONS,
    ChannelRefused,
    bolt2_channel_id,
)
from services.sim.errors import NodeOffline
from services.sim.jsonrpc import CATCHALL, JSONRPC_INVALID_PARAMS, RpcFailure
from services.sim.keys import derive_bytes
from services.sim.network import SimNetwork
from services.sim.records import SimChannel, SimPendingChannel

# common/jsonrpc_errors.h
FUNDING_CANNOT_AFFORD: Final = 301
FUNDING_OUTPUT_IS_DUST: Final = 302
FUNDING_PEER_NOT_CONNECTED: Final = 305
FUNDING_UNKNOWN_PEER: Final = 306
# lightningd's named feerates (sat/kvB) in the simulator, which has no mempool to estimate from.
NAMED_FEERATES_PERKB: Final = {"urgent": 10_000, "normal": 5_000, "slow": 2_000, "minimum": 1_000}
# CLN's defaults: reserve 1 % of capacity, dust limit 546 sat, 483 HTLCs, to_self_delay 144.
RESERVE_PERCENT: Final = 1
DUST_LIMIT_MSAT: Final = 546_000
MAX_ACCEPTED_HTLCS: Final = 483
TO_SELF_DELAY: Final = 144
HTLC_EXPIRY_DELTA: Final = 34  # CLN's default cltv-final
# The anchors channel type our simulated peers negotiate (BOLT 9 bits 12 and 22).
CHANNEL_TYPE: Final = {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]}

PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "fundchannel": (
        "id", "amount", "feerate", "announce", "minconf", "push_msat", "close_to", "request_amt",
        "compact_lease", "utxos", "mindepth", "reserve", "channel_type",
    ),
    "close": (
        "id", "unilateraltimeout", "destination", "fee_negotiation_step", "wrong_funding",
        "force_lease_closed", "feerange",
    ),
}  # fmt: skip
UNSUPPORTED: Final[dict[str, tuple[str, ...]]] = {
    "fundchannel": (
        "close_to", "request_amt", "compact_lease", "utxos", "reserve", "channel_type",
    ),
    "close": ("destination", "fee_negotiation_step", "wrong_funding", "force_lease_closed"),
}  # fmt: skip


def sat_per_vbyte(feerate: Any, name: str) -> int:
    """A CLN feerate (a name, or a number with ``perkb`` (default) or ``perkw``) in sat/vB,
    rounded up: the simulator charges whole sat per vbyte."""
    if isinstance(feerate, str) and feerate in NAMED_FEERATES_PERKB:
        return NAMED_FEERATES_PERKB[feerate] // 1000
    text = str(feerate)
    per_kw = text.endswith("perkw")
    digits = text.removesuffix("perkw").removesuffix("perkb")
    if isinstance(feerate, bool) or not digits.isdigit() or int(digits) <= 0:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: should be a feerate")
    # perkw is per 1000 weight units: four weight units to a vbyte.
    return max(1, math.ceil(int(digits) * (4 if per_kw else 1) / 1000))


def amount_sat(value: Any) -> int:
    """fundchannel's ``amount``: sat, ``Nsat``, ``N000msat`` or ``N.NNbtc`` ("all" refused)."""
    text = str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if text.endswith("000msat") and text[:-4].isdigit():
        return int(text[:-4]) // MSAT_PER_SAT
    if text.endswith("sat") and text[:-3].isdigit():
        return int(text[:-3])
    if text == "all":
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount: all is not supported by the simulator")
    raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount: should be a satoshi amount")


def _reserve_msat(capacity_msat: int) -> int:
    return max(
        capacity_msat * RESERVE_PERCENT // 100 // MSAT_PER_SAT * MSAT_PER_SAT, DUST_LIMIT_MSAT
    )


def _script(seed: int, *labels: str | int) -> str:
    """A stand-in P2WPKH scriptPubKey, stable per output."""
    return "0014" + derive_bytes(seed, "script", *labels)[:20].hex()


class ClnChainMethods:
    """The commands, bound to one node; ``methods()`` is what the server registers."""

    def __init__(self, network: SimNetwork, node: str, pubkey: str) -> None:
        self._network = network
        self._node = node
        self._pubkey = pubkey

    def methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {
            "fundchannel": self.fundchannel,
            "close": self.close,
            "listfunds": self.listfunds,
            "listpeerchannels": self.listpeerchannels,
        }

    def pending_count(self) -> int:
        return sum(p.state == "opening" for p in self._network.pending_channels_of(self._node))

    async def fundchannel(self, params: dict[str, Any]) -> dict[str, Any]:
        peer = params.get("id")
        if not isinstance(peer, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "id: should be a node id")
        if params.get("amount") is None:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "missing required parameter: amount")
        amount = amount_sat(params["amount"])
        rate = sat_per_vbyte(params.get("feerate", "normal"), "feerate")
        push = params.get("push_msat", 0)
        if isinstance(push, str) and push.endswith("msat"):
            push = push[:-4]
        try:
            push_msat = int(push)
        except ValueError:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "push_msat: should be a msat amount") from None
        mindepth = params.get("mindepth")
        announce = params.get("announce", True)
        if mindepth not in (None, 0) or not isinstance(announce, bool):
            # Any depth but 0 (zero-conf) is CLN's normal funding depth here.
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "mindepth: only 0 is simulated")
        if mindepth == 0 and announce:
            # The simulator opens zero-conf channels with option_scid_alias only, which BOLT 2
            # forbids announcing (as LSPS2 uses them, bLIP-52 section 5).
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "mindepth 0 needs announce: false here")
        try:
            funding = self._network.open_channel(
                self._node,
                peer,
                amount_sat=amount,
                sat_per_vbyte=rate,
                push_msat=push_msat,
                zero_conf=mindepth == 0,
                private=not announce,
            )
        except ChannelRefused as exc:
            raise _fund_failure(exc, amount) from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        return {
            "tx": funding.raw_hex,
            "txid": funding.txid,
            "outnum": funding.output_index,
            "channel_id": funding.channel_id_hex,
            "channel_type": CHANNEL_TYPE,
            "mindepth": FUNDING_CONFIRMATIONS if mindepth is None else 0,
        }

    async def close(self, params: dict[str, Any]) -> dict[str, Any]:
        ref = params.get("id")
        if not isinstance(ref, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "missing required parameter: id")
        feerange = params.get("feerange")
        rate = NAMED_FEERATES_PERKB["slow"] // 1000
        if feerange is not None:
            if not isinstance(feerange, list) or len(feerange) != 2:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "feerange: should be [min, max]")
            # The opener offers the low end; our simulated peers always accept it.
            rate = sat_per_vbyte(feerange[0], "feerange")
        ref = self._channel_ref(ref)
        try:
            txid = self._network.close_channel(self._node, ref, sat_per_vbyte=rate)
        except ChannelRefused as exc:
            if exc.code == "already_closing":
                # lightningd answers a repeated close with the mutual close it already made.
                txid = str(exc)
            elif exc.code == "unknown_channel":
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "Short channel ID not found") from None
            else:
                raise RpcFailure(CATCHALL, f"Channel cannot close: {exc}") from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        tx = self._network.chain.txs[txid]
        return {"type": "mutual", "txs": [tx.raw_hex], "txids": [txid]}

    def _channel_ref(self, ref: str) -> str:
        """A peer id closes that peer's one channel; a scid or channel id names one itself."""
        if len(ref) != 66:
            return ref
        ours = [c for c in self._network.channels_of(self._node) if c.peer_pubkey == ref]
        if len(ours) > 1:
            raise RpcFailure(CATCHALL, "Peer has multiple channels: use channel_id or scid")
        if not ours:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "Peer has no active channel")
        return ours[0].channel_id

    async def listfunds(self, params: dict[str, Any]) -> dict[str, Any]:
        wallet = self._network.wallet_of(self._node)
        seed = self._network.seed
        outputs = []
        for utxo in wallet.utxos:
            entry: dict[str, Any] = {
                "txid": utxo.txid,
                "output": utxo.vout,
                "amount_msat": utxo.amount_msat,
                "scriptpubkey": _script(seed, utxo.txid, utxo.vout),
                "status": "confirmed" if utxo.confirmations else "unconfirmed",
                "reserved": False,
            }
            if utxo.block_height is not None and utxo.confirmations:
                entry["blockheight"] = utxo.block_height
            outputs.append(entry)
        channels = [
            _funds_entry(
                peer_id=c.peer_pubkey,
                connected=self._network.is_online(c.peer),
                state="CHANNELD_NORMAL",
                scid=c.channel_id,
                our_msat=c.local_balance_msat,
                total_msat=c.capacity_msat,
                funding=(c.funding_txid, c.funding_output),
            )
            for c in self._network.channels_of(self._node)
        ]
        channels += [
            _funds_entry(
                peer_id=p.peer_pubkey,
                connected=self._network.is_online(p.peer),
                state=_STATE[p.state],
                scid=p.channel_id,
                our_msat=p.local_balance_msat,
                total_msat=p.capacity_msat,
                funding=(p.funding_txid, p.funding_output),
            )
            for p in self._network.pending_channels_of(self._node)
        ]
        return {"outputs": outputs, "channels": channels}

    async def listpeerchannels(self, params: dict[str, Any]) -> dict[str, Any]:
        height = self._network.block_height
        channels = [
            peer_channel(
                c,
                our_pubkey=self._pubkey,
                peer_connected=self._network.is_online(c.peer),
                block_height=height,
            )
            for c in self._network.channels_of(self._node)
        ]
        channels += [
            pending_peer_channel(
                p, our_pubkey=self._pubkey, peer_connected=self._network.is_online(p.peer)
            )
            for p in self._network.pending_channels_of(self._node)
        ]
        if params.get("id") is not None:
            channels = [c for c in channels if c["peer_id"] == params["id"]]
        if params.get("short_channel_id") is not None:
            channels = [
                c for c in channels if c.get("short_channel_id") == params["short_channel_id"]
            ]
        if params.get("channel_id") is not None:
            channels = [c for c in channels if c["channel_id"] == params["channel_id"]]
        return {"channels": channels}


_STATE: Final = {
    "opening": "CHANNELD_AWAITING_LOCKIN",
    "closing": "CLOSINGD_COMPLETE",
    "closed": "ONCHAIN",
}


def _funds_entry(
    *,
    peer_id: str,
    connected: bool,
    state: str,
    scid: str,
    our_msat: int,
    total_msat: int,
    funding: tuple[str, int],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "peer_id": peer_id,
        "connected": connected,
        "state": state,
        "channel_id": bolt2_channel_id(*funding),
        "our_amount_msat": our_msat,
        "amount_msat": total_msat,
        "funding_txid": funding[0],
        "funding_output": funding[1],
    }
    if scid:
        entry["short_channel_id"] = scid
    return entry


def _common(
    *,
    peer_id: str,
    peer_connected: bool,
    state: str,
    opener_is_local: bool,
    funding: tuple[str, int],
    to_us_msat: int,
    total_msat: int,
    push_msat: int,
    fee_base_msat: int,
    fee_ppm: int,
) -> dict[str, Any]:
    reserve_msat = _reserve_msat(total_msat)
    local_funds = total_msat if opener_is_local else 0
    return {
        "peer_id": peer_id,
        "peer_connected": peer_connected,
        "state": state,
        "opener": "local" if opener_is_local else "remote",
        "features": ["option_static_remotekey", "option_anchors"],
        "channel_type": CHANNEL_TYPE,
        "channel_id": bolt2_channel_id(*funding),
        "funding_txid": funding[0],
        "funding_outnum": funding[1],
        "private": False,
        "funding": {
            "local_funds_msat": local_funds,
            "remote_funds_msat": total_msat - local_funds,
            "pushed_msat": push_msat,
        },
        "to_us_msat": to_us_msat,
        "total_msat": total_msat,
        "fee_base_msat": fee_base_msat,
        "fee_proportional_millionths": fee_ppm,
        "dust_limit_msat": DUST_LIMIT_MSAT,
        "our_reserve_msat": reserve_msat,
        "their_reserve_msat": reserve_msat,
        "their_to_self_delay": TO_SELF_DELAY,
        "our_to_self_delay": TO_SELF_DELAY,
        "max_accepted_htlcs": MAX_ACCEPTED_HTLCS,
        "minimum_htlc_in_msat": 0,
        "minimum_htlc_out_msat": 0,
        "maximum_htlc_out_msat": total_msat,
    }


def peer_channel(
    channel: SimChannel, *, our_pubkey: str, peer_connected: bool, block_height: int
) -> dict[str, Any]:
    """A CHANNELD_NORMAL entry, with its HTLCs."""
    view = _common(
        peer_id=channel.peer_pubkey,
        peer_connected=peer_connected,
        state="CHANNELD_NORMAL",
        opener_is_local=channel.opener_is_local,
        funding=(channel.funding_txid, channel.funding_output),
        to_us_msat=channel.local_balance_msat,
        total_msat=channel.capacity_msat,
        push_msat=channel.push_msat,
        fee_base_msat=channel.fee_base_msat,
        fee_ppm=channel.fee_ppm,
    )
    view.update(
        {
            "short_channel_id": channel.channel_id,
            # BOLT 7: direction 0 is the node with the lexicographically smaller pubkey.
            "direction": 0 if our_pubkey < channel.peer_pubkey else 1,
            "spendable_msat": channel.local_balance_msat if channel.active else 0,
            "receivable_msat": channel.remote_balance_msat if channel.active else 0,
            "status": ["CHANNELD_NORMAL:Channel ready for use."],
            "htlcs": [
                {
                    "direction": "in" if h.incoming else "out",
                    "id": h.htlc_id,
                    "amount_msat": h.amount_msat,
                    "expiry": block_height + HTLC_EXPIRY_DELTA,
                    "payment_hash": h.payment_hash,
                    "state": "RCVD_ADD_ACK_REVOCATION" if h.incoming else "SENT_ADD_ACK_REVOCATION",
                }
                for h in channel.htlcs
            ],
        }
    )
    return view


def pending_peer_channel(
    pending: SimPendingChannel, *, our_pubkey: str, peer_connected: bool
) -> dict[str, Any]:
    """An opening (CHANNELD_AWAITING_LOCKIN), closing (CLOSINGD_COMPLETE) or closed (ONCHAIN)
    channel. The billboard says how many confirmations lock-in still needs, in lightningd's
    words (clients parse them)."""
    view = _common(
        peer_id=pending.peer_pubkey,
        peer_connected=peer_connected,
        state=_STATE[pending.state],
        opener_is_local=pending.opener_is_local,
        funding=(pending.funding_txid, pending.funding_output),
        to_us_msat=pending.local_balance_msat,
        total_msat=pending.capacity_msat,
        push_msat=pending.push_msat,
        fee_base_msat=pending.fee_base_msat,
        fee_ppm=pending.fee_ppm,
    )
    if pending.channel_id:
        view["short_channel_id"] = pending.channel_id
        view["direction"] = 0 if our_pubkey < pending.peer_pubkey else 1
    view["spendable_msat"] = 0
    view["receivable_msat"] = 0
    view["htlcs"] = []
    if pending.state == "opening":
        more = pending.confirmations_needed - pending.confirmations
        view["status"] = [
            f"CHANNELD_AWAITING_LOCKIN:Funding needs {more} more confirmations to be ready."
        ]
    else:
        view["closer"] = "local" if pending.closer_is_local else "remote"
        view["status"] = [f"{_STATE[pending.state]}:Closing tx {pending.closing_txid}"]
    return view


def _fund_failure(exc: ChannelRefused, amount: int) -> RpcFailure:
    """fundchannel's refusals with lightningd's codes and words (doc/schemas/fundchannel.json)."""
    if exc.code == "insufficient_funds":
        short = exc.need_sat - exc.have_sat
        return RpcFailure(
            FUNDING_CANNOT_AFFORD,
            f"Could not afford {amount}sat using all available UTXOs: {short}sat short",
        )
    if exc.code == "unknown_peer":
        return RpcFailure(FUNDING_UNKNOWN_PEER, "Unknown peer")
    if exc.code == "peer_offline":
        return RpcFailure(FUNDING_PEER_NOT_CONNECTED, "Peer not connected")
    if exc.code == "too_small":
        return RpcFailure(FUNDING_OUTPUT_IS_DUST, f"Output {amount}sat would be dust")
    return RpcFailure(JSONRPC_INVALID_PARAMS, str(exc))
