"""NodePort adapter for Core Lightning over its JSON-RPC unix socket (``pyln-client``).

pyln's ``LightningRpc`` is synchronous and opens one connection per call, so every call runs
on a small thread pool owned by the adapter and is bounded by an asyncio timeout. A call that
times out leaves its thread waiting on the socket until the node answers; the pool size bounds
how many can pile up.

Payments use ``xpay`` (schema: doc/schemas/xpay.json, v24.11+); ``pay`` (deprecated in v26.06,
removed in v27.03) stays an opt-in, ``cln:///path?pay=pay``. See ADR 0104. A payment hash is
never sent twice: the node's record (``listpays``) is read first and answers duplicates. Errors
map through the per-command tables in ``cln_errors``; an xpay failure that is not final by
itself is confirmed against ``listpays``. The unix socket needs no rune; if a rune is ever used
(commando/REST) it must never reach a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import math
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec
import structlog
from pyln.client import LightningRpc, RpcError

from services.lightning import channel_errors, cln_interception, cln_open_record, onchain
from services.lightning.cln_errors import Action, cln_error_rule
from services.lightning.cln_receive import cln_invoice_status
from services.lightning.interceptor_port import HeldHtlc, HtlcResolution
from services.lightning.payments import for_amount, invoice_target, liquidity_of
from services.lightning.port import (
    PAYMENT_PAGE_MAX,
    Channel,
    ChannelOpening,
    CustomMessage,
    DecodedInvoice,
    DuplicateInvoice,
    FailureReason,
    Invoice,
    InvoiceStatus,
    LiquiditySummary,
    NodeError,
    NodeInfo,
    NodePaymentPage,
    NodePaymentRecord,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
    PendingChannel,
    WalletBalance,
)

log = structlog.get_logger(__name__)

_Listed = TypeVar("_Listed", Channel, PendingChannel)

PayCommand = Literal["xpay", "pay"]
PAY_COMMANDS: Final[tuple[PayCommand, ...]] = ("xpay", "pay")
# xpay is the successor of the deprecated pay (ADR 0104); pay is the opt-in.
PAY_COMMAND_DEFAULT: Final[PayCommand] = "xpay"

# Threads per adapter: enough for concurrent pays plus lookups, small enough that calls stuck
# on a hung node cannot exhaust the process.
RPC_THREADS_MAX: Final = 8
# CLN error messages are copied into ours; bound them so a chatty node cannot flood logs.
ERROR_DETAIL_CHARS_MAX: Final = 200
# payment_updates waits on the node in slices this long, re-reading the record in between.
UPDATE_WAIT_SLICE_S: Final = 5
# ...or, while listpays says pending but no part is out (xpay between two attempts), re-reads
# the record this often: xpay routes again within milliseconds, so polling stays cheap.
UPDATE_POLL_S: Final = 0.25
# lightningd/invoice.c: 900 "Duplicate label", 901 "preimage already used"
# (doc/schemas/invoice.json).
DUPLICATE_INVOICE_CODES: Final = frozenset({900, 901})
# waitanyinvoice's ``timeout`` per call while following settlements: a closed adapter's
# follower (a thread blocked in the call) ends within this; 904 "Timed out" just loops.
INVOICE_WAIT_SLICE_S: Final = 5
INVOICE_WAIT_TIMED_OUT: Final = 904
# How long one long poll of Corridor's CLN plugin (``corridor-waitcustommsgs``, ADR 0250)
# waits: short enough that a dead node shows within a slice plus the call timeout.
CUSTOMMSG_WAIT_SLICE_S: Final = 5
JSONRPC_INVALID_REQUEST: Final = -32600
CLN_NETWORK_TO_OURS: Final = {
    "bitcoin": "mainnet",
    "testnet": "testnet",
    "signet": "signet",
    "regtest": "regtest",
}
# listpeerchannels states (doc/schemas/listpeerchannels.json): a channel we can route over (or
# that is only splicing), and the ones on their way in or out. ONCHAIN is neither: a mutual
# close in ONCHAIN has confirmed, and the funds are back in the wallet.
OPEN_STATES: Final = frozenset({"CHANNELD_NORMAL", "CHANNELD_AWAITING_SPLICE"})
OPENING_STATES: Final = frozenset(
    {"OPENINGD", "CHANNELD_AWAITING_LOCKIN", "DUALOPEND_OPEN_INIT", "DUALOPEND_OPEN_COMMITTED",
     "DUALOPEND_OPEN_COMMIT_READY", "DUALOPEND_AWAITING_LOCKIN"}
)  # fmt: skip
CLOSING_STATES: Final = frozenset(
    {"CHANNELD_SHUTTING_DOWN", "CLOSINGD_SIGEXCHANGE", "CLOSINGD_COMPLETE",
     "AWAITING_UNILATERAL", "FUNDING_SPEND_SEEN"}
)  # fmt: skip
PENDING_STATES: Final = OPENING_STATES | CLOSING_STATES
CURRENCY_TO_NETWORK: Final = {"bc": "mainnet", "tb": "testnet", "tbs": "signet", "bcrt": "regtest"}


class _Unreachable(Exception):
    """Connecting failed: the request was never sent."""


class _ConnectionLost(Exception):
    """The connection broke after the request was (maybe) sent."""


class _CallFailed(Exception):
    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message[:ERROR_DETAIL_CHARS_MAX]


class _Duplicate(_CallFailed):
    """The node refused to create something it already holds."""


class ClnAdapter:
    """One Core Lightning node behind the NodePort interface."""

    def __init__(
        self,
        rpc_path: str | Path,
        *,
        timeout_s: float = 30.0,
        pay_command: PayCommand = PAY_COMMAND_DEFAULT,
    ) -> None:
        assert timeout_s > 0, "timeout_s must be positive"
        assert pay_command in PAY_COMMANDS, pay_command
        self._path = Path(rpc_path)
        self._timeout_s = timeout_s
        # The contract suite proves both. pay is deprecated from CLN v26.06 and due for removal
        # in v27.03; it stays for nodes older than v24.11 (no xpay) or that disable xpay.
        self._pay_command: PayCommand = pay_command
        self._rpc = LightningRpc(str(self._path))
        self._executor = ThreadPoolExecutor(RPC_THREADS_MAX, thread_name_prefix="cln-rpc")

    @classmethod
    def from_uri(cls, uri: str, *, timeout_s: float = 30.0) -> ClnAdapter:
        """``cln:///abs/path/to/lightning-rpc[?pay=xpay|pay]``; xpay when not given."""
        path, pay_command = parse_cln_uri(uri)
        return cls(path, timeout_s=timeout_s, pay_command=pay_command)

    @property
    def pay_command(self) -> PayCommand:
        return self._pay_command

    def __repr__(self) -> str:
        return f"ClnAdapter(rpc_path={str(self._path)!r}, pay={self._pay_command})"

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- calls ------------------------------------------------------------------------------

    async def _raw(self, method: str, payload: dict[str, Any]) -> Any:
        """One RPC; raises _Unreachable, _ConnectionLost or _CallFailed (no timeout here)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self._rpc.call, method, payload)
        try:
            future = loop.run_in_executor(self._executor, call)
        except RuntimeError:  # the pool is shut down: close() was called
            raise _Unreachable("adapter closed") from None
        try:
            return await future
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise _Unreachable(exc.strerror or type(exc).__name__) from None
        except OSError as exc:
            raise _ConnectionLost(exc.strerror or type(exc).__name__) from None
        except RpcError as exc:
            # pyln reports a dropped connection as an RpcError whose error is a plain string.
            if not isinstance(exc.error, dict):
                raise _ConnectionLost(str(exc.error)[:ERROR_DETAIL_CHARS_MAX]) from None
            code = exc.error.get("code")
            raise _CallFailed(
                code if isinstance(code, int) else None, str(exc.error.get("message", ""))
            ) from None
        except ValueError as exc:  # malformed reply (pyln raises ValueError/TypeError)
            raise _ConnectionLost(f"malformed reply: {str(exc)[:ERROR_DETAIL_CHARS_MAX]}") from None

    async def _call(
        self,
        method: str,
        payload: dict[str, Any] | None = None,
        *,
        duplicate_codes: frozenset[int] = frozenset(),
        timeout_s: float | None = None,
    ) -> Any:
        """An RPC whose failure is a NodeError (everything but the pay send itself); a code
        in ``duplicate_codes`` raises ``_Duplicate`` instead."""
        try:
            async with asyncio.timeout(timeout_s or self._timeout_s):
                return await self._raw(method, payload or {})
        except _CallFailed as exc:
            if exc.code in duplicate_codes:
                raise _Duplicate(exc.code, exc.message) from None
            rule = cln_error_rule("waitsendpay", exc.code, exc.message)
            reason = rule.reason if rule.final else FailureReason.UNKNOWN
            raise NodeError(
                reason, f"cln {method} failed: {exc.code} {rule.name}: {exc.message}"
            ) from None
        except TimeoutError:
            raise NodeError(
                FailureReason.TIMEOUT, f"cln {method} timed out after {self._timeout_s} s"
            ) from None
        except (_Unreachable, _ConnectionLost) as exc:
            raise NodeError(
                FailureReason.NODE_UNAVAILABLE, f"cln {method}: node unreachable: {exc}"
            ) from None

    # -- node and invoices ------------------------------------------------------------------

    async def get_info(self) -> NodeInfo:
        info = await self._call("getinfo")
        return NodeInfo(
            alias=info.get("alias", ""),
            pubkey=info["id"],
            network=CLN_NETWORK_TO_OURS.get(info["network"], info["network"]),
            block_height=int(info["blockheight"]),
        )

    async def create_invoice(
        self, amount_msat: int | None, memo: str, expiry_s: int, *, preimage: str | None = None
    ) -> Invoice:
        assert amount_msat is None or amount_msat > 0, "amount_msat must be positive or None"
        assert expiry_s > 0, "expiry_s must be positive"
        payload: dict[str, Any] = {
            "amount_msat": "any" if amount_msat is None else amount_msat,
            # CLN needs a unique label; the payment hash, not the label, identifies the
            # invoice. With a chosen preimage the label is the hash's, so a retry meets the
            # node's own refusal (900 for the label, checked first, or 901 for the preimage).
            "label": f"corridor-{secrets.token_hex(12)}",
            "description": memo,
            "expiry": expiry_s,
        }
        if preimage is not None:
            payload["preimage"] = preimage
            payload["label"] = f"corridor-{hashlib.sha256(bytes.fromhex(preimage)).hexdigest()}"
        try:
            created = await self._call("invoice", payload, duplicate_codes=DUPLICATE_INVOICE_CODES)
        except _Duplicate as exc:
            raise DuplicateInvoice(f"cln invoice refused: {exc.code} {exc.message}") from None
        return Invoice(
            payment_request=created["bolt11"],
            payment_hash=created["payment_hash"],
            amount_msat=amount_msat,
            expiry_s=expiry_s,
            # The invoice result has no creation time; expires_at is creation + expiry.
            created_at_s=int(created["expires_at"]) - expiry_s,
        )

    async def decode(self, payment_request: str) -> DecodedInvoice:
        decoded = await self._call("decode", {"string": payment_request})
        if decoded.get("type") != "bolt11 invoice" or not decoded.get("valid", False):
            raise NodeError(
                FailureReason.INCORRECT_DETAILS, "cln decode: not a valid BOLT 11 invoice"
            )
        amount = decoded.get("amount_msat")
        return DecodedInvoice(
            payment_request=payment_request,
            payment_hash=decoded["payment_hash"],
            destination=decoded["payee"],
            amount_msat=int(amount) if amount is not None else None,
            network=CURRENCY_TO_NETWORK.get(decoded["currency"], decoded["currency"]),
            created_at_s=int(decoded["created_at"]),
            expiry_s=int(decoded["expiry"]),
            description=decoded.get("description"),
            min_final_cltv_expiry=int(decoded.get("min_final_cltv_expiry", 18)),
        )

    async def list_channels(self) -> list[Channel]:
        listed = await self._call("listpeerchannels")
        return await self._with_memos(
            [_channel(chan) for chan in listed["channels"] if chan["state"] in OPEN_STATES]
        )

    async def liquidity_summary(self) -> LiquiditySummary:
        return liquidity_of(await self.list_channels())

    # -- receiving and channel operations (issue 18): not served yet ------------------------

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus | None:
        listed = await self._call("listinvoices", {"payment_hash": payment_hash})
        invoices = listed.get("invoices", [])
        return cln_invoice_status(invoices[0]) if invoices else None

    async def invoice_updates(self, *, after_pay_index: int) -> AsyncIterator[InvoiceStatus]:
        """waitanyinvoice from ``lastpay_index``, one bounded wait after another (ADR 0210):
        each call answers the next invoice paid after the index, at once if there is one."""
        assert after_pay_index >= 0, after_pay_index
        cursor = after_pay_index
        while True:
            try:
                paid = await self._call(
                    "waitanyinvoice",
                    {"lastpay_index": cursor, "timeout": INVOICE_WAIT_SLICE_S},
                    duplicate_codes=frozenset({INVOICE_WAIT_TIMED_OUT}),
                    timeout_s=INVOICE_WAIT_SLICE_S + self._timeout_s,
                )
            except _Duplicate:
                continue  # 904: nothing paid within the slice; ask again
            status = cln_invoice_status(paid)
            if status.state != "paid" or status.pay_index <= cursor:
                raise NodeError(
                    FailureReason.UNKNOWN, f"cln waitanyinvoice answered {status.state} invoice"
                )
            cursor = status.pay_index
            yield status

    # -- custom messages (LSPS0's transport, ADR 0250) ----------------------------------------

    async def send_custom_message(
        self, *, peer_pubkey: str, message_type: int, data: bytes
    ) -> None:
        """sendcustommsg: ``msg`` is the 2-byte big-endian type followed by the data."""
        msg = message_type.to_bytes(2, "big").hex() + data.hex()
        try:
            await self._call(
                "sendcustommsg",
                {"node_id": peer_pubkey, "msg": msg},
                duplicate_codes=frozenset({JSONRPC_INVALID_REQUEST}),
            )
        except _Duplicate as exc:
            # -32600 is both "No such peer"/"Peer is not connected" and a refused type.
            not_connected = "peer" in exc.message.lower()
            raise NodeError(
                FailureReason.NO_ROUTE if not_connected else FailureReason.INCORRECT_DETAILS,
                f"cln sendcustommsg failed: {exc.message[:ERROR_DETAIL_CHARS_MAX]}",
            ) from None

    async def custom_messages(self) -> AsyncIterator[CustomMessage]:
        """Long polls of the Corridor plugin's ``corridor-waitcustommsgs`` (ADR 0250):
        lightningd hands custom messages only to plugins. The first call takes the cursor
        (messages from now on); each next one waits a slice for messages after it."""
        try:
            start = await self._call("corridor-waitcustommsgs", {})
        except NodeError as exc:
            raise NodeError(
                exc.reason, f"{exc} (is Corridor's CLN plugin loaded? see ADR 0250)"
            ) from None
        cursor = int(start["next_index"])
        while True:
            got = await self._call(
                "corridor-waitcustommsgs",
                {"after_index": cursor, "timeout": CUSTOMMSG_WAIT_SLICE_S},
                timeout_s=CUSTOMMSG_WAIT_SLICE_S + self._timeout_s,
            )
            if got.get("missed"):
                log.warning("cln_custom_messages_missed", missed=got["missed"])
            for entry in got["messages"]:
                raw = bytes.fromhex(entry["payload"])
                if len(raw) < 2:
                    continue  # not a message: the plugin's ring never holds one
                yield CustomMessage(
                    peer_pubkey=str(entry["peer_id"]),
                    message_type=int.from_bytes(raw[:2], "big"),
                    data=raw[2:],
                )
            cursor = max(cursor, int(got["next_index"]))

    # -- interception (InterceptorPort, ADR 0260: Corridor's htlc_accepted plugin) ------------

    # Core Lightning keeps no note with a channel (``open_channel`` refuses a memo, ADR 0233):
    # callers that find their open again by memo look it up another way.
    keeps_channel_memo: Final = False

    async def held_htlcs(self) -> AsyncIterator[HeldHtlc]:
        async for htlc in cln_interception.held_htlcs(self, self._timeout_s):
            yield htlc

    async def resolve_htlc(self, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
        await cln_interception.resolve(self, htlc, resolution)

    async def pending_channels(self) -> list[PendingChannel]:
        listed = await self._call("listpeerchannels")
        entries = [c for c in listed["channels"] if c["state"] in PENDING_STATES]
        if not entries:
            return []
        tip = int((await self._call("getinfo"))["blockheight"])
        return await self._with_memos([_pending(chan, tip) for chan in entries])

    async def wallet_balance(self) -> WalletBalance:
        outputs = (await self._call("listfunds"))["outputs"]
        confirmed = sum(int(o["amount_msat"]) for o in outputs if o["status"] == "confirmed")
        unconfirmed = sum(
            int(o["amount_msat"]) for o in outputs if o["status"] in ("unconfirmed", "immature")
        )
        return WalletBalance(confirmed_msat=confirmed, unconfirmed_msat=unconfirmed)

    async def open_channel(
        self,
        *,
        peer_pubkey: str,
        local_amount_msat: int,
        sat_per_vbyte: int,
        push_msat: int = 0,
        memo: str = "",
        zero_conf: bool = False,
        private: bool = False,
    ) -> ChannelOpening:
        """fundchannel: answers once the funding transaction is broadcast.

        Core Lightning keeps no note with a channel, so a ``memo`` is kept in the node's
        datastore, written before the funding and answered on a repeat (ADR 0235).
        """
        local_sat, _ = onchain.whole_sats(local_amount_msat, push_msat, sat_per_vbyte)
        payload: dict[str, Any] = {
            "id": peer_pubkey,
            "amount": local_sat,
            "feerate": _perkb(sat_per_vbyte),
        }
        if push_msat:
            payload["push_msat"] = push_msat
        if private:
            payload["announce"] = False
        if zero_conf:
            payload["mindepth"] = 0

        async def fund() -> ChannelOpening:
            funded = await self._chain_call("fundchannel", payload)
            return ChannelOpening(
                channel_point=f"{funded['txid']}:{funded['outnum']}",
                funding_txid=funded["txid"],
                output_index=int(funded["outnum"]),
            )

        if not onchain.check_memo(memo):
            return await fund()
        return await cln_open_record.open_recorded(
            self._record_call, memo=memo, peer=peer_pubkey, amount_sat=local_sat, fund=fund
        )

    async def _record_call(self, method: str, payload: dict[str, Any]) -> Any:
        try:
            return await self._call(method, payload, duplicate_codes=cln_open_record.CONFLICT_CODES)
        except _Duplicate as exc:
            raise cln_open_record.RecordConflict(exc.message) from None

    async def _with_memos(self, channels: list[_Listed]) -> list[_Listed]:
        """Channels with the memo of the open recorded for their outpoint (ADR 0235). A node
        that cannot list its datastore shows none: finding an open again needs the record,
        and opening checks it first (nothing is opened without it)."""
        try:
            memos = await cln_open_record.memos_by_point(self._record_call)
        except (NodeError, cln_open_record.RecordConflict) as exc:
            log.warning("cln_open_records_unavailable", error=str(exc)[:ERROR_DETAIL_CHARS_MAX])
            return channels
        return [
            msgspec.structs.replace(c, memo=memos[c.channel_point])
            if c.channel_point in memos
            else c
            for c in channels
        ]

    async def close_channel(self, *, channel_point: str, sat_per_vbyte: int) -> str:
        """close, by the channel's id found through its funding outpoint; a channel that is
        already closing answers that close's txid (lightningd replays it)."""
        onchain.check_fee_rate(sat_per_vbyte)
        txid, index = onchain.split_channel_point(channel_point)
        listed = await self._call("listpeerchannels")
        matches = [
            c
            for c in listed["channels"]
            if c.get("funding_txid") == txid and int(c.get("funding_outnum", -1)) == index
        ]
        if not matches:
            raise NodeError(
                FailureReason.INCORRECT_DETAILS, f"unknown channel: cln has no {channel_point}"
            )
        rate = _perkb(sat_per_vbyte)
        closed = await self._chain_call(
            "close", {"id": matches[0]["channel_id"], "feerange": [rate, rate]}
        )
        txids: list[str] = closed.get("txids") or []
        if not txids:
            raise NodeError(FailureReason.UNKNOWN, f"cln close answered {closed.get('type')!r}")
        return txids[-1]

    async def _chain_call(self, method: str, payload: dict[str, Any]) -> Any:
        """An on-chain call: refusals map through ``channel_errors.CLN_CODES``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._raw(method, payload)
        except TimeoutError:
            raise NodeError(FailureReason.TIMEOUT, f"cln {method} timed out") from None
        except (_Unreachable, _ConnectionLost) as exc:
            raise NodeError(
                FailureReason.NODE_UNAVAILABLE, f"cln {method}: node unreachable: {exc}"
            ) from None
        except _CallFailed as exc:
            raise channel_errors.cln_error(method, exc.code, exc.message) from None

    # -- payments ---------------------------------------------------------------------------

    async def pay(self, request: PayRequest) -> PaymentResult:
        """Send once per payment hash; a hash the node already holds is answered from its record.

        Raises ``ValueError`` for unusable parameters and ``NodeError`` when the node cannot be
        asked at all (nothing was sent by this call, but an earlier attempt may exist).
        """
        payment_hash, amount_msat, open_amount = _target(request)
        log.info(
            "cln_pay_started",
            payment_hash=payment_hash,
            node=str(self._path),
            command=self._pay_command,
        )
        try:
            async with asyncio.timeout(request.timeout_s):
                existing = await self.lookup_payment(payment_hash)
                if existing is not None and not isinstance(existing, PaymentFailed):
                    return await self._settle(existing, payment_hash, amount_msat)
                return await self._send(request, payment_hash, amount_msat, open_amount)
        except TimeoutError:
            # The node may still settle it; lookup_payment or payment_updates will tell.
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)

    async def _send(
        self, request: PayRequest, payment_hash: str, amount_msat: int, open_amount: bool
    ) -> PaymentResult:
        command = self._pay_command
        payload = _pay_payload(command, request, amount_msat, open_amount)
        try:
            result = await self._raw(command, payload)
        except _Unreachable as exc:
            raise NodeError(
                FailureReason.NODE_UNAVAILABLE, f"cln {command}: node unreachable: {exc}"
            ) from None
        except _ConnectionLost:
            log.info("cln_pay_connection_lost", payment_hash=payment_hash)
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        except _CallFailed as exc:
            return await self._after_error(exc, payment_hash, amount_msat)
        # pay answers with status "complete"; xpay answers only when complete, without status.
        if result.get("status", "complete") == "complete" and "payment_preimage" in result:
            return _succeeded(payment_hash, result["payment_preimage"], result)
        return await self._from_record(payment_hash, amount_msat)

    async def _after_error(
        self, exc: _CallFailed, payment_hash: str, amount_msat: int
    ) -> PaymentResult:
        """A refused send: final by its code alone, or decided by the node's record."""
        rule = cln_error_rule(self._pay_command, exc.code, exc.message)
        log.info(
            "cln_pay_error",
            payment_hash=payment_hash,
            code=exc.code,
            rule=rule.name,
            action=rule.action.value,
        )
        failed = PaymentFailed(
            payment_hash=payment_hash, reason=rule.reason, detail=f"{exc.code}: {exc.message}"
        )
        if rule.final:
            return failed
        return await self._from_record(
            payment_hash, amount_msat, confirms=failed if rule.action is Action.CONFIRM else None
        )

    async def _from_record(
        self, payment_hash: str, amount_msat: int, *, confirms: PaymentFailed | None = None
    ) -> PaymentResult:
        """The node's record decides, followed while pending (within the caller's timeout).

        ``confirms`` is a failure the node reported without proof: it stands once the record
        shows nothing pending for the hash, or shows that nothing was ever sent. Otherwise a
        missing record leaves the outcome unknown.
        """
        try:
            record = await self.lookup_payment(payment_hash)
            if isinstance(record, PaymentInFlight):
                record = await self._follow(payment_hash)
        except NodeError:
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        if confirms is not None and (record is None or isinstance(record, PaymentFailed)):
            return confirms
        if record is None or isinstance(record, PaymentInFlight):
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        return for_amount(record, amount_msat)

    async def _settle(
        self, existing: PaymentResult, payment_hash: str, amount_msat: int
    ) -> PaymentResult:
        """An earlier attempt's record as the answer to this one, followed while pending."""
        if isinstance(existing, PaymentInFlight):
            existing = await self._follow(payment_hash)
            if isinstance(existing, PaymentInFlight):
                return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        return for_amount(existing, amount_msat)

    async def _follow(self, payment_hash: str) -> PaymentResult:
        last: PaymentResult = PaymentInFlight(payment_hash=payment_hash)
        try:
            async for update in self.payment_updates(payment_hash):
                last = update
        except NodeError:
            log.info("cln_follow_interrupted", payment_hash=payment_hash)
        return last

    async def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        # listpays, not listsendpays, is the proof: it merges the parts of each attempt, and
        # since v26.06 the xpay plugin serves it and keeps an attempt "pending" while xpay
        # still works on it (attempt_ongoing in plugins/xpay/xpay.h), even when every part sent
        # so far has failed. Only its "failed" says nothing is, or will be, in flight.
        pays = (await self._call("listpays", {"payment_hash": payment_hash}))["pays"]
        if not pays:
            return None
        for entry in pays:
            if entry["status"] == "complete":
                return _succeeded(payment_hash, entry["preimage"], entry)
        if any(entry["status"] == "pending" for entry in pays):
            return PaymentInFlight(payment_hash=payment_hash)
        return await self._failure_of(payment_hash)

    async def list_payments(self, *, after_index: int, limit: int) -> NodePaymentPage:
        """Pages ``listsendpays`` by ``created_index`` (exact: one entry per part, v23.11+),
        then reads each hash's merged record from ``listpays``: a part alone says neither the
        payment's amount (xpay splits it) nor its outcome (another part may have paid it)."""
        assert after_index >= 0 and 1 <= limit <= PAYMENT_PAGE_MAX, (after_index, limit)
        page = {"index": "created", "start": after_index + 1, "limit": limit}
        parts: list[dict[str, Any]] = (await self._call("listsendpays", page))["payments"]
        first_index: dict[str, int] = {}
        for part in parts:
            first_index.setdefault(part["payment_hash"], int(part["created_index"]))
        records = []
        for payment_hash, index in first_index.items():
            entries = (await self._call("listpays", {"payment_hash": payment_hash}))["pays"]
            records.append(_record_of(payment_hash, index, entries))
        next_index = max((int(part["created_index"]) for part in parts), default=after_index)
        return NodePaymentPage(records=tuple(records), next_index=next_index)

    async def _failure_of(self, payment_hash: str) -> PaymentResult:
        """Every attempt failed: the reason is the last failed part's, replayed by waitsendpay.

        waitsendpay without a part waits for part 0 of the latest group, which xpay never sends
        (its parts count from 1: 208 "never attempted"), so the part is named from listsendpays.
        """
        parts = await self._parts(payment_hash)
        failed = [part for part in parts if part["status"] == "failed"]
        if not failed:
            return PaymentFailed(
                payment_hash=payment_hash,
                reason=FailureReason.UNKNOWN,
                detail="listpays says failed; listsendpays keeps no failed part",
            )
        last = max(failed, key=lambda part: int(part["created_index"]))
        try:
            error = await self._wait_part(payment_hash, last, timeout_s=0)
        except TimeoutError:
            raise NodeError(FailureReason.TIMEOUT, "cln waitsendpay timed out") from None
        if error is None:
            # The part completed after all: the record moved on, so the outcome is open again.
            return PaymentInFlight(payment_hash=payment_hash)
        rule = cln_error_rule("waitsendpay", error.code, error.message)
        return PaymentFailed(
            payment_hash=payment_hash,
            reason=rule.reason if rule.final else FailureReason.UNKNOWN,
            detail=f"{error.code}: {error.message}",
        )

    async def _parts(self, payment_hash: str) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = (
            await self._call("listsendpays", {"payment_hash": payment_hash})
        )["payments"]
        return parts

    async def _wait_part(
        self, payment_hash: str, part: dict[str, Any], *, timeout_s: int
    ) -> _CallFailed | None:
        """waitsendpay on one part: ``None`` once complete, else the error it answered.

        Raises ``TimeoutError`` if the node does not answer in time, ``NodeError`` if it cannot
        be reached.
        """
        payload = {
            "payment_hash": payment_hash,
            "timeout": timeout_s,
            # pairedWith in the schema: partid and groupid go together.
            "partid": int(part.get("partid", 0)),
            "groupid": int(part["groupid"]),
        }
        try:
            async with asyncio.timeout(timeout_s + self._timeout_s):
                await self._raw("waitsendpay", payload)
        except _CallFailed as exc:
            return exc
        except (_Unreachable, _ConnectionLost) as exc:
            raise NodeError(FailureReason.NODE_UNAVAILABLE, f"cln waitsendpay: {exc}") from None
        return None

    async def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        """The node's record, then each change, ending at a final result.

        Raises ``NodeError`` if the node has no record of the hash.
        """
        last = await self.lookup_payment(payment_hash)
        if last is None:
            raise NodeError(FailureReason.UNKNOWN, f"cln has no payment {payment_hash}")
        yield last
        while isinstance(last, PaymentInFlight):
            await self._until_a_part_resolves(payment_hash)
            current = await self.lookup_payment(payment_hash)
            if current is None:
                raise NodeError(FailureReason.UNKNOWN, f"cln lost payment {payment_hash}")
            if current != last:
                yield current
            last = current

    async def _until_a_part_resolves(self, payment_hash: str) -> None:
        """Wait (at most a slice) for the newest pending part; its outcome is read elsewhere."""
        pending = [part for part in await self._parts(payment_hash) if part["status"] == "pending"]
        if not pending:
            # listpays says pending but no part is out: xpay is between two attempts.
            await asyncio.sleep(UPDATE_POLL_S)
            return
        with contextlib.suppress(TimeoutError):
            await self._wait_part(payment_hash, pending[-1], timeout_s=UPDATE_WAIT_SLICE_S)


