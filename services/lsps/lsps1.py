"""The LSPS1 client (bLIP-51): ``get_info``, ``create_order``, ``get_order`` over LSPS0, with
the LSP's answers checked and turned into the order aggregate's reports.

Amounts arrive as decimal-string sat and leave as integer msat; datetimes as ISO 8601 and
leave as epoch seconds. The invoice is decoded by our own node (amount and payee), so the
aggregate can check the quote against what would actually be paid. An answer that breaks the
spec's shapes is ``LspsProtocolError``: the order is not paid on a quote we cannot read.
"""

from __future__ import annotations

import datetime
from typing import Any, Final

from schemas import lsp_messages as lm
from services.lightning.port import NodeError, NodePort
from services.lsps import lsps0
from services.lsps.client import LspsClient

MSAT_PER_SAT: Final = 1000
# bLIP-51: an invoice is at most 2048 characters; an order id at most 64.
INVOICE_CHARS_MAX: Final = 2048


class LspsProtocolError(Exception):
    """The LSP answered something bLIP-51 does not allow."""


class Lsps1Client:
    def __init__(self, lsps: LspsClient, node: NodePort, *, timeout_s: float) -> None:
        self._lsps = lsps
        self._node = node
        self._timeout_s = timeout_s

    async def get_info(self, lsp_pubkey: str) -> dict[str, Any]:
        info = await self._lsps.call(lsp_pubkey, "lsps1.get_info", {}, timeout_s=self._timeout_s)
        for key in ("min_initial_lsp_balance_sat", "max_initial_lsp_balance_sat"):
            _sat(info, key)
        return info

    async def create_order(
        self, lsp_order_id: str, order: lm.LspOrderRequested
    ) -> lm.RecordLspOrderReport:
        """``created`` with the quote, or ``refused`` with the LSP's error."""
        params: dict[str, Any] = {
            "lsp_balance_sat": lsps0.amount_str(order.lsp_balance_msat // MSAT_PER_SAT),
            "client_balance_sat": lsps0.amount_str(order.client_balance_msat // MSAT_PER_SAT),
            "required_channel_confirmations": 0,
            "funding_confirms_within_blocks": 6,
            "channel_expiry_blocks": order.channel_expiry_blocks,
            "announce_channel": order.announce_channel,
        }
        if order.token:
            params["token"] = order.token
        try:
            answer = await self._lsps.call(
                order.lsp_pubkey, "lsps1.create_order", params, timeout_s=self._timeout_s
            )
        except lsps0.LspsError as error:
            data = error.data or {}
            return lm.RecordLspOrderReport(
                lsp_order_id=lsp_order_id, stage="refused", refusal_code=error.code,
                refusal_message=str(data.get("message", error.message))[: lm.LSP_TEXT_CHARS_MAX],
                refusal_property=str(data.get("property", ""))[: lm.LSP_TEXT_CHARS_MAX],
            )  # fmt: skip
        return await self._created(lsp_order_id, answer)

    async def get_order(
        self, lsp_order_id: str, lsp_pubkey: str, remote_order_id: str
    ) -> lm.RecordLspOrderReport:
        answer = await self._lsps.call(
            lsp_pubkey, "lsps1.get_order", {"order_id": remote_order_id}, timeout_s=self._timeout_s
        )
        state = answer.get("order_state")
        if state not in ("CREATED", "COMPLETED", "FAILED"):
            raise LspsProtocolError(f"order_state {state!r}")
        bolt11 = _bolt11(answer)
        payment_state = bolt11.get("state")
        if payment_state == "CANCELLED":  # deprecated; bLIP-51 asks clients to still read it
            payment_state = "REFUNDED"
        if payment_state not in ("EXPECT_PAYMENT", "HOLD", "PAID", "REFUNDED"):
            raise LspsProtocolError(f"payment state {payment_state!r}")
        outpoint = None
        channel = answer.get("channel")
        if state == "COMPLETED":
            if not isinstance(channel, dict) or not isinstance(
                channel.get("funding_outpoint"), str
            ):
                raise LspsProtocolError("a completed order without its channel")
            outpoint = channel["funding_outpoint"]
        return lm.RecordLspOrderReport(
            lsp_order_id=lsp_order_id, stage="status", order_state=state,
            payment_state=payment_state, funding_outpoint=outpoint,
        )  # fmt: skip

    async def _created(self, lsp_order_id: str, answer: dict[str, Any]) -> lm.RecordLspOrderReport:
        order_id = answer.get("order_id")
        if not isinstance(order_id, str) or not 0 < len(order_id) <= lm.REMOTE_ORDER_ID_CHARS_MAX:
            raise LspsProtocolError("order_id missing or longer than 64 characters")
        bolt11 = _bolt11(answer)
        invoice = bolt11.get("invoice")
        if not isinstance(invoice, str) or not 0 < len(invoice) <= INVOICE_CHARS_MAX:
            raise LspsProtocolError("payment.bolt11.invoice missing or too long")
        try:
            decoded = await self._node.decode(invoice)
        except NodeError as exc:
            raise LspsProtocolError(f"our node cannot decode the LSP's invoice: {exc}") from None
        return lm.RecordLspOrderReport(
            lsp_order_id=lsp_order_id, stage="created", remote_order_id=order_id,
            invoice=invoice, invoice_amount_msat=decoded.amount_msat,
            invoice_payee=decoded.destination,
            fee_total_msat=_sat(bolt11, "fee_total_sat") * MSAT_PER_SAT,
            order_total_msat=_sat(bolt11, "order_total_sat") * MSAT_PER_SAT,
            expires_at_s=_datetime_s(bolt11.get("expires_at")),
        )  # fmt: skip


def _bolt11(answer: dict[str, Any]) -> dict[str, Any]:
    payment = answer.get("payment")
    bolt11 = payment.get("bolt11") if isinstance(payment, dict) else None
    if not isinstance(bolt11, dict):
        # We pay over Lightning only; an LSP that offers no bolt11 option cannot sell to us.
        raise LspsProtocolError("the order has no payment.bolt11 option")
    return bolt11


def _sat(obj: dict[str, Any], key: str) -> int:
    try:
        return lsps0.amount(obj.get(key), field=key)
    except lsps0.LspsError:
        raise LspsProtocolError(f"{key} is not an LSPS0 sat amount") from None


def _datetime_s(value: Any) -> int:
    """LSPS0 datetime (ISO 8601, UTC) to epoch seconds."""
    if not isinstance(value, str) or len(value) > 40:
        raise LspsProtocolError("expires_at is not a datetime")
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LspsProtocolError("expires_at is not ISO 8601") from None
    if moment.tzinfo is None:
        raise LspsProtocolError("expires_at has no time zone")
    return int(moment.timestamp())
