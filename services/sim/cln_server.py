"""A simulated Core Lightning node: CLN's JSON-RPC on a unix socket, backed by ``SimNetwork``.

pyln-client's ``LightningRpc`` talks to it unchanged. Methods, parameters, results and error
codes follow CLN's schemas (doc/schemas/*.json) and common/jsonrpc_errors.h; see
shared/conformance/cln/pay-error-codes.md. Offline nodes stop listening (connections are
refused); slowed nodes answer late.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from services.lightning.bolt11 import InvoiceDecodeError
from services.lightning.port import DecodedInvoice, FailureReason
from services.sim import cln_views as views
from services.sim.errors import InvalidPaymentRequest, NodeOffline, PaymentExists
from services.sim.jsonrpc import (
    CATCHALL,
    JSONRPC_INVALID_PARAMS,
    JSONRPC_METHOD_NOT_FOUND,
    JsonRpcUnixServer,
    Params,
    RpcFailure,
)
from services.sim.network import SimNetwork
from services.sim.payments import DETAIL_TOO_EXPENSIVE
from services.sim.records import SimPayment

# common/jsonrpc_errors.h
PAY_IN_PROGRESS = 200
PAY_RHASH_ALREADY_USED = 201
PAY_DESTINATION_PERM_FAIL = 203
PAY_TRY_OTHER_ROUTE = 204
PAY_ROUTE_NOT_FOUND = 205
PAY_ROUTE_TOO_EXPENSIVE = 206
PAY_INVOICE_EXPIRED = 207
PAY_NO_SUCH_PAYMENT = 208
PAY_UNSPECIFIED_ERROR = 209
PAY_STOPPED_RETRYING = 210
PAY_INSUFFICIENT_FUNDS = 215
INVOICE_LABEL_ALREADY_EXISTS = 900

# CLN defaults: invoice expiry one week; pay's maxfeepercent 0.5 % with 5 sat exempt.
INVOICE_EXPIRY_S_DEFAULT = 604_800
PAY_MAXFEEPERCENT_DEFAULT = 0.5
PAY_EXEMPTFEE_MSAT_DEFAULT = 5000
PAY_RETRY_FOR_S_DEFAULT = 60
# `pay` waits for its in-flight HTLC however long it takes; a bound keeps a parked HTLC from
# pinning a connection forever in long-running sims.
PAY_WAIT_S_MAX = 3600.0
LABEL_CHARS_MAX = 1024

_PARAMS: dict[str, tuple[str, ...]] = {
    "getinfo": (),
    "invoice": ("amount_msat", "label", "description", "expiry", "fallbacks", "preimage"),
    "decode": ("string",),
    "pay": (
        "bolt11",
        "amount_msat",
        "label",
        "riskfactor",
        "maxfeepercent",
        "retry_for",
        "maxdelay",
        "exemptfee",
        "localinvreqid",
        "exclude",
        "maxfee",
        "description",
    ),
    "xpay": (
        "invstring",
        "amount_msat",
        "maxfee",
        "layers",
        "retry_for",
        "partial_msat",
        "maxdelay",
    ),
    "keysend": (
        "destination",
        "amount_msat",
        "label",
        "maxfeepercent",
        "retry_for",
        "maxdelay",
        "exemptfee",
        "routehints",
        "extratlvs",
        "maxfee",
    ),
    "listpays": ("bolt11", "payment_hash", "status"),
    "listsendpays": ("bolt11", "payment_hash", "status"),
    "waitsendpay": ("payment_hash", "timeout", "partid", "groupid"),
    "listpeerchannels": ("id", "short_channel_id", "channel_id"),
    "listfunds": ("spent",),
}


class ClnNodeServer:
    def __init__(self, network: SimNetwork, node: str, socket_path: Path) -> None:
        self._network = network
        self._node = network.node(node)
        assert self._node.implementation == "cln", f"{node} is not a CLN node"
        self._rpc = JsonRpcUnixServer(socket_path, self._handle, name=f"cln:{node}")
        self._labels: dict[str, str] = {}  # invoice label -> payment hash
        self._state_tasks: set[asyncio.Task[None]] = set()
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "getinfo": self._getinfo,
            "invoice": self._invoice,
            "decode": self._decode,
            "pay": self._pay,
            "xpay": self._xpay,
            "keysend": self._keysend,
            "listpays": self._listpays,
            "listsendpays": self._listsendpays,
            "waitsendpay": self._waitsendpay,
            "listpeerchannels": self._listpeerchannels,
            "listfunds": self._listfunds,
        }

    @property
    def node(self) -> str:
        return self._node.name

    @property
    def socket_path(self) -> Path:
        return self._rpc.path

    @property
    def listening(self) -> bool:
        return self._rpc.listening

    @property
    def endpoint(self) -> str:
        return f"cln://{self._rpc.path}"

    async def start(self) -> None:
        self._network.add_node_listener(self._on_node_state)
        if self._network.is_online(self._node.name):
            await self._rpc.start()

    async def stop(self) -> None:
        self._network.remove_node_listener(self._on_node_state)
        for task in list(self._state_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._rpc.stop()

    def _on_node_state(self, name: str, online: bool) -> None:
        if name != self._node.name:
            return
        task = asyncio.get_running_loop().create_task(
            self._rpc.start() if online else self._rpc.pause()
        )
        self._state_tasks.add(task)
        task.add_done_callback(self._state_tasks.discard)

    async def _handle(self, method: str, params: Params) -> Any:
        latency_s = self._network.faults.latency_for(self._node.name)
        if latency_s:
            await asyncio.sleep(latency_s)
        handler = self._methods.get(method)
        if handler is None:
            raise RpcFailure(JSONRPC_METHOD_NOT_FOUND, f"Unknown command '{method}'")
        return await handler(_named(method, params))

    # Node and channels.

    async def _getinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        pubkey = self._node.pubkey
        fees_msat = sum(
            hop.fee_msat
            for p in self._network.payments()
            if p.status == "succeeded"
            for hop in p.hops
            if hop.pubkey == pubkey
        )
        return views.getinfo(
            pubkey=pubkey,
            alias=self._node.alias,
            network=self._network.network,
            block_height=self._network.block_height,
            channels=self._network.channels_of(self._node.name),
            fees_collected_msat=fees_msat,
            lightning_dir=str(self._rpc.path.parent),
        )

    async def _listpeerchannels(self, params: dict[str, Any]) -> dict[str, Any]:
        channels = [
            views.peer_channel(
                c, our_pubkey=self._node.pubkey, peer_connected=self._connected(c.peer)
            )
            for c in self._network.channels_of(self._node.name)
        ]
        if params.get("id") is not None:
            channels = [c for c in channels if c["peer_id"] == params["id"]]
        if params.get("short_channel_id") is not None:
            channels = [c for c in channels if c["short_channel_id"] == params["short_channel_id"]]
        return {"channels": channels}

    async def _listfunds(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "outputs": [],
            "channels": [
                views.funds_channel(c, peer_connected=self._connected(c.peer))
                for c in self._network.channels_of(self._node.name)
            ],
        }

    def _connected(self, peer: str) -> bool:
        return self._network.is_online(peer)

    # Invoices.

    async def _invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        label = _required(params, "label")
        if not isinstance(label, str | int) or len(str(label)) > LABEL_CHARS_MAX:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "label: should be a string or integer")
        label = str(label)
        if label in self._labels:
            raise RpcFailure(INVOICE_LABEL_ALREADY_EXISTS, "Duplicate label")
        raw_amount = _required(params, "amount_msat")
        amount_msat = None if raw_amount == "any" else _msat(raw_amount, "amount_msat")
        description = _required(params, "description")
        if not isinstance(description, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "description: should be a string")
        if params.get("preimage") is not None:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "preimage: not supported by the simulator")
        expiry_s = _int(params.get("expiry", INVOICE_EXPIRY_S_DEFAULT), "expiry")
        try:
            invoice = self._network.create_invoice(
                self._node.name, amount_msat, description, expiry_s
            )
        except ValueError as exc:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, str(exc)) from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        self._labels[label] = invoice.payment_hash
        return views.invoice_created(invoice)

    async def _decode(self, params: dict[str, Any]) -> dict[str, Any]:
        string = _required(params, "string")
        self._decoded(string, field="string")
        return views.decoded_bolt11(string.strip())

    def _decoded(self, text: Any, *, field: str) -> DecodedInvoice:
        if not isinstance(text, str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{field}: should be a string")
        try:
            decoded = self._network.decode(text)
        except InvoiceDecodeError as exc:
            raise RpcFailure(
                JSONRPC_INVALID_PARAMS, f"{field}: Invalid bolt11: {exc.message}"
            ) from None
        if decoded.network != self._network.network:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{field}: Invoice is for another network")
        return decoded

    # Payments.

    async def _pay(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._pay_invoice(params, "bolt11", command="pay")

    async def _xpay(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._pay_invoice(params, "invstring", command="xpay")

    async def _pay_invoice(
        self, params: dict[str, Any], field: str, *, command: str
    ) -> dict[str, Any]:
        bolt11 = _required(params, field)
        decoded = self._decoded(bolt11, field=field)
        given_msat = params.get("amount_msat")
        if decoded.amount_msat is not None:
            if given_msat is not None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat: parameter unnecessary")
            amount_msat = decoded.amount_msat
        else:
            if given_msat is None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat: parameter required")
            amount_msat = _msat(given_msat, "amount_msat")
        fee_limit_msat = self._fee_limit(params, amount_msat, command=command)
        started = await self._start(
            command,
            payment_request=bolt11,
            amount_msat=None if decoded.amount_msat is not None else amount_msat,
            max_fee_msat=fee_limit_msat,
            retry_for_s=params.get("retry_for"),
            expected_amount_msat=amount_msat,
        )
        final = await self._until_final(started)
        if final.status == "succeeded":
            if command == "xpay":
                return views.xpay_result(final)
            return views.pay_result(final, destination_pubkey=decoded.destination)
        raise self._pay_failure(final, command=command, invoice=decoded)

    async def _keysend(self, params: dict[str, Any]) -> dict[str, Any]:
        destination = _required(params, "destination")
        amount_msat = _msat(_required(params, "amount_msat"), "amount_msat")
        fee_limit_msat = self._fee_limit(params, amount_msat, command="keysend")
        started = await self._start(
            "keysend",
            destination=destination,
            amount_msat=amount_msat,
            max_fee_msat=fee_limit_msat,
            retry_for_s=params.get("retry_for"),
            expected_amount_msat=amount_msat,
        )
        final = await self._until_final(started)
        if final.status == "succeeded":
            return views.pay_result(final, destination_pubkey=str(destination))
        raise self._pay_failure(final, command="keysend", invoice=None)

    def _fee_limit(self, params: dict[str, Any], amount_msat: int, *, command: str) -> int:
        if params.get("maxfee") is not None:
            return _msat(params["maxfee"], "maxfee")
        if command == "xpay":  # xpay's default: 5 sat or 1 %, whichever is greater
            return max(5000, amount_msat // 100)
        percent = params.get("maxfeepercent", PAY_MAXFEEPERCENT_DEFAULT)
        if not isinstance(percent, int | float) or percent < 0:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "maxfeepercent: should be a positive number")
        exempt_msat = _msat(params.get("exemptfee", PAY_EXEMPTFEE_MSAT_DEFAULT), "exemptfee")
        return max(exempt_msat, math.floor(amount_msat * percent / 100))

    async def _start(
        self,
        command: str,
        *,
        max_fee_msat: int,
        retry_for_s: Any,
        expected_amount_msat: int,
        payment_request: str | None = None,
        destination: str | None = None,
        amount_msat: int | None = None,
    ) -> SimPayment:
        timeout_s = float(
            PAY_RETRY_FOR_S_DEFAULT if retry_for_s is None else _int(retry_for_s, "retry_for")
        )
        try:
            return await self._network.send_payment(
                self._node.name,
                payment_request=payment_request,
                destination=destination,
                amount_msat=amount_msat,
                max_fee_msat=max_fee_msat,
                timeout_s=max(timeout_s, 1.0),
            )
        except PaymentExists as exists:
            existing = exists.existing
            # The pay plugin reads listsendpays first: a same-amount earlier payment is replayed
            # (complete, or waited for); a different amount is error 201.
            if existing.amount_msat != expected_amount_msat:
                raise RpcFailure(
                    PAY_RHASH_ALREADY_USED,
                    "Already paid with this hash using different amount or destination",
                ) from None
            return existing
        except InvalidPaymentRequest as exc:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, str(exc)) from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        except KeyError as exc:  # unknown keysend destination
            raise RpcFailure(PAY_ROUTE_NOT_FOUND, f"Unknown destination: {exc}") from None

    async def _until_final(self, payment: SimPayment) -> SimPayment:
        if payment.is_final:
            return payment
        final = await self._network.wait_payment(
            self._node.name, payment.payment_hash, PAY_WAIT_S_MAX
        )
        if not final.is_final:
            raise RpcFailure(PAY_IN_PROGRESS, "Payment still in progress")
        return final

    def _pay_failure(
        self, payment: SimPayment, *, command: str, invoice: DecodedInvoice | None
    ) -> RpcFailure:
        reason = payment.failure_reason
        if reason is FailureReason.INVOICE_EXPIRED:
            data = None
            if invoice is not None:
                data = {
                    "now": int(self._network.now_s()),
                    "expiry": invoice.created_at_s + invoice.expiry_s,
                }
            return RpcFailure(PAY_INVOICE_EXPIRED, "Invoice expired", data)
        if reason is FailureReason.INSUFFICIENT_LIQUIDITY:
            return RpcFailure(PAY_INSUFFICIENT_FUNDS, "Insufficient funds in local channels")
        if reason in (FailureReason.INCORRECT_DETAILS, FailureReason.ALREADY_PAID):
            # On the wire the payee only says incorrect_or_unknown_payment_details (BOLT 4).
            return RpcFailure(
                PAY_DESTINATION_PERM_FAIL,
                "failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
                self._destination_failure(payment),
            )
        if reason is FailureReason.TIMEOUT and command != "xpay":
            return RpcFailure(
                PAY_STOPPED_RETRYING, "Ran out of time: payment timed out", {"attempts": []}
            )
        if reason is FailureReason.NO_ROUTE and payment.failure_detail == DETAIL_TOO_EXPENSIVE:
            if command != "xpay":
                return RpcFailure(PAY_ROUTE_TOO_EXPENSIVE, "Route too expensive", None)
            return RpcFailure(PAY_ROUTE_NOT_FOUND, "Could not find a route within maxfee")
        if reason in (FailureReason.NO_ROUTE, FailureReason.NODE_UNAVAILABLE):
            return RpcFailure(
                PAY_ROUTE_NOT_FOUND, f"Ran out of routes to try: {payment.failure_detail}"
            )
        return RpcFailure(PAY_UNSPECIFIED_ERROR, f"Payment failed: {payment.failure_detail}")

    def _destination_failure(self, payment: SimPayment) -> dict[str, Any]:
        last = payment.hops[-1] if payment.hops else None
        return views.routing_failure(
            erring_index=len(payment.hops),
            erring_node=last.pubkey if last else "",
            erring_channel=last.channel_id if last else "0x0x0",
            failcode=views.WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
            failcodename="WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
        )

    # Payment records: only attempts that sent an HTLC exist for CLN (pay refuses others
    # before any sendpay).

    def _sent_attempts(self) -> list[SimPayment]:
        return [p for p in self._network.payments_of(self._node.name) if p.hops]

    def _indexed(self, params: dict[str, Any]) -> list[tuple[int, int, SimPayment]]:
        """(created_index, groupid, payment) of sent attempts, filtered like listsendpays."""
        groups: dict[str, int] = {}
        indexed = []
        for index, payment in enumerate(self._sent_attempts(), start=1):
            groups[payment.payment_hash] = groups.get(payment.payment_hash, 0) + 1
            indexed.append((index, groups[payment.payment_hash], payment))
        if params.get("payment_hash") is not None:
            indexed = [i for i in indexed if i[2].payment_hash == params["payment_hash"]]
        if params.get("bolt11") is not None:
            indexed = [i for i in indexed if i[2].payment_request == params["bolt11"]]
        if params.get("status") is not None:
            wanted = {"pending": "in_flight", "complete": "succeeded", "failed": "failed"}.get(
                params["status"]
            )
            if wanted is None:
                raise RpcFailure(
                    JSONRPC_INVALID_PARAMS, "status: should be pending, complete or failed"
                )
            indexed = [i for i in indexed if i[2].status == wanted]
        return indexed

    def _destination_pubkey(self, payment: SimPayment) -> str:
        node = self._network.nodes.get(payment.destination)
        return node.pubkey if node is not None else payment.destination

    async def _listsendpays(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "payments": [
                views.sendpay(
                    p, created_index=i, groupid=g, destination_pubkey=self._destination_pubkey(p)
                )
                for i, g, p in self._indexed(params)
            ]
        }

    async def _listpays(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "pays": [
                views.listpays_entry(
                    p, created_index=i, destination_pubkey=self._destination_pubkey(p)
                )
                for i, _, p in self._indexed(params)
            ]
        }

    async def _waitsendpay(self, params: dict[str, Any]) -> dict[str, Any]:
        payment_hash = _required(params, "payment_hash")
        timeout_s = params.get("timeout")
        indexed = self._indexed({"payment_hash": payment_hash})
        if params.get("groupid") is not None:
            indexed = [i for i in indexed if i[1] == params["groupid"]]
        if not indexed:
            raise RpcFailure(PAY_NO_SUCH_PAYMENT, f"Never attempted payment to {payment_hash}")
        index, groupid, payment = indexed[-1]
        if not payment.is_final:
            wait_s = PAY_WAIT_S_MAX if timeout_s is None else float(_int(timeout_s, "timeout"))
            payment = await self._network.wait_payment(self._node.name, payment_hash, wait_s)
        if payment.status == "in_flight":
            raise RpcFailure(PAY_IN_PROGRESS, "Timed out while waiting")
        if payment.status == "failed":
            if payment.failure_reason in (
                FailureReason.INCORRECT_DETAILS,
                FailureReason.ALREADY_PAID,
                FailureReason.INVOICE_EXPIRED,
            ):
                raise RpcFailure(
                    PAY_DESTINATION_PERM_FAIL,
                    "failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
                    self._destination_failure(payment),
                )
            first = payment.hops[0]
            raise RpcFailure(
                PAY_TRY_OTHER_ROUTE,
                "failed: WIRE_TEMPORARY_CHANNEL_FAILURE",
                views.routing_failure(
                    erring_index=1,
                    erring_node=first.pubkey,
                    erring_channel=first.channel_id,
                    failcode=views.WIRE_TEMPORARY_CHANNEL_FAILURE,
                    failcodename="WIRE_TEMPORARY_CHANNEL_FAILURE",
                ),
            )
        return views.sendpay(
            payment,
            created_index=index,
            groupid=groupid,
            destination_pubkey=self._destination_pubkey(payment),
        )


async def start_cln_node_server(
    network: SimNetwork, node: str, *, socket_path: Path
) -> ClnNodeServer:
    """Serve ``node`` (a CLN node of ``network``) on ``socket_path`` until ``stop()``."""
    server = ClnNodeServer(network, node, socket_path)
    await server.start()
    return server


def _named(method: str, params: Params) -> dict[str, Any]:
    if isinstance(params, dict):
        return params
    names = _PARAMS.get(method, ())
    if len(params) > len(names):
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"too many parameters for {method}")
    return {name: value for name, value in zip(names, params, strict=False) if value is not None}


def _required(params: dict[str, Any], name: str) -> Any:
    if params.get(name) is None:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"missing required parameter: {name}")
    return params[name]


def _msat(value: Any, name: str) -> int:
    """CLN's msat parameter: an integer, or a string with an ``msat`` suffix."""
    if isinstance(value, str) and value.endswith("msat") and value[:-4].isdigit():
        value = int(value[:-4])
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: should be a millisatoshi amount")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: should be a non-negative integer")
    return value
