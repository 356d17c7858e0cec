"""Pure conversions between LND protobuf messages and the port's types.

Field meanings follow ``lnrpc/lightning.proto`` and ``lnrpc/routerrpc/router.proto``
(https://github.com/lightningnetwork/lnd/tree/master/lnrpc). Where LND offers both a sat and a
msat field we read the msat one; ``lnrpc.Channel`` has sat fields only, so channel balances are
whole satoshis times 1000.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

import structlog

from services.lightning.lnd_errors import failure_reason_rule
from services.lightning.lnd_proto import lightning_pb2
from services.lightning.port import (
    Channel,
    DecodedInvoice,
    NodePaymentRecord,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PendingChannel,
    RouteHop,
)

log = structlog.get_logger(__name__)

MSAT_PER_SAT: Final = 1000
# Keysend carries the preimage in this TLV record (lnd's record.KeySendType, bLIP-3).
KEYSEND_RECORD_TYPE: Final = 5482373484

# lnrpc.Payment.PaymentStatus and lnrpc.HTLCAttempt.HTLCStatus numbers (lightning.proto).
PAYMENT_SUCCEEDED: Final = 2
PAYMENT_FAILED: Final = 3
HTLC_SUCCEEDED: Final = 1

PREIMAGE_BYTES: Final = 32

# BOLT 11 human-readable prefixes, longest first so that "lnbcrt" is not read as "lnbc".
# https://github.com/lightning/bolts/blob/master/11-payment-encoding.md#human-readable-part
_NETWORK_BY_PREFIX: Final = (
    ("lnbcrt", "regtest"),
    ("lntbs", "signet"),
    ("lnsb", "simnet"),
    ("lntb", "testnet"),
    ("lnbc", "mainnet"),
)

# A short channel id packs block height (3 bytes), transaction index (3) and output (2);
# BOLT 7: https://github.com/lightning/bolts/blob/master/07-routing-gossip.md#definition-of-short_channel_id
_SCID_TX_BITS: Final = 24
_SCID_OUT_BITS: Final = 16
_SCID_BLOCK_MAX: Final = (1 << 24) - 1
_SCID_TX_MAX: Final = (1 << 24) - 1
_SCID_OUT_MAX: Final = (1 << 16) - 1


def scid_to_str(chan_id: int) -> str:
    """lnd's uint64 ``chan_id`` as the implementation-neutral ``BLOCKxTXxOUT`` form."""
    block = chan_id >> (_SCID_TX_BITS + _SCID_OUT_BITS)
    tx = (chan_id >> _SCID_OUT_BITS) & _SCID_TX_MAX
    out = chan_id & _SCID_OUT_MAX
    return f"{block}x{tx}x{out}"


def scid_from_str(scid: str) -> int:
    """The inverse of :func:`scid_to_str`; raises ``ValueError`` for a malformed id."""
    parts = scid.split("x")
    if len(parts) != 3:
        raise ValueError(f"not a short channel id: {scid!r}")
    block, tx, out = (int(part) for part in parts)
    in_range = 0 <= block <= _SCID_BLOCK_MAX and 0 <= tx <= _SCID_TX_MAX
    if not (in_range and 0 <= out <= _SCID_OUT_MAX):
        raise ValueError(f"short channel id out of range: {scid!r}")
    return (block << (_SCID_TX_BITS + _SCID_OUT_BITS)) | (tx << _SCID_OUT_BITS) | out


def network_of(payment_request: str) -> str:
    """The network a BOLT 11 invoice is for, read from its prefix (lnd's PayReq omits it)."""
    text = payment_request.lower()
    for prefix, network in _NETWORK_BY_PREFIX:
        if text.startswith(prefix):
            return network
    raise ValueError("not a BOLT 11 payment request")


def payment_result(payment: Any) -> PaymentResult:
    """An ``lnrpc.Payment`` as a port result; anything not terminal stays in flight."""
    if payment.status == PAYMENT_SUCCEEDED:
        if not _preimage_matches(payment.payment_preimage, payment.payment_hash):
            # Never trust a preimage that does not hash to the payment hash: unknown.
            log.warning("lnd_bad_preimage", payment_hash=payment.payment_hash)
            return PaymentInFlight(payment_hash=payment.payment_hash)
        return PaymentSucceeded(
            payment_hash=payment.payment_hash,
            preimage=payment.payment_preimage,
            amount_msat=payment.value_msat,
            fee_msat=payment.fee_msat,
            hops=_settled_hops(payment),
        )
    if payment.status == PAYMENT_FAILED:
        rule = failure_reason_rule(payment.failure_reason)
        return PaymentFailed(
            payment_hash=payment.payment_hash,
            reason=rule.reason,
            detail=_failure_reason_name(payment.failure_reason),
        )
    return PaymentInFlight(
        payment_hash=payment.payment_hash, amount_msat=payment.value_msat or None
    )


