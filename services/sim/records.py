"""Immutable public records of the simulated network: nodes, channels, invoices, payments.

Internal state lives in mutable classes elsewhere; these snapshots are what callers (RPC
servers, tests, the control endpoint) see, so a caller can never corrupt the model.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from services.lightning.port import FailureReason, RouteHop

# "lsp": an external LSP that sells inbound channels over LSPS1 (services/sim/lsp.py).
# "wallet": a payee's own wallet node, added at runtime with no channels (ADR 0271).
NodeRole = Literal["ours", "hub", "merchant", "lsp", "wallet"]
Implementation = Literal["lnd", "cln"]
InvoiceState = Literal["open", "accepted", "settled", "canceled", "expired"]
PaymentStatus = Literal["in_flight", "succeeded", "failed"]


class SimNode(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    role: NodeRole
    region: str | None
    implementation: Implementation
    pubkey: str  # compressed secp256k1, hex
    privkey: bytes = msgspec.field(default=b"")
    alias: str = ""

    def __repr__(self) -> str:  # keep the private key out of logs and tracebacks
        return f"SimNode(name={self.name!r}, role={self.role!r}, pubkey={self.pubkey[:16]}...)"


class SimHtlc(msgspec.Struct, frozen=True, kw_only=True):
    """One HTLC on a channel, seen from one side."""

    htlc_id: int
    incoming: bool
    amount_msat: int
    payment_hash: str


class SimChannel(msgspec.Struct, frozen=True, kw_only=True):
    """One channel seen from ``node``'s side."""

    channel_id: str  # short_channel_id, "BLOCKxTXxOUT"
    node: str
    peer: str
    peer_pubkey: str
    capacity_msat: int
    local_balance_msat: int
    remote_balance_msat: int
    pending_htlc_msat: int  # held in HTLCs in either direction
    active: bool
    fee_base_msat: int
    fee_ppm: int
    cltv_delta: int
    funding_txid: str
    funding_output: int
    opener_is_local: bool
    memo: str = ""  # the opener's note-to-self (lnd's OpenChannelRequest.memo)
    htlcs: tuple[SimHtlc, ...] = ()
    push_msat: int = 0
    private: bool = False  # not announced: only payers given a route hint use it
    zero_conf: bool = False  # active before its funding transaction confirmed


class SimRouteHint(msgspec.Struct, frozen=True, kw_only=True):
    """One BOLT 11 ``r`` hop: the LSP and the (possibly unannounced) channel to the payee."""

    pubkey: str  # the hop's node (the LSP)
    short_channel_id: str  # "BLOCKxTXxOUT" (LSPS2's jit_channel_scid)
    fee_base_msat: int = 0
    fee_ppm: int = 0
    cltv_expiry_delta: int = 144


class SimInvoice(msgspec.Struct, frozen=True, kw_only=True):
    bolt11: str | None  # None for a keysend receipt
    payment_hash: str
    preimage: str  # "" for a hold invoice until it is settled (the payee does not know it)
    payment_secret: str
    amount_msat: int | None
    memo: str
    created_at_s: int
    expiry_s: int
    payee: str  # node name
    state: InvoiceState
    add_index: int  # per payee, from 1, like LND add_index / CLN created_index
    amount_received_msat: int = 0
    settled_at_s: int | None = None
    is_keysend: bool = False
    # Per payee, from 1, in settlement order (LND settle_index, CLN pay_index); 0 unpaid.
    pay_index: int = 0
    # A hold invoice (LND AddHoldInvoice): an HTLC that arrives is held ("accepted") until
    # the invoice is settled with its preimage or cancelled.
    is_hold: bool = False
    # A route hint through an LSP (LSPS2 client side): the hint goes into the BOLT 11 ``r``.
    route_hint: SimRouteHint | None = None
    # The opening fee the payee agreed to (bLIP-52): it accepts an HTLC that much short of
    # the invoice amount when the HTLC's extra_fee TLV says so.
    jit_fee_max_msat: int = 0


class SimPayment(msgspec.Struct, frozen=True, kw_only=True):
    """One outgoing payment attempt (a "sendpay group" / LND payment) and its outcome."""

    attempt_id: int  # global order in the ground-truth ledger, from 1
    payment_hash: str
    origin: str
    destination: str  # node name
    amount_msat: int  # delivered to the destination
    fee_msat: int
    status: PaymentStatus
    failure_reason: FailureReason | None
    preimage: str | None
    hops: tuple[RouteHop, ...]
    created_at_s: float
    resolved_at_s: float | None
    max_fee_msat: int = 0
    payment_request: str | None = None
    failure_detail: str = ""
    is_keysend: bool = False

    @property
    def is_final(self) -> bool:
        return self.status != "in_flight"


PendingState = Literal["opening", "closing", "closed"]


class SimPendingChannel(msgspec.Struct, frozen=True, kw_only=True):
    """A channel on its way in (funding not yet deep enough) or out (closing transaction
    broadcast; ``closed`` once it confirmed), seen from ``node``'s side."""

    node: str
    peer: str
    peer_pubkey: str
    state: PendingState
    capacity_msat: int
    local_balance_msat: int
    remote_balance_msat: int
    funding_txid: str
    funding_output: int
    opener_is_local: bool
    push_msat: int
    confirmations: int  # of the funding tx while opening, of the closing tx after
    confirmations_needed: int
    confirmation_height: int  # block that first confirmed that tx (0 while unconfirmed)
    channel_id: str  # short channel id once the funding tx is mined ("" before)
    fee_base_msat: int
    fee_ppm: int
    memo: str = ""
    closing_txid: str = ""
    closer_is_local: bool | None = None


class SimUtxo(msgspec.Struct, frozen=True, kw_only=True):
    txid: str
    vout: int
    amount_msat: int
    confirmations: int
    block_height: int | None


class SimWallet(msgspec.Struct, frozen=True, kw_only=True):
    confirmed_msat: int
    unconfirmed_msat: int
    utxos: tuple[SimUtxo, ...]


class SimFundingTx(msgspec.Struct, frozen=True, kw_only=True):
    """What a channel open answers at once: the broadcast funding transaction."""

    txid: str
    output_index: int
    fee_sat: int
    raw_hex: str
    channel_id_hex: str  # BOLT 2 channel_id (funding txid with the output index XORed in)