def parse_cln_uri(uri: str) -> tuple[str, PayCommand]:
    """``cln:///abs/path/to/lightning-rpc[?pay=xpay|pay]`` -> (socket path, pay command).

    xpay is the default; ``pay=xpay`` is still accepted (it was the opt-in before ADR 0104).
    """
    path, _, query = uri.partition("?")
    if not path.startswith("cln://") or not path[len("cln://") :].startswith("/"):
        raise ValueError("expected cln:///absolute/path/to/lightning-rpc")
    options: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        if name in options:
            raise ValueError(f"cln:// option {name!r} given twice")
        options[name] = value
    pay_command = options.pop("pay", PAY_COMMAND_DEFAULT)
    if options:
        raise ValueError(f"unknown cln:// option {sorted(options)[0]!r}: the only one is pay")
    for command in PAY_COMMANDS:
        if pay_command == command:
            return path[len("cln://") :], command
    raise ValueError(f"pay={pay_command!r}: use pay=xpay (the default) or pay=pay")


def _pay_payload(
    command: PayCommand, request: PayRequest, amount_msat: int, open_amount: bool
) -> dict[str, Any]:
    """The request for ``command`` (doc/schemas/xpay.json, doc/schemas/pay.json)."""
    assert request.payment_request is not None
    payload: dict[str, Any] = {
        "invstring" if command == "xpay" else "bolt11": request.payment_request,
        "maxfee": request.max_fee_msat,
        # retry_for bounds CLN's route search; our own wait is bounded by timeout_s.
        "retry_for": max(1, math.ceil(request.timeout_s)),
    }
    if open_amount:
        payload["amount_msat"] = amount_msat
    return payload


