"""A simulated Core Lightning node: CLN's JSON-RPC on a unix socket, backed by ``SimNetwork``.

pyln-client's ``LightningRpc`` talks to it unchanged. Methods, parameters, results and error
codes follow CLN's schemas (doc/schemas/*.json) and common/jsonrpc_errors.h; see
shared/conformance/cln/pay-error-codes.md. Unknown parameters are refused, as lightningd does.
Offline nodes stop listening (connections are refused); slowed nodes answer late.

Served: ``help``, ``getinfo``, ``listpeerchannels``, ``listfunds``, ``decode``,
``datastore``/``listdatastore`` (``cln_datastore.py``); invoices
(``cln_invoices.py``): ``invoice``, ``listinvoices``, ``waitanyinvoice``, ``waitinvoice``;
every other command is ``Unknown command``.

Custom messages (``cln_custom.py``): ``sendcustommsg``, and the ``custommsg`` hook of the
plugins the node runs (``cln_plugins.py``), whose RPC methods it forwards (ADR 0250).

Payments: ``xpay`` (the default of our adapter) and the deprecated ``pay`` and ``keysend``.
Each attempt is one sendpay part; xpay's parts count from 1 in a random group
(plugins/xpay/xpay.c), pay's and keysend's are part 0 of the next group, so ``listsendpays``,
``listpays`` and ``waitsendpay`` show them as CLN does.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from services.bolt11.codec import InvoiceDecodeError
from services.lightning.port import DecodedInvoice, FailureReason
from services.sim import cln_chain, cln_datastore
from services.sim import cln_views as views
from services.sim.cln_chain import ClnChainMethods
from services.sim.cln_custom import ClnCustomMessages
from services.sim.cln_datastore import ClnDatastore
from services.sim.cln_htlc import ClnHtlcHook
from services.sim.cln_invoices import ClnInvoices
from services.sim.cln_params import msat as _msat
from services.sim.cln_params import non_negative_int as _int
from services.sim.cln_params import required as _required
from services.sim.cln_plugins import HookCheck, PluginHost
from services.sim.errors import InvalidPaymentRequest, NodeOffline, PaymentExists
from services.sim.jsonrpc import (
    CATCHALL,
    JSONRPC_INVALID_PARAMS,
    JSONRPC_METHOD_NOT_FOUND,
    JsonRpcUnixServer,
    Params,
    RpcFailure,
)
from services.sim.keys import derive_bytes
from services.sim.network import SimNetwork
from services.sim.payments import DETAIL_TOO_EXPENSIVE
from services.sim.records import SimPayment

# common/jsonrpc_errors.h
PLUGIN_ERROR = -3
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
PAY_INJECTPAYMENTONION_ALREADY_PAID = 219

# CLN defaults: pay's maxfeepercent 0.5 % with 5 sat exempt.
PAY_MAXFEEPERCENT_DEFAULT = 0.5
PAY_EXEMPTFEE_MSAT_DEFAULT = 5000
PAY_RETRY_FOR_S_DEFAULT = 60
# `pay` waits for its in-flight HTLC however long it takes; a bound keeps a parked HTLC from
# pinning a connection forever in long-running sims.
PAY_WAIT_S_MAX = 3600.0
LABEL_CHARS_MAX = 1024
# xpay's defaults (doc/schemas/xpay.json): maxfee 5 sat or 1 %, whichever is greater.
XPAY_MAXFEE_MSAT_MIN = 5000
XPAY_MAXFEE_PERCENT = 1
# askrene's words when getroutes finds nothing (plugins/askrene/child/explain_failure.c).
NO_USABLE_PATHS = "We could not find a usable set of paths."
# The last requests are kept for tests to check against the request schemas; older ones drop.
REQUEST_LOG_MAX: Final = 1024
# Scripted answers wait per method; more than this is a test that forgot to consume them.
SCRIPTED_FAILURES_MAX: Final = 16
PAYMENT_COMMANDS: Final = ("pay", "xpay", "keysend")

# What each method takes, in positional order: the request properties of
# doc/schemas/<method>.json (hidden, developer-only ones left out). Other names are refused.
PARAMETERS: Final[dict[str, tuple[str, ...]]] = {
    "getinfo": (),
    "invoice": (
        "amount_msat",
        "label",
        "description",
        "expiry",
        "fallbacks",
        "preimage",
        "exposeprivatechannels",
        "cltv",
        "deschashonly",
    ),
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
        "partial_msat",
    ),
    # Positional order as in plugins/xpay/xpay.c; label and localinvreqid since v26.06.
    "xpay": (
        "invstring",
        "amount_msat",
        "maxfee",
        "layers",
        "retry_for",
        "partial_msat",
        "maxdelay",
        "payer_note",
        "label",
        "localinvreqid",
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
    "listpays": ("bolt11", "payment_hash", "status", "index", "start", "limit"),
    "listsendpays": ("bolt11", "payment_hash", "status", "index", "start", "limit"),
    "waitsendpay": ("payment_hash", "timeout", "partid", "groupid"),
    "listpeerchannels": ("id", "short_channel_id", "channel_id"),
    "listfunds": ("spent",),
    **cln_chain.PARAMETERS,
    **cln_datastore.PARAMETERS,
    "listinvoices": ("label", "invstring", "payment_hash", "offer_id", "index", "start", "limit"),
    "waitanyinvoice": ("lastpay_index", "timeout"),
    "waitinvoice": ("label",),
    "sendcustommsg": ("node_id", "msg"),
    # doc/schemas/help.json upstream (not among the conformance copies).
    "help": ("command",),
}
# How many of a method's leading parameters are required (the schema's ``required``, which
# CLN lists first); ``help`` shows the rest in brackets. Unlisted methods: none required.
REQUIRED_PARAMETERS: Final[dict[str, int]] = {
    "invoice": 3,
    "decode": 1,
    "pay": 1,
    "xpay": 1,
    "keysend": 2,
    "waitsendpay": 1,
    "waitinvoice": 1,
    "fundchannel": 2,
    "close": 1,
    "datastore": 1,
    "sendcustommsg": 2,
}


# Parameters the schema allows but the simulator does not model: refused, never ignored.
_UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "invoice": ("fallbacks", "exposeprivatechannels", "cltv", "deschashonly"),
    "pay": ("localinvreqid", "exclude", "partial_msat"),
    "xpay": ("partial_msat", "localinvreqid"),
    "listpays": ("index", "start", "limit"),
    **cln_chain.UNSUPPORTED,
}


@dataclass(frozen=True, slots=True)
class _Send:
    """How this node sent an attempt: which command, and its sendpay group and part."""

    command: str
    groupid: int
    partid: int
    label: str | None


@dataclass(frozen=True, slots=True)
class _Part:
    """One ``listsendpays`` entry: a sent attempt with its index, group and part."""

    created_index: int
    groupid: int
    partid: int
    label: str | None
    payment: SimPayment


@dataclass(frozen=True, slots=True)
class _Scripted:
    failure: RpcFailure
    after_send: bool


class ClnNodeServer:
    def __init__(
        self,
        network: SimNetwork,
        node: str,
        socket_path: Path,
        *,
        plugins: Sequence[Sequence[str]] = (),
        hook_check: HookCheck | None = None,
    ) -> None:
        self._network = network
        self._node = network.node(node)
        assert self._node.implementation == "cln", f"{node} is not a CLN node"
        self._rpc = JsonRpcUnixServer(socket_path, self._handle, name=f"cln:{node}")
        self._invoices = ClnInvoices(network, node)
        self._sends: dict[int, _Send] = {}  # attempt id -> how this node sent it
        self._scripted: dict[str, deque[_Scripted]] = {}
        self._state_tasks: set[asyncio.Task[None]] = set()
        # (method, named params) of the latest requests, for request-schema checks in tests.
        self.requests: deque[tuple[str, dict[str, Any]]] = deque(maxlen=REQUEST_LOG_MAX)
        self._methods: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]] = {
            "getinfo": self._getinfo,
            **self._invoices.methods(),
            "decode": self._decode,
            "pay": self._pay,
            "xpay": self._xpay,
            "keysend": self._keysend,
            "listpays": self._listpays,
            "listsendpays": self._listsendpays,
            "waitsendpay": self._waitsendpay,
            "help": self._help,
        }
        # On-chain and channel-lifecycle commands, listpeerchannels and listfunds among them.
        self._chain = ClnChainMethods(network, self._node.name, self._node.pubkey)
        self._methods.update(self._chain.methods())
        # The node's key-value store: where our adapter records a channel open (ADR 0235).
        self._methods.update(ClnDatastore().methods())
        self._plugin_commands = [list(command) for command in plugins]
        self.plugins = PluginHost(
            lightning_dir=str(socket_path.parent),
            rpc_file=str(socket_path),
            network=network.network,
            check=hook_check,
        )
        self._custom = ClnCustomMessages(network, self._node.name, self.plugins)
        self._methods.update(self._custom.methods())
        self._htlcs = ClnHtlcHook(network, self._node.name, self.plugins)  # ADR 0260

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

    def fail_next(self, method: str, code: int, message: str, *, after_send: bool = False) -> None:
        """Answer the next ``method`` call with this error instead of the simulated outcome.

        With ``after_send`` (payment commands only) the payment starts first and its HTLC stays
        out: what xpay does when it gives up while parts are still in flight. Without, nothing
        is sent, as for errors raised before the first attempt.
        """
        assert method in self._methods, method
        assert not after_send or method in PAYMENT_COMMANDS, method
        queue = self._scripted.setdefault(method, deque())
        assert len(queue) < SCRIPTED_FAILURES_MAX, f"{len(queue)} scripted {method} answers"
        queue.append(_Scripted(RpcFailure(code, message), after_send))

    def _take_scripted(self, method: str, *, after_send: bool) -> RpcFailure | None:
        queue = self._scripted.get(method)
        if not queue or queue[0].after_send != after_send:
            return None
        return queue.popleft().failure

    def _raise_scripted_after_send(self, command: str) -> None:
        """A scripted give-up once the payment started: its HTLC stays out."""
        scripted = self._take_scripted(command, after_send=True)
        if scripted is not None:
            raise scripted

    async def start(self) -> None:
        for command in self._plugin_commands:
            await self.plugins.start(command)
        self._custom.start()
        self._htlcs.start()
        self._network.add_node_listener(self._on_node_state)
        if self._network.is_online(self._node.name):
            await self._rpc.start()

    async def stop(self) -> None:
        self._network.remove_node_listener(self._on_node_state)
        for task in list(self._state_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._rpc.stop()
        await self._custom.stop()
        await self._htlcs.stop()
        await self.plugins.stop()

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
        if handler is None and self.plugins.has_method(method):
            return await self.plugins.call_method(method, params)
        if handler is None:
            raise RpcFailure(JSONRPC_METHOD_NOT_FOUND, f"Unknown command '{method}'")
        named = _named(method, params)
        self.requests.append((method, named))
        for name in _UNSUPPORTED.get(method, ()):
            if named.get(name) is not None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, f"{name}: not supported by the simulator")
        scripted = self._take_scripted(method, after_send=False)
        if scripted is not None:
            raise scripted
        return await handler(named)

    async def _help(self, params: dict[str, Any]) -> dict[str, Any]:
        """lightningd's help (doc/schemas/help.json): each command with its parameters,
        optional ones in brackets; a command it does not have is -32601."""
        wanted = params.get("command")
        if wanted is not None and wanted not in self._methods:
            raise RpcFailure(JSONRPC_METHOD_NOT_FOUND, f"Unknown command {wanted}")
        names = sorted(self._methods) if wanted is None else [wanted]
        return {"help": [{"command": _usage(name)} for name in names], "format-hint": "simple"}

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
            pending_channels=self._chain.pending_count(),
        )

    def _connected(self, peer: str) -> bool:
        return self._network.is_online(peer)

    # Invoices.

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
        bolt11 = _required(params, "bolt11")
        decoded = self._decoded(bolt11, field="bolt11")
        given_msat = params.get("amount_msat")
        if decoded.amount_msat is not None:
            if given_msat is not None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat: parameter unnecessary")
            amount_msat = decoded.amount_msat
        else:
            if given_msat is None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat: parameter required")
            amount_msat = _msat(given_msat, "amount_msat")
        started = await self._start(
            "pay",
            payment_request=bolt11,
            amount_msat=None if decoded.amount_msat is not None else amount_msat,
            max_fee_msat=self._fee_limit(params, amount_msat, command="pay"),
            retry_for_s=params.get("retry_for"),
            expected_amount_msat=amount_msat,
            label=_label(params),
        )
        self._raise_scripted_after_send("pay")
        final = await self._until_final(started)
        if final.status == "succeeded":
            return views.pay_result(final, destination_pubkey=decoded.destination)
        raise self._pay_failure(final, invoice=decoded)

    async def _xpay(self, params: dict[str, Any]) -> dict[str, Any]:
        """xpay (plugins/xpay/xpay.c): answers when one part succeeds, or when it gives up."""
        invstring = _required(params, "invstring")
        decoded = self._decoded(invstring, field="invstring")
        given_msat = params.get("amount_msat")
        if decoded.amount_msat is not None:
            if given_msat is not None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat unnecessary")
            amount_msat = decoded.amount_msat
        else:
            if given_msat is None:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, "amount_msat required")
            amount_msat = _msat(given_msat, "amount_msat")
        _int(params.get("maxdelay", 0), "maxdelay")
        if params.get("payer_note") is not None and not isinstance(params["payer_note"], str):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "payer_note: should be a string")
        layers = params.get("layers", [])
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "layers: should be an array")
        if layers:  # askrene knows only its own layers here; getroutes refuses the rest
            raise RpcFailure(JSONRPC_INVALID_PARAMS, f"Failed: Unknown layer {layers[0]}")
        started = await self._start(
            "xpay",
            payment_request=invstring,
            amount_msat=None if decoded.amount_msat is not None else amount_msat,
            max_fee_msat=self._fee_limit(params, amount_msat, command="xpay"),
            retry_for_s=params.get("retry_for"),
            expected_amount_msat=amount_msat,
            label=_label(params),
        )
        self._raise_scripted_after_send("xpay")
        final = await self._until_final(started)
        if final.status == "succeeded":
            return views.xpay_result(final)
        raise self._xpay_failure(final, invoice=decoded)

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
            label=_label(params),
        )
        self._raise_scripted_after_send("keysend")
        final = await self._until_final(started)
        if final.status == "succeeded":
            return views.pay_result(final, destination_pubkey=str(destination))
        raise self._pay_failure(final, invoice=None)

    def _fee_limit(self, params: dict[str, Any], amount_msat: int, *, command: str) -> int:
        if params.get("maxfee") is not None:
            return _msat(params["maxfee"], "maxfee")
        if command == "xpay":
            return max(XPAY_MAXFEE_MSAT_MIN, amount_msat * XPAY_MAXFEE_PERCENT // 100)
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
        label: str | None,
        payment_request: str | None = None,
        destination: str | None = None,
        amount_msat: int | None = None,
    ) -> SimPayment:
        timeout_s = float(
            PAY_RETRY_FOR_S_DEFAULT if retry_for_s is None else _int(retry_for_s, "retry_for")
        )
        try:
            started = await self._network.send_payment(
                self._node.name,
                payment_request=payment_request,
                destination=destination,
                amount_msat=amount_msat,
                max_fee_msat=max_fee_msat,
                timeout_s=max(timeout_s, 1.0),
            )
        except PaymentExists as exists:
            return self._existing(command, exists.existing, expected_amount_msat)
        except InvalidPaymentRequest as exc:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, str(exc)) from None
        except NodeOffline:
            raise RpcFailure(CATCHALL, "node is shutting down") from None
        except KeyError as exc:  # unknown keysend destination
            raise RpcFailure(PAY_ROUTE_NOT_FOUND, f"Unknown destination: {exc}") from None
        self._sends[started.attempt_id] = self._send_of(command, started, label)
        return started

    def _existing(
        self, command: str, existing: SimPayment, expected_amount_msat: int
    ) -> SimPayment:
        """This node already paid the hash, or is paying it: what each command makes of that."""
        if command == "xpay":
            # injectpaymentonion refuses the hash: "already paid" is passed on; any other
            # refusal (here lightningd's PAY_IN_PROGRESS) becomes PLUGIN_ERROR
            # (update_knowledge_from_error in plugins/xpay/xpay.c).
            if existing.status == "succeeded":
                raise RpcFailure(
                    PAY_INJECTPAYMENTONION_ALREADY_PAID, "Already paid this invoice successfully"
                )
            raise RpcFailure(
                PLUGIN_ERROR,
                f"Unexpected injectpaymentonion error {PAY_IN_PROGRESS}: "
                "Already have payment in progress",
            )
        # The pay plugin reads listsendpays first: a same-amount earlier payment is replayed
        # (complete, or waited for); a different amount is error 201.
        if existing.amount_msat != expected_amount_msat:
            raise RpcFailure(
                PAY_RHASH_ALREADY_USED,
                "Already paid with this hash using different amount or destination",
            )
        return existing

    def _send_of(self, command: str, payment: SimPayment, label: str | None) -> _Send:
        if command == "xpay":
            # xpay draws a random 63-bit group and numbers its parts from 1 (xpay.c
            # new_payment, new_attempt); derived from the seed so that runs repeat.
            raw = derive_bytes(
                self._network.seed, "xpay-groupid", self._node.name, payment.attempt_id
            )
            return _Send(command, int.from_bytes(raw[:8], "big") >> 1, 1, label)
        # pay and keysend send part 0 of the group after the hash's last one.
        groups = [
            part.groupid
            for part in self._parts({"payment_hash": payment.payment_hash})
            if part.payment.attempt_id != payment.attempt_id
        ]
        return _Send(command, max(groups, default=0) + 1, 0, label)

    async def _until_final(self, payment: SimPayment) -> SimPayment:
        if payment.is_final:
            return payment
        final = await self._network.wait_payment(
            self._node.name, payment.payment_hash, PAY_WAIT_S_MAX
        )
        if not final.is_final:
            raise RpcFailure(PAY_IN_PROGRESS, "Payment still in progress")
        return final

    def _pay_failure(self, payment: SimPayment, *, invoice: DecodedInvoice | None) -> RpcFailure:
        """pay's and keysend's error for a failed attempt (doc/schemas/pay.json)."""
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
        if reason is FailureReason.TIMEOUT:
            return RpcFailure(
                PAY_STOPPED_RETRYING, "Ran out of time: payment timed out", {"attempts": []}
            )
        if reason is FailureReason.NO_ROUTE and payment.failure_detail == DETAIL_TOO_EXPENSIVE:
            return RpcFailure(PAY_ROUTE_TOO_EXPENSIVE, "Route too expensive", None)
        if reason in (FailureReason.NO_ROUTE, FailureReason.NODE_UNAVAILABLE):
            return RpcFailure(
                PAY_ROUTE_NOT_FOUND, f"Ran out of routes to try: {payment.failure_detail}"
            )
        return RpcFailure(PAY_UNSPECIFIED_ERROR, f"Payment failed: {payment.failure_detail}")

    def _xpay_failure(self, payment: SimPayment, *, invoice: DecodedInvoice) -> RpcFailure:
        """xpay's error for a failed attempt: the codes of doc/schemas/xpay.json, raised where
        plugins/xpay/xpay.c raises them."""
        reason, detail = payment.failure_reason, payment.failure_detail
        if not payment.hops:
            # Given up before the first attempt: the invoice had expired (xpay_core), or
            # askrene's getroutes found nothing and its code is passed on (getroutes_done_err).
            if reason is FailureReason.INVOICE_EXPIRED:
                expired_s = int(self._network.now_s()) - (invoice.created_at_s + invoice.expiry_s)
                return RpcFailure(
                    PAY_INVOICE_EXPIRED, f"Invoice expired {max(expired_s, 0)} seconds ago"
                )
            if reason is FailureReason.INSUFFICIENT_LIQUIDITY:
                return RpcFailure(PAY_INSUFFICIENT_FUNDS, f"Failed: {NO_USABLE_PATHS} {detail}")
            if reason in (FailureReason.NO_ROUTE, FailureReason.NODE_UNAVAILABLE):
                return RpcFailure(PAY_ROUTE_NOT_FOUND, f"Failed: {NO_USABLE_PATHS} {detail}")
            return RpcFailure(PAY_UNSPECIFIED_ERROR, f"Failed: {detail}")
        if reason in (
            FailureReason.INCORRECT_DETAILS,
            FailureReason.ALREADY_PAID,
            FailureReason.INVOICE_EXPIRED,
        ):
            return RpcFailure(
                PAY_DESTINATION_PERM_FAIL,
                "Destination said it doesn't know invoice: incorrect_or_unknown_payment_details",
            )
        if reason is FailureReason.TIMEOUT:
            return RpcFailure(PAY_UNSPECIFIED_ERROR, f"Timed out after 1 attempts. {detail}.")
        return RpcFailure(
            PAY_UNSPECIFIED_ERROR,
            f"Failed after 1 attempts. {detail}. Then routing failed: {NO_USABLE_PATHS}",
        )

    def _destination_failure(self, payment: SimPayment) -> dict[str, Any]:
        last = payment.hops[-1] if payment.hops else None
        return views.routing_failure(
            erring_index=len(payment.hops),
            erring_node=last.pubkey if last else "",
            erring_channel=last.channel_id if last else "0x0x0",
            failcode=views.WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
            failcodename="WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
        )

    # Payment records: only attempts that sent an HTLC exist for CLN (pay and xpay refuse
    # the others before any part is sent).

    def _sent_attempts(self) -> list[SimPayment]:
        return [p for p in self._network.payments_of(self._node.name) if p.hops]

    def _parts(self, params: dict[str, Any]) -> list[_Part]:
        """Sent attempts as sendpay parts, oldest first, filtered like listsendpays."""
        groups: dict[str, int] = {}
        parts = []
        for index, payment in enumerate(self._sent_attempts(), start=1):
            send = self._sends.get(payment.attempt_id)
            if send is None:  # sent through the simulator's own API: like pay
                send = _Send("pay", groups.get(payment.payment_hash, 0) + 1, 0, None)
            groups[payment.payment_hash] = max(groups.get(payment.payment_hash, 0), send.groupid)
            parts.append(_Part(index, send.groupid, send.partid, send.label, payment))
        if params.get("payment_hash") is not None:
            parts = [p for p in parts if p.payment.payment_hash == params["payment_hash"]]
        if params.get("bolt11") is not None:
            parts = [p for p in parts if p.payment.payment_request == params["bolt11"]]
        if params.get("status") is not None:
            wanted = {"pending": "in_flight", "complete": "succeeded", "failed": "failed"}.get(
                params["status"]
            )
            if wanted is None:
                raise RpcFailure(
                    JSONRPC_INVALID_PARAMS, "status: should be pending, complete or failed"
                )
            parts = [p for p in parts if p.payment.status == wanted]
        return parts

    def _destination_pubkey(self, payment: SimPayment) -> str:
        node = self._network.nodes.get(payment.destination)
        return node.pubkey if node is not None else payment.destination

    def _sendpay_view(self, part: _Part) -> dict[str, Any]:
        return views.sendpay(
            part.payment,
            created_index=part.created_index,
            groupid=part.groupid,
            partid=part.partid,
            label=part.label,
            destination_pubkey=self._destination_pubkey(part.payment),
        )

    async def _listsendpays(self, params: dict[str, Any]) -> dict[str, Any]:
        parts = _created_page(self._parts(params), params)
        return {"payments": [self._sendpay_view(part) for part in parts]}

    async def _listpays(self, params: dict[str, Any]) -> dict[str, Any]:
        """One entry per (hash, group), its parts merged (plugins/xpay/listpays.c)."""
        groups: dict[tuple[str, int], list[_Part]] = {}
        for part in self._parts(params):
            groups.setdefault((part.payment.payment_hash, part.groupid), []).append(part)
        return {
            "pays": [
                views.listpays_entry(
                    [(p.created_index, p.payment) for p in parts],
                    label=parts[0].label,
                    destination_pubkey=self._destination_pubkey(parts[0].payment),
                )
                for parts in groups.values()
            ]
        }

    async def _waitsendpay(self, params: dict[str, Any]) -> dict[str, Any]:
        """Waits for one part: ``partid`` (default 0) of ``groupid`` (default: the hash's
        highest), as lightningd/pay.c does; xpay's parts therefore need both."""
        payment_hash = _required(params, "payment_hash")
        timeout_s = params.get("timeout")
        partid = _int(params.get("partid", 0), "partid")
        parts = self._parts({"payment_hash": payment_hash})
        groupid = params.get("groupid")
        if groupid is None:
            groupid = max((part.groupid for part in parts), default=0)
        matching = [p for p in parts if p.groupid == groupid and p.partid == partid]
        if not matching:
            raise RpcFailure(
                PAY_NO_SUCH_PAYMENT, f"Never attempted payment part {partid} for '{payment_hash}'"
            )
        part = matching[-1]
        payment = part.payment
        if not payment.is_final:
            wait_s = PAY_WAIT_S_MAX if timeout_s is None else float(_int(timeout_s, "timeout"))
            await self._network.wait_payment(self._node.name, payment_hash, wait_s)
            payment = next(
                p
                for p in self._network.payments_of(self._node.name, payment_hash)
                if p.attempt_id == payment.attempt_id
            )
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
        return self._sendpay_view(
            _Part(part.created_index, part.groupid, part.partid, part.label, payment)
        )


