"""NodePort adapter for LND over its gRPC API (``lnrpc.Lightning`` and ``routerrpc.Router``).

Payments use ``Router.SendPaymentV2`` and ``Router.TrackPaymentV2``; semantics are summarised in
shared/conformance/lnd/payment-semantics.md and defined by
https://github.com/lightningnetwork/lnd/blob/master/lnrpc/routerrpc/router.proto.

Credentials: the TLS certificate pins the node, and the macaroon travels hex-encoded in the
``macaroon`` metadata header (https://docs.lightning.engineering/lightning-network-tools/lnd/macaroons).
Neither the macaroon nor any key material appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import grpc
import structlog

from services.lightning import channel_errors, lnd_convert, lnd_receive, onchain
from services.lightning.interceptor_port import HeldHtlc, HtlcResolution
from services.lightning.lnd_errors import Action, grpc_status_rule
from services.lightning.lnd_interception import LndInterceptorStream
from services.lightning.lnd_proto import (
    lightning_pb2,
    lightning_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from services.lightning.payments import invoice_target, keysend_target, liquidity_of
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
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
    PendingChannel,
    WalletBalance,
)

log = structlog.get_logger(__name__)

# gRPC error texts are copied into NodeError messages; bound them so a chatty node cannot
# flood our logs.
ERROR_DETAIL_CHARS_MAX: Final = 200
# lnd's certificate and macaroon are a few KiB; anything far larger is the wrong file.
CREDENTIAL_FILE_BYTES_MAX: Final = 64 * 1024
# lnd caps gRPC messages at 200 MiB; a ListChannels of a large node fits well within 50 MiB.
GRPC_MESSAGE_BYTES_MAX: Final = 50 * 1024 * 1024
# After a final payment update lnd closes the stream; a node that does not is cut off after this.
STREAM_END_WAIT_S: Final = 1.0

# While no settlement is known (cursor 0) lnd's SubscribeInvoices sends no backlog, so the
# follower listens this long, then reads ListInvoices again (ADR 0210).
INVOICE_LISTEN_SLICE_S: Final = 5.0

# grpcio-tools writes the gRPC stub classes without annotations (the messages have .pyi types).
_LIGHTNING_STUB: Final[Any] = lightning_pb2_grpc.LightningStub
_ROUTER_STUB: Final[Any] = router_pb2_grpc.RouterStub
_EOF: Final[Any] = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


class _Sent(enum.Enum):
    """A send that ended without a final result of its own."""

    RECORD_EXISTS = "record_exists"  # lnd refused: the hash is in flight or paid already
    AMBIGUOUS = "ambiguous"  # the send may or may not have reached the node


class _MacaroonAuth:
    """The macaroon header for every call, never shown in a repr.

    Passed as per-call metadata rather than as a gRPC call-credentials plugin: grpcio runs
    plugins on a thread pool, which cost a thread hop per call (about 15 % of an executor's CPU
    in `corridor bench`).
    """

    __slots__ = ("metadata",)

    def __init__(self, macaroon_hex: str) -> None:
        self.metadata = (("macaroon", macaroon_hex),)

    def __repr__(self) -> str:
        return "_MacaroonAuth(<redacted>)"


def _read_credential(path: Path, what: str) -> bytes:
    data = path.read_bytes()
    if not 0 < len(data) <= CREDENTIAL_FILE_BYTES_MAX:
        raise NodeError(FailureReason.NODE_UNAVAILABLE, f"lnd {what} file has a bad size: {path}")
    return data


def parse_lnd_uri(uri: str) -> tuple[str, int, Path, Path]:
    """``lnd://host:port?tlscert=PATH&macaroon=PATH`` as (host, port, cert path, macaroon path)."""
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    if parts.scheme != "lnd" or parts.hostname is None or parts.port is None:
        raise ValueError("expected lnd://host:port?tlscert=PATH&macaroon=PATH")
    if len(query.get("tlscert", [])) != 1 or len(query.get("macaroon", [])) != 1:
        raise ValueError("lnd URI needs exactly one tlscert and one macaroon parameter")
    return parts.hostname, parts.port, Path(query["tlscert"][0]), Path(query["macaroon"][0])