def _record_of(payment_hash: str, index: int, entries: list[dict[str, Any]]) -> NodePaymentRecord:
    """The merged ``listpays`` entries of one hash as the node's record: complete if any
    group is (as ``lookup_payment`` reads it), else pending if any is, else failed."""
    created_at_s = min((int(e.get("created_at", 0)) for e in entries), default=0)
    for entry in entries:
        if entry["status"] == "complete":
            succeeded = _succeeded(payment_hash, entry["preimage"], entry)
            if isinstance(succeeded, PaymentSucceeded):
                return NodePaymentRecord(
                    index=index, payment_hash=payment_hash, status="succeeded",
                    amount_msat=succeeded.amount_msat, fee_msat=succeeded.fee_msat,
                    created_at_s=created_at_s, preimage=succeeded.preimage,
                )  # fmt: skip
            return NodePaymentRecord(
                index=index, payment_hash=payment_hash, status="in_flight", amount_msat=0,
                fee_msat=0, created_at_s=created_at_s,
            )  # fmt: skip
    pending = [e for e in entries if e["status"] == "pending"]
    return NodePaymentRecord(
        index=index,
        payment_hash=payment_hash,
        status="in_flight" if pending or not entries else "failed",
        amount_msat=sum(int(e.get("amount_msat", 0)) for e in pending),
        fee_msat=0,
        created_at_s=created_at_s,
    )