async def start_cln_node_server(
    network: SimNetwork,
    node: str,
    *,
    socket_path: Path,
    plugins: Sequence[Sequence[str]] = (),
    hook_check: HookCheck | None = None,
) -> ClnNodeServer:
    """Serve ``node`` (a CLN node of ``network``) on ``socket_path`` until ``stop()``, with
    ``plugins`` (commands) running as lightningd runs them."""
    server = ClnNodeServer(network, node, socket_path, plugins=plugins, hook_check=hook_check)
    await server.start()
    return server


def _created_page(parts: list[_Part], params: dict[str, Any]) -> list[_Part]:
    """``index=created`` with ``start``/``limit``, as lightningd/pay.c json_listsendpays
    checks them: start and limit need index, and index excludes payment_hash and bolt11."""
    index = params.get("index")
    start = _int(params.get("start", 0), "start")
    limit = params.get("limit")
    if index is None:
        if start or limit is not None:
            raise RpcFailure(JSONRPC_INVALID_PARAMS, "Can only specify {start} with {index}")
        return parts
    if index == "updated":
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "index: updated is not supported by the simulator")
    if index != "created":
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "index: should be created or updated")
    if params.get("payment_hash") is not None or params.get("bolt11") is not None:
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "Cannot use index with payment_hash or bolt11")
    page = [part for part in parts if part.created_index >= start]
    return page if limit is None else page[: _int(limit, "limit")]


def _named(method: str, params: Params) -> dict[str, Any]:
    """Positional or named parameters as a dict; names the method does not take are refused,
    as lightningd's param() does."""
    names = PARAMETERS.get(method, ())
    if isinstance(params, dict):
        for name in params:
            if name not in names:
                raise RpcFailure(JSONRPC_INVALID_PARAMS, f"unknown parameter: {name}")
        return params
    if len(params) > len(names):
        raise RpcFailure(JSONRPC_INVALID_PARAMS, f"too many parameters for {method}")
    return {name: value for name, value in zip(names, params, strict=False) if value is not None}


def _usage(method: str) -> str:
    names = PARAMETERS.get(method, ())
    required = REQUIRED_PARAMETERS.get(method, 0)
    return " ".join([method, *names[:required], *(f"[{name}]" for name in names[required:])])


def _label(params: dict[str, Any]) -> str | None:
    label = params.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > LABEL_CHARS_MAX):
        raise RpcFailure(JSONRPC_INVALID_PARAMS, "label: should be a string")
    return label