class LndAdapter:
    """One LND node behind the NodePort interface."""

    def __init__(
        self,
        host: str,
        port: int,
        tls_cert_path: Path,
        macaroon_path: Path,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        assert timeout_s > 0, "timeout_s must be positive"
        self._address = f"{host}:{port}"
        self._timeout_s = timeout_s
        cert_pem = _read_credential(tls_cert_path, "TLS certificate")
        macaroon_hex = _read_credential(macaroon_path, "macaroon").hex()
        self._credentials = grpc.ssl_channel_credentials(root_certificates=cert_pem)
        self._auth = _MacaroonAuth(macaroon_hex)
        self._channel: grpc.aio.Channel | None = None
        self._lightning: Any = None
        self._router: Any = None
        self._interceptor = LndInterceptorStream()

    @classmethod
    def from_uri(cls, uri: str, *, timeout_s: float = 30.0) -> LndAdapter:
        host, port, cert_path, macaroon_path = parse_lnd_uri(uri)
        return cls(host, port, cert_path, macaroon_path, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"LndAdapter(address={self._address!r})"

    def _connect(self) -> None:
        # The channel binds to the running event loop, so it is made on first use.
        if self._channel is None:
            self._channel = grpc.aio.secure_channel(
                self._address,
                self._credentials,
                options=[("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX)],
            )
            self._lightning = _LIGHTNING_STUB(self._channel)
            self._router = _ROUTER_STUB(self._channel)

    async def _unary(
        self, service: str, method: str, request: Any, *, raw_errors: bool = False
    ) -> Any:
        """One unary call; a failure is a ``NodeError`` (the ``AioRpcError`` itself with
        ``raw_errors``, for callers that read lnd's text)."""
        self._connect()
        stub = self._lightning if service == "lightning" else self._router
        try:
            return await getattr(stub, method)(
                request, timeout=self._timeout_s, metadata=self._auth.metadata
            )
        except grpc.aio.AioRpcError as exc:
            if raw_errors:
                raise
            raise _node_error(method, exc) from None
        except asyncio.CancelledError:
            raise _closed_unless_cancelled(method) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    # -- interception (InterceptorPort, lnd_interception.py) ---------------------------------

    async def held_htlcs(self) -> AsyncIterator[HeldHtlc]:
        self._connect()
        async for htlc in self._interceptor.held(self._router, self._auth.metadata):
            yield htlc

    async def resolve_htlc(self, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
        """Queued on the open interceptor stream; lnd refusing it ends that stream."""
        self._interceptor.resolve(htlc, resolution)

    # -- node and invoices ------------------------------------------------------------------

    async def get_info(self) -> NodeInfo:
        info = await self._unary("lightning", "GetInfo", lightning_pb2.GetInfoRequest())
        network = info.chains[0].network if info.chains else "mainnet"
        return NodeInfo(
            alias=info.alias,
            pubkey=info.identity_pubkey,
            network=network,
            block_height=info.block_height,
        )

    async def create_invoice(
        self, amount_msat: int | None, memo: str, expiry_s: int, *, preimage: str | None = None
    ) -> Invoice:
        assert amount_msat is None or amount_msat > 0, "amount_msat must be positive or None"
        assert expiry_s > 0, "expiry_s must be positive"
        request = lightning_pb2.Invoice(
            memo=memo,
            value_msat=amount_msat or 0,
            expiry=expiry_s,
            r_preimage=b"" if preimage is None else bytes.fromhex(preimage),
        )
        try:
            added = await self._unary("lightning", "AddInvoice", request, raw_errors=True)
        except grpc.aio.AioRpcError as exc:
            if (exc.details() or "").startswith(lnd_receive.DUPLICATE_INVOICE_TEXT):
                raise DuplicateInvoice(f"lnd AddInvoice refused: {_detail(exc)}") from None
            raise _node_error("AddInvoice", exc) from None
        # AddInvoiceResponse carries no creation time; the node's own invoice record does.
        stored = await self._unary(
            "lightning", "LookupInvoice", lightning_pb2.PaymentHash(r_hash=added.r_hash)
        )
        return Invoice(
            payment_request=added.payment_request,
            payment_hash=added.r_hash.hex(),
            amount_msat=stored.value_msat or None,
            expiry_s=stored.expiry,
            created_at_s=stored.creation_date,
        )

    async def decode(self, payment_request: str) -> DecodedInvoice:
        pay_req = await self._unary(
            "lightning", "DecodePayReq", lightning_pb2.PayReqString(pay_req=payment_request)
        )
        return lnd_convert.decoded_invoice(payment_request, pay_req)

    async def list_channels(self) -> list[Channel]:
        listed = await self._unary("lightning", "ListChannels", lightning_pb2.ListChannelsRequest())
        # lnrpc.Channel carries no fee policy; FeeReport lists ours per channel point.
        report = await self._unary("lightning", "FeeReport", lightning_pb2.FeeReportRequest())
        fees = {item.channel_point: item for item in report.channel_fees}
        return [lnd_convert.channel(chan, fees.get(chan.channel_point)) for chan in listed.channels]

    async def liquidity_summary(self) -> LiquiditySummary:
        return liquidity_of(await self.list_channels())

    # -- receiving ---------------------------------------------------------------------------

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus | None:
        request = lightning_pb2.PaymentHash(r_hash=bytes.fromhex(payment_hash))
        try:
            found = await self._unary("lightning", "LookupInvoice", request, raw_errors=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None  # ErrInvoiceNotFound / ErrNoInvoicesCreated (rpcserver.go)
            raise _node_error("LookupInvoice", exc) from None
        return lnd_receive.invoice_status(found, now_s=time.time())

    async def invoice_updates(self, *, after_pay_index: int) -> AsyncIterator[InvoiceStatus]:
        """SubscribeInvoices from ``settle_index``, which sends the settlements after it first.

        lnd reads ``settle_index`` 0 as "no backlog", so until the node's first settlement
        is known the adapter reads ListInvoices for it and listens only a slice at a time,
        then reads again (ADR 0210). A gap in the indexes (a settlement missed between the
        read and the subscription) starts the round again from the cursor.
        """
        assert after_pay_index >= 0, after_pay_index
        cursor = after_pay_index
        while True:
            if cursor == 0:
                for status in await self._settled_from_list():
                    if status.pay_index != cursor + 1:
                        break
                    cursor = status.pay_index
                    yield status
            async for invoice in self._subscribe_settlements(cursor):
                if invoice.settle_index != cursor + 1:
                    break  # a gap: read again from the cursor
                cursor = invoice.settle_index
                yield lnd_receive.invoice_status(invoice, now_s=time.time())

    async def _settled_from_list(self) -> list[InvoiceStatus]:
        """Every settled invoice of the node, in settle order (ListInvoices, page by page)."""
        settled: list[InvoiceStatus] = []
        offset = 0
        while True:
            request = lightning_pb2.ListInvoiceRequest(
                index_offset=offset, num_max_invoices=lnd_receive.LIST_INVOICES_PAGE
            )
            page = await self._unary("lightning", "ListInvoices", request)
            settled += [
                lnd_receive.invoice_status(invoice, now_s=time.time())
                for invoice in page.invoices
                if lnd_receive.is_settlement_after(invoice, 0)
            ]
            if not page.invoices:
                return sorted(settled, key=lambda status: status.pay_index)
            offset = page.last_index_offset

    async def _subscribe_settlements(self, cursor: int) -> AsyncIterator[Any]:
        """Settled invoices after ``cursor`` from one SubscribeInvoices stream. With cursor 0
        the stream is closed after ``INVOICE_LISTEN_SLICE_S`` (the caller reads again)."""
        self._connect()
        request = lightning_pb2.InvoiceSubscription(settle_index=cursor)
        call = self._lightning.SubscribeInvoices(request, metadata=self._auth.metadata)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INVOICE_LISTEN_SLICE_S if cursor == 0 else None
        try:
            while True:
                # The deadline bounds each read only: a timeout around a yield would cancel
                # the consumer's task wherever it is when the timer fires.
                try:
                    async with asyncio.timeout_at(deadline):
                        invoice = await call.read()
                except TimeoutError:
                    return
                if invoice is _EOF:
                    raise NodeError(FailureReason.NODE_UNAVAILABLE, "lnd ended SubscribeInvoices")
                if lnd_receive.is_settlement_after(invoice, cursor):
                    yield invoice
        except grpc.aio.AioRpcError as exc:
            raise _node_error("SubscribeInvoices", exc) from None
        except asyncio.CancelledError:
            raise _closed_unless_cancelled("SubscribeInvoices") from None
        finally:
            call.cancel()

    # -- custom messages (LSPS0's transport, ADR 0250) ----------------------------------------

    async def send_custom_message(
        self, *, peer_pubkey: str, message_type: int, data: bytes
    ) -> None:
        """SendCustomMessage; lnd answers ``NOT_FOUND`` for a peer that is not connected."""
        request = lightning_pb2.SendCustomMessageRequest(
            peer=bytes.fromhex(peer_pubkey), type=message_type, data=data
        )
        try:
            await self._unary("lightning", "SendCustomMessage", request, raw_errors=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NodeError(
                    FailureReason.NO_ROUTE, f"lnd SendCustomMessage failed: {_detail(exc)}"
                ) from None
            raise _node_error("SendCustomMessage", exc) from None

    async def custom_messages(self) -> AsyncIterator[CustomMessage]:
        """One SubscribeCustomMessages stream for as long as the caller reads."""
        self._connect()
        call = self._lightning.SubscribeCustomMessages(
            lightning_pb2.SubscribeCustomMessagesRequest(), metadata=self._auth.metadata
        )
        try:
            while True:
                message = await call.read()
                if message is _EOF:
                    raise NodeError(
                        FailureReason.NODE_UNAVAILABLE, "lnd ended SubscribeCustomMessages"
                    )
                yield CustomMessage(
                    peer_pubkey=message.peer.hex(),
                    message_type=message.type,
                    data=bytes(message.data),
                )
        except grpc.aio.AioRpcError as exc:
            raise _node_error("SubscribeCustomMessages", exc) from None
        except asyncio.CancelledError:
            raise _closed_unless_cancelled("SubscribeCustomMessages") from None
        finally:
            call.cancel()

    # -- channel operations (issue 18): not served yet --------------------------------------

    async def pending_channels(self) -> list[PendingChannel]:
        pending = await self._unary(
            "lightning", "PendingChannels", lightning_pb2.PendingChannelsRequest()
        )
        # Confirmations count from the first confirming block up to our tip.
        info = await self._unary("lightning", "GetInfo", lightning_pb2.GetInfoRequest())
        return lnd_convert.pending_channels(pending, info.block_height)

    async def wallet_balance(self) -> WalletBalance:
        balance = await self._unary(
            "lightning", "WalletBalance", lightning_pb2.WalletBalanceRequest()
        )
        return WalletBalance(
            confirmed_msat=balance.confirmed_balance * lnd_convert.MSAT_PER_SAT,
            unconfirmed_msat=balance.unconfirmed_balance * lnd_convert.MSAT_PER_SAT,
        )

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
        """OpenChannelSync: answers once the funding transaction is published. A zero-conf
        channel asks for an scid alias too (lnd needs one to route before confirmation)."""
        assert private or not zero_conf, "a zero-conf channel with an scid alias is private"
        local_sat, push_sat = onchain.whole_sats(local_amount_msat, push_msat, sat_per_vbyte)
        request = lightning_pb2.OpenChannelRequest(
            node_pubkey=bytes.fromhex(peer_pubkey),
            local_funding_amount=local_sat,
            push_sat=push_sat,
            sat_per_vbyte=sat_per_vbyte,
            memo=onchain.check_memo(memo),
            private=private,
            zero_conf=zero_conf,
            scid_alias=zero_conf,
        )
        self._connect()
        try:
            point = await self._lightning.OpenChannelSync(
                request, timeout=self._timeout_s, metadata=self._auth.metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise self._chain_error("OpenChannelSync", exc) from None
        txid = lnd_convert.chain_txid(point.funding_txid_bytes)
        return ChannelOpening(
            channel_point=f"{txid}:{point.output_index}",
            funding_txid=txid,
            output_index=point.output_index,
        )

    async def close_channel(self, *, channel_point: str, sat_per_vbyte: int) -> str:
        """CloseChannel, read up to its first update (the published closing transaction).

        Closing a channel that is already closing answers that close's txid, so a retry after
        a crash never needs a second closing transaction.
        """
        assert sat_per_vbyte > 0, "sat_per_vbyte must be positive"
        txid, _, index = channel_point.partition(":")
        request = lightning_pb2.CloseChannelRequest(
            channel_point=lightning_pb2.ChannelPoint(
                funding_txid_str=txid, output_index=int(index)
            ),
            sat_per_vbyte=sat_per_vbyte,
        )
        self._connect()
        call = self._lightning.CloseChannel(
            request, timeout=self._timeout_s, metadata=self._auth.metadata
        )
        try:
            async for update in call:
                if update.WhichOneof("update") == "close_pending":
                    return lnd_convert.chain_txid(update.close_pending.txid)
        except grpc.aio.AioRpcError as exc:
            existing = await self._closing_txid(channel_point)
            if existing is not None:
                return existing
            raise self._chain_error("CloseChannel", exc) from None
        finally:
            call.cancel()  # lnd goes on closing; we only needed the txid
        raise NodeError(FailureReason.UNKNOWN, "lnd CloseChannel ended without a closing txid")

    async def _closing_txid(self, channel_point: str) -> str | None:
        for pending in await self.pending_channels():
            if pending.channel_point == channel_point and pending.state == "closing":
                return pending.closing_txid
        return None

    @staticmethod
    def _chain_error(method: str, exc: grpc.aio.AioRpcError) -> NodeError:
        details = (exc.details() or "")[:ERROR_DETAIL_CHARS_MAX]
        if exc.code() is grpc.StatusCode.UNKNOWN:
            known = channel_errors.lnd_error(method, details)
            if known is not None:
                return known
        return _node_error(method, exc)

    async def list_payments(self, *, after_index: int, limit: int) -> NodePaymentPage:
        # include_incomplete: in-flight and failed payments are part of the record we compare;
        # index_offset is exclusive and pages by payment_index (lightning.proto).
        assert after_index >= 0 and 1 <= limit <= PAYMENT_PAGE_MAX, (after_index, limit)
        request = lightning_pb2.ListPaymentsRequest(
            include_incomplete=True, index_offset=after_index, max_payments=limit, omit_hops=True
        )
        listed = await self._unary("lightning", "ListPayments", request)
        records = tuple(lnd_convert.payment_record(payment) for payment in listed.payments)
        return NodePaymentPage(
            records=records, next_index=listed.last_index_offset if records else after_index
        )

    # -- payments ---------------------------------------------------------------------------

    async def pay(self, request: PayRequest) -> PaymentResult:
        """Send unless the node's record answers; never a second live attempt for one hash.

        A hash the node holds as succeeded or in flight is answered from its record (a record
        that succeeded for another amount is ``ALREADY_PAID``). A FAILED record cannot pay any
        more, so like lnd itself the adapter may send that hash again.

        Raises ``ValueError`` for unusable parameters, and ``NodeError`` when the node cannot
        be asked at all: nothing was sent by this call, but an earlier attempt may exist.
        """
        payment_hash, amount_msat, open_amount = _target(request)
        log.info("lnd_pay_started", payment_hash=payment_hash, node=self._address)
        try:
            async with asyncio.timeout(request.timeout_s):
                return await self._pay_once(request, payment_hash, amount_msat, open_amount)
        except TimeoutError:
            # The node may still settle it; lookup_payment or payment_updates will tell.
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)

    async def _pay_once(
        self, request: PayRequest, payment_hash: str, amount_msat: int, open_amount: bool
    ) -> PaymentResult:
        # A race after the caller's look-up still meets lnd's AlreadyExists, answered from
        # the record below, so the hint only saves a TrackPaymentV2 stream.
        existing = None if request.node_record_checked else await self._first_update(payment_hash)
        if existing is None or isinstance(existing, PaymentFailed):
            send_request = _send_request(request, payment_hash, amount_msat if open_amount else 0)
            sent = await self._send(send_request, payment_hash)
            if isinstance(sent, PaymentResult):
                return sent
            if request.node_record_checked:
                if sent is _Sent.AMBIGUOUS:
                    # Without our own look-up a record read now could predate this send.
                    raise NodeError(FailureReason.UNKNOWN, "lnd send outcome unknown")
                # Another send of this hash is live or done: answer with where it is now, so
                # the caller can report an in-flight payment instead of waiting on it.
                existing = await self._first_update(payment_hash)
                if existing is not None and not isinstance(existing, PaymentFailed):
                    return _same_amount(existing, amount_msat)
        result = await self._follow(payment_hash)
        if existing is not None and result == existing and isinstance(existing, PaymentFailed):
            # Our new send left no newer record, yet may still reach the node: unknown.
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        return _same_amount(result, amount_msat)

    async def _send(self, send_request: Any, payment_hash: str) -> PaymentResult | _Sent:
        """The final result of a fresh send, or why only the node's record can answer."""
        self._connect()
        call = self._router.SendPaymentV2(send_request, metadata=self._auth.metadata)
        received = False
        final = False
        try:
            async for update in call:
                received = True
                result = lnd_convert.payment_result(update)
                if not isinstance(result, PaymentInFlight):
                    final = True
                    return result
        except grpc.aio.AioRpcError as exc:
            rule = grpc_status_rule(exc.code(), exc.details() or "")
            log.info("lnd_send_error", payment_hash=payment_hash, code=exc.code().name)
            if rule.action is Action.USE_RECORD:
                return _Sent.RECORD_EXISTS
            if rule.action is Action.FAIL and not received:
                # The node refused the request before registering a payment.
                return PaymentFailed(
                    payment_hash=payment_hash, reason=rule.reason, detail=_detail(exc)
                )
            # The send may have reached the node: unknown is not failed, so ask its record.
        finally:
            await _end(call, final=final)
        return _Sent.AMBIGUOUS

    async def _follow(self, payment_hash: str) -> PaymentResult:
        last: PaymentResult = PaymentInFlight(payment_hash=payment_hash)
        try:
            async for update in self.payment_updates(payment_hash):
                last = update
        except NodeError:
            log.info("lnd_track_interrupted", payment_hash=payment_hash)
        return last

    async def _first_update(self, payment_hash: str) -> PaymentResult | None:
        """The node's current record of ``payment_hash``; ``None`` if it has none."""
        updates = self._track(payment_hash)
        try:
            return await anext(updates, None)
        finally:
            await updates.aclose()

    async def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._first_update(payment_hash)
        except TimeoutError:
            raise NodeError(FailureReason.TIMEOUT, "lnd TrackPaymentV2 timed out") from None

    async def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        """TrackPaymentV2 as port results, ending at the final one.

        Raises ``NodeError`` if the node has no record of the hash.
        """
        found = False
        async for result in self._track(payment_hash):
            found = True
            yield result
        if not found:
            raise NodeError(FailureReason.UNKNOWN, f"lnd has no payment {payment_hash}")

    async def _track(self, payment_hash: str) -> AsyncGenerator[PaymentResult, None]:
        """TrackPaymentV2; yields nothing if the node never attempted the hash."""
        self._connect()
        request = router_pb2.TrackPaymentRequest(payment_hash=bytes.fromhex(payment_hash))
        call = self._router.TrackPaymentV2(request, metadata=self._auth.metadata)
        final = False
        try:
            async for update in call:
                result = lnd_convert.payment_result(update)
                final = not isinstance(result, PaymentInFlight)
                yield result
                if final:
                    return
        except grpc.aio.AioRpcError as exc:
            if grpc_status_rule(exc.code(), exc.details() or "").action is Action.NOT_FOUND:
                return
            raise _node_error("TrackPaymentV2", exc) from None
        finally:
            await _end(call, final=final)


async def _end(call: Any, *, final: bool) -> None:
    """Close a payment stream. lnd ends its streams itself after a final update, so then the
    call's status is awaited (briefly) rather than cancelled: a cancel costs both sides an
    RST_STREAM and the server an aborted handler, about 4 % of an executor's CPU."""
    if call.done():
        return
    if final:
        try:
            await asyncio.wait_for(call.code(), STREAM_END_WAIT_S)
            return
        except (TimeoutError, grpc.aio.AioRpcError):
            pass
        except BaseException:
            call.cancel()  # our caller is being cancelled: do not leave the stream open
            raise
    call.cancel()


def _same_amount(result: PaymentResult, amount_msat: int) -> PaymentResult:
    """A success for another amount paid someone else's request, not this one."""
    if isinstance(result, PaymentSucceeded) and result.amount_msat != amount_msat:
        return PaymentFailed(
            payment_hash=result.payment_hash,
            reason=FailureReason.ALREADY_PAID,
            detail=f"hash already paid with {result.amount_msat} msat",
        )
    return result


def _target(request: PayRequest) -> tuple[str, int, bool]:
    """(payment hash, amount to deliver, whether the invoice left the amount open).

    Raises ``ValueError`` (``InvoiceDecodeError`` for a bad invoice) before any node call.
    """
    if request.payment_request is not None:
        # Read locally: the hash is needed before the node is asked anything.
        return invoice_target(request)
    payment_hash, amount_msat = keysend_target(request)
    return payment_hash, amount_msat, True


def _send_request(request: PayRequest, payment_hash: str, amt_msat: int) -> Any:
    # timeout_seconds bounds lnd's route search before the first HTLC (router.proto); the
    # adapter's own wait is bounded separately by request.timeout_s.
    common: dict[str, Any] = {
        "fee_limit_msat": request.max_fee_msat,
        "timeout_seconds": max(1, math.ceil(request.timeout_s)),
        "no_inflight_updates": False,
    }
    if request.circle is not None:  # a circular rebalance through our own invoice (ADR 0247)
        common |= {
            "outgoing_chan_ids": [lnd_convert.scid_from_str(request.circle.outgoing_channel_id)],
            "last_hop_pubkey": bytes.fromhex(request.circle.last_hop_pubkey),
            "allow_self_payment": True,
        }
    if request.payment_request is not None:
        return router_pb2.SendPaymentRequest(
            payment_request=request.payment_request, amt_msat=amt_msat, **common
        )
    assert request.destination is not None and request.keysend_preimage is not None
    return router_pb2.SendPaymentRequest(
        dest=bytes.fromhex(request.destination),
        amt_msat=amt_msat,
        payment_hash=bytes.fromhex(payment_hash),
        dest_custom_records={
            lnd_convert.KEYSEND_RECORD_TYPE: bytes.fromhex(request.keysend_preimage)
        },
        **common,
    )


def _detail(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {(exc.details() or '')[:ERROR_DETAIL_CHARS_MAX]}"


def _closed_unless_cancelled(method: str) -> BaseException:
    """What to raise when a call ends in ``CancelledError``: the same cancel if our caller's
    task is being cancelled, else ``NodeError``. grpc cancels a channel's calls when
    ``close()`` closes it, and that is the node going away for the caller, not a cancel of
    its task."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return asyncio.CancelledError()
    return NodeError(FailureReason.NODE_UNAVAILABLE, f"lnd {method} ended: adapter closed")


def _node_error(method: str, exc: grpc.aio.AioRpcError) -> NodeError:
    rule = grpc_status_rule(exc.code(), exc.details() or "")
    return NodeError(rule.reason, f"lnd {method} failed: {_detail(exc)}")