def _channel(chan: dict[str, Any]) -> Channel:
    """A listpeerchannels entry of an open channel as the port's channel."""
    total_msat = int(chan.get("total_msat", 0))
    local_msat = int(chan.get("to_us_msat", 0))
    fee_base = chan.get("fee_base_msat")
    fee_ppm = chan.get("fee_proportional_millionths")
    return Channel(
        channel_id=chan.get("short_channel_id") or chan.get("channel_id", ""),
        peer_pubkey=chan["peer_id"],
        capacity_msat=total_msat,
        local_balance_msat=local_msat,
        remote_balance_msat=total_msat - local_msat,
        active=chan["state"] == "CHANNELD_NORMAL" and bool(chan["peer_connected"]),
        channel_point=(
            f"{chan['funding_txid']}:{chan['funding_outnum']}" if "funding_txid" in chan else ""
        ),
        pending_htlcs_msat=sum(int(h["amount_msat"]) for h in chan.get("htlcs", ())),
        fee_base_msat=None if fee_base is None else int(fee_base),
        fee_ppm=None if fee_ppm is None else int(fee_ppm),
        initiator=None if "opener" not in chan else chan["opener"] == "local",
    )


def _pending(chan: dict[str, Any], tip: int) -> PendingChannel:
    """A listpeerchannels entry on its way in or out. CLN learns the short channel id (block x
    index x output) at the funding's first confirmation, so its block gives the depth."""
    scid = chan.get("short_channel_id")
    confirmations = 0
    if chan["state"] in OPENING_STATES and scid:
        confirmations = max(tip - int(scid.split("x")[0]) + 1, 0)
    return PendingChannel(
        channel_point=f"{chan.get('funding_txid', '')}:{chan.get('funding_outnum', 0)}",
        peer_pubkey=chan["peer_id"],
        capacity_msat=int(chan.get("total_msat", 0)),
        local_balance_msat=int(chan.get("to_us_msat", 0)),
        state="opening" if chan["state"] in OPENING_STATES else "closing",
        confirmations=confirmations,
    )


