"""Simulator records rendered as Core Lightning JSON-RPC results.

Field names and types follow CLN's schemas (doc/schemas/<method>.json, copied to
shared/conformance/cln/schemas); tests validate every view against them. Pure functions.
"""

from __future__ import annotations

from typing import Any

import bolt11 as b11_package

from services.bolt11.codec import NETWORK_TO_CURRENCY
from services.sim.records import SimChannel, SimInvoice, SimPayment

# CLN names mainnet "bitcoin" in getinfo.
CLN_NETWORK_NAME = {
    "mainnet": "bitcoin",
    "testnet": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}
SIM_VERSION = "v26.06-corridor-sim"
# BOLT 4 failure codes used in routing-failure objects.
WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS = 0x400F
WIRE_TEMPORARY_CHANNEL_FAILURE = 0x1007
# The feature bits our simulated nodes advertise (var_onion_optin, payment_secret, basic_mpp).
_OUR_FEATURES_HEX = "02a000"


def getinfo(
    *,
    pubkey: str,
    alias: str,
    network: str,
    block_height: int,
    channels: list[SimChannel],
    fees_collected_msat: int,
    lightning_dir: str,
    pending_channels: int = 0,
) -> dict[str, Any]:
    active = sum(1 for c in channels if c.active)
    return {
        "id": pubkey,
        "alias": alias,
        "color": pubkey[2:8],
        "num_peers": len({c.peer_pubkey for c in channels}),
        "num_pending_channels": pending_channels,
        "num_active_channels": active,
        "num_inactive_channels": len(channels) - active,
        "address": [],
        "binding": [],
        "version": SIM_VERSION,
        "blockheight": block_height,
        "network": CLN_NETWORK_NAME[network],
        "fees_collected_msat": fees_collected_msat,
        "lightning-dir": lightning_dir,
        "our_features": {
            "init": _OUR_FEATURES_HEX,
            "node": _OUR_FEATURES_HEX,
            "channel": "",
            "invoice": "024100",
        },
    }


def invoice_created(invoice: SimInvoice) -> dict[str, Any]:
    assert invoice.bolt11 is not None
    return {
        "bolt11": invoice.bolt11,
        "payment_hash": invoice.payment_hash,
        "payment_secret": invoice.payment_secret,
        "expires_at": invoice.created_at_s + invoice.expiry_s,
        "created_index": invoice.add_index,
    }


def decoded_bolt11(payment_request: str) -> dict[str, Any]:
    """``decode`` of a BOLT 11 string the caller already validated."""
    invoice = b11_package.decode(payment_request)
    signature = invoice.signature
    assert signature is not None
    view: dict[str, Any] = {
        "type": "bolt11 invoice",
        "valid": True,
        "currency": invoice.currency,
        "created_at": int(invoice.date),
        "expiry": int(invoice.expiry),
        "payee": invoice.payee,
        "payment_hash": invoice.payment_hash,
        "signature": _der_signature(signature.signature_data[:64]),
        "min_final_cltv_expiry": int(invoice.min_final_cltv_expiry),
    }
    if invoice.amount_msat is not None:
        view["amount_msat"] = int(invoice.amount_msat)
    if invoice.description is not None:
        view["description"] = invoice.description
    if invoice.description_hash is not None:
        view["description_hash"] = invoice.description_hash
    if invoice.payment_secret is not None:
        view["payment_secret"] = invoice.payment_secret
    if invoice.features is not None:
        bits = invoice.features.data.bin
        value = int(bits, 2) if bits else 0
        view["features"] = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big").hex()
    assert invoice.currency in NETWORK_TO_CURRENCY.values()
    return view


