"""Simulator records rendered as the LND protobuf messages a real lnd would send.

Field meanings: ``lnrpc/lightning.proto`` (https://github.com/lightningnetwork/lnd/blob/master/lnrpc/lightning.proto).
lnd fills its deprecated sat fields alongside the msat ones; so do we, so that clients reading
either see consistent values. Sat fields are msat floored, as in lnd.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from services.lightning.lnd_convert import MSAT_PER_SAT, scid_from_str
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.port import DecodedInvoice, FailureReason, RouteHop
from services.sim.records import SimChannel, SimInvoice, SimNode, SimPayment

# The lnd version whose API the simulator serves, in lnd's own version format: the protos in
# services/lightning/lnd_proto come from lnd's master after v0.21.0-beta.rc2 (ADR 0113).
LND_VERSION: Final = "0.21.0-beta commit=corridor-sim"
NODE_COLOR: Final = "#3399ff"
P2P_PORT: Final = 9735
# BOLT 11's default min_final_cltv_expiry_delta, and lnd's per-hop default CLTV delta.
FINAL_CLTV_DELTA: Final = 18
HOP_CLTV_DELTA: Final = 40

_NS_PER_S: Final = 1_000_000_000
_ZERO_PREIMAGE_HEX: Final = "00" * 32

# How lnd would report each simulated outcome. Some port reasons have no lnd counterpart:
# a payee rejecting an already-settled or unknown invoice fails the HTLC with
# incorrect_or_unknown_payment_details (BOLT 4), and an unreachable destination leaves no route.
LND_FAILURE_REASON: Final[dict[FailureReason, ln.PaymentFailureReason]] = {
    FailureReason.NO_ROUTE: ln.FAILURE_REASON_NO_ROUTE,
    FailureReason.INSUFFICIENT_LIQUIDITY: ln.FAILURE_REASON_INSUFFICIENT_BALANCE,
    FailureReason.TIMEOUT: ln.FAILURE_REASON_TIMEOUT,
    FailureReason.INCORRECT_DETAILS: ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
    FailureReason.INVOICE_EXPIRED: ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
    FailureReason.ALREADY_PAID: ln.FAILURE_REASON_INCORRECT_PAYMENT_DETAILS,
    FailureReason.NODE_UNAVAILABLE: ln.FAILURE_REASON_NO_ROUTE,
    FailureReason.UNKNOWN: ln.FAILURE_REASON_ERROR,
}

_PAYMENT_STATUS: Final = {
    "in_flight": ln.Payment.IN_FLIGHT,
    "succeeded": ln.Payment.SUCCEEDED,
    "failed": ln.Payment.FAILED,
}
_HTLC_STATUS: Final = {
    "in_flight": ln.HTLCAttempt.IN_FLIGHT,
    "succeeded": ln.HTLCAttempt.SUCCEEDED,
    "failed": ln.HTLCAttempt.FAILED,
}
_INVOICE_STATE: Final = {
    "open": ln.Invoice.OPEN,
    "settled": ln.Invoice.SETTLED,
    "canceled": ln.Invoice.CANCELED,
    # lnd cancels an invoice when it expires (invoices/invoiceregistry.go).
    "expired": ln.Invoice.CANCELED,
}


def _ns(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * _NS_PER_S)


def _sat(msat: int) -> int:
    return msat // MSAT_PER_SAT


def payment(record: SimPayment, *, omit_hops: bool = False) -> Any:
    """``lnrpc.Payment`` for one payment attempt, as SendPaymentV2/TrackPaymentV2 stream it.

    ``omit_hops`` is ListPayments' option: each HTLC's route keeps its totals but no hops.
    """
    reason = ln.FAILURE_REASON_NONE
    if record.status == "failed":
        reason = LND_FAILURE_REASON[record.failure_reason or FailureReason.UNKNOWN]
    return ln.Payment(
        payment_hash=record.payment_hash,
        value=_sat(record.amount_msat),
        creation_date=int(record.created_at_s),
        fee=_sat(record.fee_msat),
        payment_preimage=record.preimage or _ZERO_PREIMAGE_HEX,
        value_sat=_sat(record.amount_msat),
        value_msat=record.amount_msat,
        payment_request=record.payment_request or "",
        status=_PAYMENT_STATUS[record.status],
        fee_sat=_sat(record.fee_msat),
        fee_msat=record.fee_msat,
        creation_time_ns=_ns(record.created_at_s),
        htlcs=[_htlc(record, omit_hops=omit_hops)] if record.hops else [],
        payment_index=record.attempt_id,
        failure_reason=reason,
    )


def initiated(record: SimPayment) -> Any:
    """``lnrpc.Payment`` as lnd first reports a send: registered, no HTLC attempted yet.

    SendPaymentV2 registers the payment and subscribes to it before the first HTLC leaves
    (``router_server.go``), so its stream opens with this ``INITIATED`` state.
    """
    return ln.Payment(
        payment_hash=record.payment_hash,
        value=_sat(record.amount_msat),
        creation_date=int(record.created_at_s),
        payment_preimage=_ZERO_PREIMAGE_HEX,
        value_sat=_sat(record.amount_msat),
        value_msat=record.amount_msat,
        payment_request=record.payment_request or "",
        status=ln.Payment.INITIATED,
        creation_time_ns=_ns(record.created_at_s),
        payment_index=record.attempt_id,
        failure_reason=ln.FAILURE_REASON_NONE,
    )


def _htlc(record: SimPayment, *, omit_hops: bool) -> Any:
    preimage = bytes.fromhex(record.preimage) if record.preimage else b""
    return ln.HTLCAttempt(
        attempt_id=record.attempt_id,
        status=_HTLC_STATUS[record.status],
        route=_route(record.hops, omit_hops=omit_hops),
        attempt_time_ns=_ns(record.created_at_s),
        resolve_time_ns=_ns(record.resolved_at_s),
        preimage=preimage if record.status == "succeeded" else b"",
    )


def _route(hops: tuple[RouteHop, ...], *, omit_hops: bool) -> Any:
    total_fees_msat = sum(hop.fee_msat for hop in hops)
    first_amount_msat = hops[0].amount_msat + hops[0].fee_msat if hops else 0
    return ln.Route(
        total_time_lock=FINAL_CLTV_DELTA + HOP_CLTV_DELTA * max(0, len(hops) - 1),
        total_fees=_sat(total_fees_msat),
        total_amt=_sat(first_amount_msat),
        hops=[] if omit_hops else [_hop(hop) for hop in hops],
        total_fees_msat=total_fees_msat,
        total_amt_msat=first_amount_msat,
        # What left over the first channel; differs from total_amt_msat only on custom
        # (asset) channels, which the simulator has none of.
        first_hop_amount_msat=first_amount_msat,
    )


def _hop(hop: RouteHop) -> Any:
    return ln.Hop(
        chan_id=scid_from_str(hop.channel_id),
        amt_to_forward=_sat(hop.amount_msat),
        fee=_sat(hop.fee_msat),
        expiry=FINAL_CLTV_DELTA,
        amt_to_forward_msat=hop.amount_msat,
        fee_msat=hop.fee_msat,
        pub_key=hop.pubkey,
        tlv_payload=True,
    )


def get_info(
    node: SimNode,
    *,
    network: str,
    block_height: int,
    channels: list[SimChannel],
    now_s: float,
    pending_channels: int = 0,
) -> Any:
    active = sum(1 for chan in channels if chan.active)
    return ln.GetInfoResponse(
        version=LND_VERSION,
        commit_hash="0" * 40,
        identity_pubkey=node.pubkey,
        alias=node.alias or node.name,
        color=NODE_COLOR,
        num_pending_channels=pending_channels,
        num_active_channels=active,
        num_inactive_channels=len(channels) - active,
        num_peers=len({chan.peer for chan in channels}),
        block_height=block_height,
        # A stand-in block hash: deterministic per height, 32 bytes like a real one.
        block_hash=hashlib.sha256(f"block-{block_height}".encode()).hexdigest(),
        best_header_timestamp=int(now_s),
        synced_to_chain=True,
        synced_to_graph=True,
        chains=[ln.Chain(chain="bitcoin", network=network)],
        uris=[f"{node.pubkey}@127.0.0.1:{P2P_PORT}"],
        wallet_synced=True,
        graph_cache_status=ln.GRAPH_CACHE_STATUS_LOADED,
    )


def add_invoice_response(invoice: SimInvoice) -> Any:
    return ln.AddInvoiceResponse(
        r_hash=bytes.fromhex(invoice.payment_hash),
        payment_request=invoice.bolt11 or "",
        add_index=invoice.add_index,
        payment_addr=bytes.fromhex(invoice.payment_secret),
    )


def invoice(record: SimInvoice) -> Any:
    """``lnrpc.Invoice`` as LookupInvoice returns it."""
    amount_msat = record.amount_msat or 0
    settled = record.state == "settled"
    return ln.Invoice(
        memo=record.memo,
        r_preimage=bytes.fromhex(record.preimage),
        r_hash=bytes.fromhex(record.payment_hash),
        value=_sat(amount_msat),
        value_msat=amount_msat,
        settled=settled,
        creation_date=record.created_at_s,
        settle_date=record.settled_at_s or 0,
        payment_request=record.bolt11 or "",
        expiry=record.expiry_s,
        cltv_expiry=FINAL_CLTV_DELTA,
        add_index=record.add_index,
        settle_index=record.add_index if settled else 0,
        amt_paid=record.amount_received_msat,
        amt_paid_sat=_sat(record.amount_received_msat),
        amt_paid_msat=record.amount_received_msat,
        state=_INVOICE_STATE[record.state],
        is_keysend=record.is_keysend,
        payment_addr=bytes.fromhex(record.payment_secret),
    )


def pay_req(decoded: DecodedInvoice) -> Any:
    """``lnrpc.PayReq`` (DecodePayReq); its amounts are sat floored and exact msat."""
    amount_msat = decoded.amount_msat or 0
    return ln.PayReq(
        destination=decoded.destination,
        payment_hash=decoded.payment_hash,
        num_satoshis=_sat(amount_msat),
        timestamp=decoded.created_at_s,
        expiry=decoded.expiry_s,
        description=decoded.description or "",
        cltv_expiry=decoded.min_final_cltv_expiry,
        num_msat=amount_msat,
    )