def payment_record(payment: Any) -> NodePaymentRecord:
    """An ``lnrpc.Payment`` from ListPayments as the node's record (``payment_index`` order)."""
    result = payment_result(payment)
    status = {PaymentSucceeded: "succeeded", PaymentFailed: "failed"}.get(type(result), "in_flight")
    return NodePaymentRecord(
        index=payment.payment_index,
        payment_hash=payment.payment_hash,
        status=status,  # type: ignore[arg-type]
        amount_msat=payment.value_msat,
        # lnd keeps a failed payment's attempted fee; only a paid one cost anything.
        fee_msat=payment.fee_msat if status == "succeeded" else 0,
        created_at_s=payment.creation_date,
        preimage=result.preimage if isinstance(result, PaymentSucceeded) else None,
    )


def _preimage_matches(preimage_hex: str, payment_hash: str) -> bool:
    try:
        preimage = bytes.fromhex(preimage_hex)
    except ValueError:
        return False
    return len(preimage) == PREIMAGE_BYTES and hashlib.sha256(preimage).hexdigest() == payment_hash


def _settled_hops(payment: Any) -> tuple[RouteHop, ...]:
    for htlc in payment.htlcs:
        if htlc.status == HTLC_SUCCEEDED:
            return tuple(
                RouteHop(
                    pubkey=hop.pub_key,
                    channel_id=scid_to_str(hop.chan_id),
                    amount_msat=hop.amt_to_forward_msat,
                    fee_msat=hop.fee_msat,
                )
                for hop in htlc.route.hops
            )
    return ()


def _failure_reason_name(code: int) -> str:
    try:
        return str(lightning_pb2.PaymentFailureReason.Name(code))
    except ValueError:
        return f"FAILURE_REASON_{code}"


def decoded_invoice(payment_request: str, pay_req: Any) -> DecodedInvoice:
    """An ``lnrpc.PayReq`` (DecodePayReq) as the port's decoded invoice."""
    return DecodedInvoice(
        payment_request=payment_request,
        payment_hash=pay_req.payment_hash,
        destination=pay_req.destination,
        amount_msat=pay_req.num_msat or None,
        network=network_of(payment_request),
        created_at_s=pay_req.timestamp,
        expiry_s=pay_req.expiry,
        description=pay_req.description or None,
        min_final_cltv_expiry=pay_req.cltv_expiry,
    )


def channel(chan: Any, fees: Any | None = None) -> Channel:
    """An ``lnrpc.Channel`` as the port's channel (balances are whole sats in this message);
    ``fees`` is its ``ChannelFeeReport`` from FeeReport, if the node listed one."""
    return Channel(
        channel_id=scid_to_str(chan.chan_id),
        peer_pubkey=chan.remote_pubkey,
        capacity_msat=chan.capacity * MSAT_PER_SAT,
        local_balance_msat=chan.local_balance * MSAT_PER_SAT,
        remote_balance_msat=chan.remote_balance * MSAT_PER_SAT,
        active=chan.active,
        channel_point=chan.channel_point,
        pending_htlcs_msat=sum(htlc.amount for htlc in chan.pending_htlcs) * MSAT_PER_SAT,
        fee_base_msat=None if fees is None else fees.base_fee_msat,
        fee_ppm=None if fees is None else fees.fee_per_mil,
        initiator=chan.initiator,
        memo=chan.memo,
    )


def confirmations(first_height: int, tip_height: int) -> int:
    """Confirmations of a transaction first confirmed at ``first_height`` (0: not yet)."""
    return 0 if first_height == 0 else max(tip_height - first_height + 1, 0)


def pending_channels(pending: Any, tip_height: int) -> list[PendingChannel]:
    """``PendingChannelsResponse`` as the port's pending channels: opening, then closing
    (cooperative closes waiting for their transaction, then force closes)."""
    opening = [
        _pending(item, "opening", confirmations(item.confirmation_height, tip_height))
        for item in pending.pending_open_channels
    ]
    closing = [
        _pending(item, "closing", confirmations(item.close_height, tip_height), item.closing_txid)
        for item in pending.waiting_close_channels
    ]
    # A force close's depth is per output (limbo, maturity), not one number: 0.
    forced = [
        _pending(item, "closing", 0, item.closing_txid)
        for item in pending.pending_force_closing_channels
    ]
    return opening + closing + forced


def _pending(
    item: Any, state: Literal["opening", "closing"], depth: int, closing_txid: str = ""
) -> PendingChannel:
    """One entry of any of the three lists: each wraps the same ``PendingChannel`` message."""
    chan = item.channel
    return PendingChannel(
        channel_point=chan.channel_point,
        peer_pubkey=chan.remote_node_pub,
        capacity_msat=chan.capacity * MSAT_PER_SAT,
        local_balance_msat=chan.local_balance * MSAT_PER_SAT,
        state=state,
        confirmations=depth,
        closing_txid=closing_txid or None,
        memo=chan.memo,
    )


def chain_txid(txid_bytes: bytes) -> str:
    """lnd's chainhash bytes (``ChannelPoint``, ``PendingUpdate``) as a display txid."""
    return bytes(txid_bytes)[::-1].hex()