def _perkb(sat_per_vbyte: int) -> str:
    """A sat/vB rate as CLN's feerate string (sat per 1000 vbytes)."""
    return f"{sat_per_vbyte * 1000}perkb"


def _succeeded(payment_hash: str, preimage: str, entry: dict[str, Any]) -> PaymentResult:
    # Never trust a preimage that does not hash to the payment hash: treat it as unknown.
    if hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != payment_hash:
        log.warning("cln_bad_preimage", payment_hash=payment_hash)
        return PaymentInFlight(payment_hash=payment_hash)
    amount_msat = int(entry["amount_msat"])
    return PaymentSucceeded(
        payment_hash=payment_hash,
        preimage=preimage,
        amount_msat=amount_msat,
        fee_msat=int(entry["amount_sent_msat"]) - amount_msat,
    )


def _target(request: PayRequest) -> tuple[str, int, bool]:
    """(payment hash, amount to deliver, whether the invoice left the amount open).

    Raises ``ValueError`` (``InvoiceDecodeError`` for a bad invoice) before any node call.
    """
    if request.circle is not None:
        # xpay/pay take no first and last hop (a circle needs getroute + sendpay): ADR 0247.
        raise ValueError("circular payments are not supported on CLN")
    if request.payment_request is None:
        # CLN's keysend chooses its own preimage, so a retry could not reuse the caller's hash,
        # which the port requires; see ADR 0103.
        raise ValueError("keysend with a caller-chosen preimage is not supported on CLN")
    return invoice_target(request)
