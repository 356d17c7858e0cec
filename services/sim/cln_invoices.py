"""The simulated CLN node's invoice commands: ``invoice``, ``listinvoices``, ``waitanyinvoice``
and ``waitinvoice``, with lightningd's semantics (lightningd/invoice.c) and the shapes of
doc/schemas/<command>.json (shared/conformance/cln/schemas):

- ``invoice`` takes the caller's ``preimage``; a duplicate label is 900 ``Duplicate label``,
  checked first, and a second invoice for a preimage is 901 ``preimage already used``.
- ``pay_index`` counts this node's paid invoices from 1 in the order they were paid.
- ``waitanyinvoice`` answers the first invoice paid after ``lastpay_index`` (0: any), at once
  if one is; with ``timeout`` it gives up with 904 ``Timed out``.
- ``waitinvoice`` waits for one label: the invoice once paid, or 903 when it expires.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from services.sim.cln_params import msat, non_negative_int, required
from services.sim.errors import InvoiceExists, NodeOffline
from services.sim.jsonrpc import CATCHALL, JSONRPC_INVALID_PARAMS, RpcFailure
from services.sim.network import SimNetwork, wait_for_change
from services.sim.records import SimInvoice

# common/jsonrpc_errors.h
INVOICE_LABEL_ALREADY_EXISTS: Final = 900
INVOICE_PREIMAGE_ALREADY_EXISTS: Final = 901
INVOICE_EXPIRED_DURING_WAIT: Final = 903
INVOICE_WAIT_TIMED_OUT: Final = 904
# CLN's default invoice expiry: one week.
INVOICE_EXPIRY_S_DEFAULT: Final = 604_800
LABEL_CHARS_MAX: Final = 1024
# waitanyinvoice and waitinvoice wait without bound in CLN; a sim bounds one wait, so that a
# forgotten client cannot pin a connection forever (a day is far beyond any test or demo).
WAIT_S_MAX: Final = 86_400.0

# The simulator's states as listinvoices names them. CLN has no cancelled invoice (delinvoice
# deletes); one cancelled through a hold-invoice call can no longer be paid, so: expired.
_STATUS: Final = {
    "open": "unpaid",
    "accepted": "unpaid",
    "settled": "paid",
    "expired": "expired",
    "canceled": "expired",
}


class ClnInvoices:
    """The invoice commands of one simulated CLN node, and its labels."""

    def __init__(self, network: SimNetwork, node: str) -> None:
        self._network = network
        self._node = node
        self._labels: dict[str, str] = {}  # label -> payment hash
        self._label_of: dict[str, str] = {}  # payment hash -> label

    def methods(self) -> dict[str, Any]:
        return {
            "invoice": self.invoice,
            "listinvoices": self.listinvoices,
            "waitanyinvoice": self.waitanyinvoice,
            "waitinvoice": self.waitinvoice,
        }

    async def invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        label = _label(required(params, "label"))
        if label in self._labels:
            raise RpcFailure(INVOICE_LABEL_ALREADY_EXISTS, "Duplicate label")
        raw_amount = required(params, "amount_msat")
        amount_msat = None if raw_amount == "any" else msat(raw_amount, "amount_msat")
        description = required(params, "description")
        if not isinstance(description, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "description: should be a string")
        expiry_s = non_negative_int(params.get("expiry", INVOICE_EXPIRY_S_DEFAULT), "expiry")
        preimage = params.get("preimage")
        if preimage is not None and not isinstance(preimage, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "preimage: should be a 32 byte hex value")
        try:
            invoice = self._network.create_invoice(
                self._node,
                amount_msat,
                description,
                expiry_s,
                preimage=None if preimage is None else preimage.lower(),
            )
        except InvoiceExists:
            raise RpcFailure(INVOICE_PREIMAGE_ALREADY_EXISTS, "preimage already used") from None
        except ValueError as exc:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, str(exc)) from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        self._labels[label] = invoice.payment_hash
        self._label_of[invoice.payment_hash] = label
        assert invoice.bolt11 is not None
        return {
            "bolt11": invoice.bolt11,
            "payment_hash": invoice.payment_hash,
            "payment_secret": invoice.payment_secret,
            "expires_at": invoice.created_at_s + invoice.expiry_s,
            "created_index": invoice.add_index,
        }

    async def listinvoices(self, params: dict[str, Any]) -> dict[str, Any]:
        invoices = self._network.invoices_of(self._node)  # in created_index order
        filters = [name for name in ("label", "invstring", "payment_hash", "offer_id") if
                   params.get(name) is not None]  # fmt: skip
        if len(filters) > 1:
            raise RpcFailure(
                JSONRPC_INVALID_PARAMS,
                "Can only specify one of {label}, {invstring}, {payment_hash} or {offer_id}",
            )
        if params.get("label") is not None:
            wanted = self._labels.get(_label(params["label"]))
            invoices = [i for i in invoices if i.payment_hash == wanted]
        if params.get("invstring") is not None:
            invoices = [i for i in invoices if i.bolt11 == params["invstring"]]
        if params.get("payment_hash") is not None:
            invoices = [i for i in invoices if i.payment_hash == params["payment_hash"]]
        if params.get("offer_id") is not None:
            invoices = []  # the simulator issues no offers
        return {"invoices": [self._view(i) for i in _created_page(invoices, params, filters)]}

    async def waitanyinvoice(self, params: dict[str, Any]) -> dict[str, Any]:
        after = non_negative_int(params.get("lastpay_index", 0), "lastpay_index")
        timeout = params.get("timeout")
        wait_s = WAIT_S_MAX if timeout is None else float(non_negative_int(timeout, "timeout"))
        settlements = self._network.subscribe_invoices(self._node, after_pay_index=after)
        try:
            async with asyncio.timeout(wait_s):
                paid = await anext(settlements)
        except TimeoutError:
            raise RpcFailure(INVOICE_WAIT_TIMED_OUT, "Timed out") from None
        finally:
            await settlements.aclose()
        return self._view(paid)

    async def waitinvoice(self, params: dict[str, Any]) -> dict[str, Any]:
        label = _label(required(params, "label"))
        payment_hash = self._labels.get(label)
        if payment_hash is None:
            raise RpcFailure(CATCHALL, "Label not found")
        deadline_s = self._network.now_s() + WAIT_S_MAX
        async with self._network.watch_invoices(self._node) as changes:
            while True:
                invoice = self._network.lookup_invoice(self._node, payment_hash)
                assert invoice is not None, payment_hash
                if invoice.state == "settled":
                    return self._view(invoice)
                if invoice.state in ("expired", "canceled"):
                    raise RpcFailure(
                        INVOICE_EXPIRED_DURING_WAIT,
                        "invoice expired during wait",
                        self._view(invoice),
                    )
                now_s = self._network.now_s()
                if now_s > deadline_s:
                    raise RpcFailure(CATCHALL, "Timed out waiting for the invoice")
                # Woken by any change of this node's invoices, or by the expiry (read from the
                # clock, not announced).
                expires_in_s = invoice.created_at_s + invoice.expiry_s - now_s
                await wait_for_change(changes, None, min(max(expires_in_s, 0) + 1, WAIT_S_MAX))

    def _view(self, invoice: SimInvoice) -> dict[str, Any]:
        """One invoice as listinvoices, waitanyinvoice and waitinvoice show it."""
        view: dict[str, Any] = {
            "label": self._label_of.get(invoice.payment_hash) or _sim_label(invoice),
            "description": invoice.memo,
            "payment_hash": invoice.payment_hash,
            "status": _STATUS[invoice.state],
            "expires_at": invoice.created_at_s + invoice.expiry_s,
            "created_index": invoice.add_index,
        }
        if invoice.amount_msat is not None:
            view["amount_msat"] = invoice.amount_msat
        if invoice.bolt11 is not None:
            view["bolt11"] = invoice.bolt11
        if invoice.state == "settled":
            assert invoice.settled_at_s is not None
            view["pay_index"] = invoice.pay_index
            view["amount_received_msat"] = invoice.amount_received_msat
            view["paid_at"] = invoice.settled_at_s
            view["payment_preimage"] = invoice.preimage
        return view


def _sim_label(invoice: SimInvoice) -> str:
    # Invoices made without this node's invoice command: keysend receipts get the keysend
    # plugin's kind of label, others one from their index.
    if invoice.is_keysend:
        return f"keysend-{invoice.payment_hash}"
    return f"sim-{invoice.add_index}"


def _label(value: Any) -> str:
    # The schema allows a string or an integer, and an integer is treated as its string.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "label: should be a string or integer")
    label = str(value)
    if len(label) > LABEL_CHARS_MAX:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"label: longer than {LABEL_CHARS_MAX}")
    return label


def _created_page(
    invoices: list[SimInvoice], params: dict[str, Any], filters: list[str]
) -> list[SimInvoice]:
    """``index=created`` with ``start``/``limit``, as lightningd's json_listinvoices checks
    them."""
    index = params.get("index")
    start = non_negative_int(params.get("start", 0), "start")
    limit = params.get("limit")
    if index is None:
        if start or limit is not None:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "Can only specify {start} with {index}")
        return invoices
    if index == "updated":
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "index: updated is not supported by the simulator")
    if index != "created":
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "index: should be created or updated")
    if filters:
        raise RpcFailure(
            JSONRPC_INVALID_PARAMS, "Cannot use {index} with {label}, {invstring} or {payment_hash}"
        )
    page = [invoice for invoice in invoices if invoice.add_index >= start]
    return page if limit is None else page[: non_negative_int(limit, "limit")]