def sendpay(
    payment: SimPayment,
    *,
    created_index: int,
    groupid: int,
    partid: int,
    label: str | None,
    destination_pubkey: str,
) -> dict[str, Any]:
    """One ``listsendpays``/``waitsendpay`` entry: one part of a sendpay group.

    lightningd prints ``partid`` only when it is not 0 (xpay's parts count from 1).
    """
    view: dict[str, Any] = {
        "created_index": created_index,
        "id": created_index,
        "groupid": groupid,
        "payment_hash": payment.payment_hash,
        "status": _status(payment),
        "amount_msat": payment.amount_msat,
        "destination": destination_pubkey,
        "created_at": int(payment.created_at_s),
        "amount_sent_msat": payment.amount_msat + payment.fee_msat,
    }
    if partid:
        view["partid"] = partid
    if label is not None:
        view["label"] = label
    if payment.payment_request is not None:
        view["bolt11"] = payment.payment_request
    if payment.resolved_at_s is not None:
        view["updated_index"] = created_index
        view["completed_at"] = int(payment.resolved_at_s)
    if payment.status == "succeeded":
        view["payment_preimage"] = payment.preimage
    return view


def listpays_entry(
    parts: list[tuple[int, SimPayment]], *, label: str | None, destination_pubkey: str
) -> dict[str, Any]:
    """One ``listpays`` entry: the parts (created index, attempt) of one (hash, group).

    As plugins/xpay/listpays.c merges them: complete if any part is, else pending if any is,
    else failed; amounts count complete and pending parts only, so a failed entry sent 0.
    """
    assert parts, "a listpays entry has at least one part"
    first = parts[0][1]
    statuses = {payment.status for _, payment in parts}
    live = [payment for _, payment in parts if payment.status != "failed"]
    view: dict[str, Any] = {
        "created_index": min(index for index, _ in parts),
        "payment_hash": first.payment_hash,
        "destination": destination_pubkey,
        "created_at": int(first.created_at_s),
        "amount_sent_msat": sum(p.amount_msat + p.fee_msat for p in live),
    }
    if first.payment_request is not None:
        view["bolt11"] = first.payment_request
    if label is not None:
        view["label"] = label
    resolved = [index for index, payment in parts if payment.resolved_at_s is not None]
    if resolved:
        view["updated_index"] = max(resolved)
    if "succeeded" in statuses:
        done = [p for p in live if p.status == "succeeded"]
        view["status"] = "complete"
        view["completed_at"] = min(int(p.resolved_at_s or 0) for p in done)
        view["preimage"] = done[0].preimage
    else:
        view["status"] = "pending" if "in_flight" in statuses else "failed"
    if live:
        view["amount_msat"] = sum(p.amount_msat for p in live)
    if len(live) > 1:
        view["number_of_parts"] = len(live)
    return view


def pay_result(payment: SimPayment, *, destination_pubkey: str) -> dict[str, Any]:
    """``pay``/``keysend`` success."""
    assert payment.status == "succeeded" and payment.preimage is not None
    return {
        "payment_preimage": payment.preimage,
        "destination": destination_pubkey,
        "payment_hash": payment.payment_hash,
        "created_at": payment.created_at_s,
        "parts": 1,
        "amount_msat": payment.amount_msat,
        "amount_sent_msat": payment.amount_msat + payment.fee_msat,
        "status": "complete",
    }


def xpay_result(payment: SimPayment) -> dict[str, Any]:
    assert payment.status == "succeeded" and payment.preimage is not None
    return {
        "payment_preimage": payment.preimage,
        "failed_parts": 0,
        "successful_parts": 1,
        "amount_msat": payment.amount_msat,
        "amount_sent_msat": payment.amount_msat + payment.fee_msat,
    }


def routing_failure(
    *, erring_index: int, erring_node: str, erring_channel: str, failcode: int, failcodename: str
) -> dict[str, Any]:
    return {
        "erring_index": erring_index,
        "erring_node": erring_node,
        "erring_channel": erring_channel,
        "erring_direction": 0,
        "failcode": failcode,
        "failcodename": failcodename,
    }


def _status(payment: SimPayment) -> str:
    return {"in_flight": "pending", "succeeded": "complete", "failed": "failed"}[payment.status]


def _der_signature(compact: bytes) -> str:
    """DER encoding of a 64-byte (r, s) signature, as CLN prints it."""

    def integer(value: bytes) -> bytes:
        value = value.lstrip(b"\x00") or b"\x00"
        if value[0] & 0x80:
            value = b"\x00" + value
        return b"\x02" + bytes([len(value)]) + value

    body = integer(compact[:32]) + integer(compact[32:])
    return (b"\x30" + bytes([len(body)]) + body).hex()
