"""NodePort adapter that drives one node of a ``SimNetwork`` in process, for the deterministic
whole-engine simulation (ADR 0114).

No socket, thread or RPC library: every call reads the network directly, and every wait is an
asyncio wait on the network's own events (a payment subscription, a node going offline) or on
the loop's clock (a slow node's latency, the caller's timeout). On a virtual-time loop whose
clock is the network's, a run is therefore instantaneous and repeats exactly.

It answers through the port as ``LndAdapter`` answers for the same network behind the
simulated lnd (``services/sim/lnd_router.py``), and the contract suite checks both with one
body: a hash held as succeeded or in flight is answered from the record, never sent again; an
invoice the node finds expired is refused before anything is sent and leaves no record;
failure reasons are what the payer's node can know (``ON_THE_WIRE``); an offline node raises
``NodeError`` for calls and leaves a followed payment in flight. A CLN node refuses keysend,
as ``ClnAdapter`` does (ADR 0103), so a simulation cannot route keysend where production can't.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Final, TypeVar

import structlog

from services.bolt11.codec import InvoiceDecodeError
from services.lightning import channel_errors, onchain, sim_interception
from services.lightning.interceptor_port import HeldHtlc, HtlcResolution
from services.lightning.payments import (
    for_amount,
    invoice_target,
    keysend_target,
    liquidity_of,
)
from services.lightning.port import (
    CUSTOM_MESSAGE_DATA_BYTES_MAX,
    CUSTOM_MESSAGE_TYPE_MAX,
    CUSTOM_MESSAGE_TYPE_MIN,
    PAYMENT_PAGE_MAX,
    Channel,
    ChannelOpening,
    CustomMessage,
    DecodedInvoice,
    DuplicateInvoice,
    FailureReason,
    Invoice,
    InvoiceState,
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
from services.sim.channel_ops import ChannelRefused
from services.sim.custom_messages import PeerNotConnected, SimCustomMessage
from services.sim.errors import (
    InvalidPaymentRequest,
    InvoiceExists,
    NodeOffline,
    PaymentExists,
    UnknownNode,
)
from services.sim.lnd_payments import latest_visible, lnd_visible, rejected_before_send
from services.sim.network import SimNetwork
from services.sim.records import SimInvoice, SimPayment
from services.sim.routing import NO_LIMITS, RouteLimits

log = structlog.get_logger(__name__)

# Same default as the RPC adapters: a node call (not a payment) answers within this.
TIMEOUT_S_DEFAULT: Final = 30.0
# A keysend destination is a compressed secp256k1 public key.
PUBKEY_BYTES: Final = 33

# What the payer's node can report once an HTLC is out (BOLT 4): the payee answers
# incorrect_or_unknown_payment_details whether the invoice is unknown, settled or expired, and
# no implementation has a reason for "a node on the way is down" (lnd: FAILURE_REASON_NO_ROUTE,
# CLN: 205/204). The same table as lnd's (services/sim/lnd_messages.LND_FAILURE_REASON read
# back by lnd_convert); a test keeps the two equal. An invoice the sender itself finds expired
# is the one exception: refused before sending, with its own reason.
ON_THE_WIRE: Final[dict[FailureReason, FailureReason]] = {
    FailureReason.ALREADY_PAID: FailureReason.INCORRECT_DETAILS,
    FailureReason.INVOICE_EXPIRED: FailureReason.INCORRECT_DETAILS,
    FailureReason.NODE_UNAVAILABLE: FailureReason.NO_ROUTE,
}


class SimNodeAdapter:
    """One node of a ``SimNetwork`` behind the NodePort interface, without any RPC."""

    def __init__(
        self, network: SimNetwork, node: str, *, timeout_s: float = TIMEOUT_S_DEFAULT
    ) -> None:
        assert timeout_s > 0, "timeout_s must be positive"
        self._network = network
        self._node = network.node(node)  # raises UnknownNode for a name not in the network
        self._timeout_s = timeout_s
        self._closed = False
        self._followers: set[asyncio.Event] = set()  # set by close(): followers end

    def __repr__(self) -> str:
        return f"SimNodeAdapter(node={self._node.name!r})"

    async def close(self) -> None:
        """Ends the invoice followers, as an RPC adapter's close ends its streams; the network
        belongs to whoever built it."""
        self._closed = True
        for event in self._followers:
            event.set()

    # -- node and invoices ------------------------------------------------------------------

    async def get_info(self) -> NodeInfo:
        await self._answer("getinfo")
        return NodeInfo(
            alias=self._node.alias or self._node.name,
            pubkey=self._node.pubkey,
            network=self._network.network,
            block_height=self._network.block_height,
        )

    async def create_invoice(
        self, amount_msat: int | None, memo: str, expiry_s: int, *, preimage: str | None = None
    ) -> Invoice:
        assert amount_msat is None or amount_msat > 0, "amount_msat must be positive or None"
        assert expiry_s > 0, "expiry_s must be positive"
        await self._answer("invoice")
        try:
            created = self._network.create_invoice(
                self._node.name, amount_msat, memo, expiry_s, preimage=preimage
            )
        except NodeOffline:
            raise self._offline("invoice") from None
        except InvoiceExists as exc:
            raise DuplicateInvoice(f"sim invoice: {exc}") from None
        except ValueError as exc:
            raise NodeError(FailureReason.INCORRECT_DETAILS, f"sim invoice: {exc}") from None
        assert created.bolt11 is not None
        return Invoice(
            payment_request=created.bolt11,
            payment_hash=created.payment_hash,
            amount_msat=created.amount_msat,
            expiry_s=created.expiry_s,
            created_at_s=created.created_at_s,
        )

    async def decode(self, payment_request: str) -> DecodedInvoice:
        await self._answer("decode")
        try:
            return self._network.decode(payment_request)
        except InvoiceDecodeError as exc:
            raise NodeError(FailureReason.INCORRECT_DETAILS, f"sim decode: {exc}") from None

    async def list_channels(self) -> list[Channel]:
        await self._answer("listchannels")
        return [
            Channel(
                channel_id=chan.channel_id,
                peer_pubkey=chan.peer_pubkey,
                capacity_msat=chan.capacity_msat,
                local_balance_msat=chan.local_balance_msat,
                remote_balance_msat=chan.remote_balance_msat,
                active=chan.active,
                # Whole sats, as lnd's ListChannels reports them (see LndAdapter).
                channel_point=f"{chan.funding_txid}:{chan.funding_output}",
                pending_htlcs_msat=sum(h.amount_msat // 1000 for h in chan.htlcs) * 1000,
                fee_base_msat=chan.fee_base_msat,
                fee_ppm=chan.fee_ppm,
                initiator=chan.opener_is_local,
                memo=chan.memo,
            )
            for chan in self._network.channels_of(self._node.name)
        ]

    async def liquidity_summary(self) -> LiquiditySummary:
        return liquidity_of(await self.list_channels())

    # -- receiving ---------------------------------------------------------------------------

    async def lookup_invoice(self, payment_hash: str) -> InvoiceStatus | None:
        await self._answer("lookupinvoice")
        record = self._network.lookup_invoice(self._node.name, payment_hash)
        return None if record is None else invoice_status(record)

    async def invoice_updates(self, *, after_pay_index: int) -> AsyncIterator[InvoiceStatus]:
        """The network's settlements of this node in pay order; raises ``NodeError`` once the
        node goes offline, as the RPC adapters' streams break when their node stops."""
        assert after_pay_index >= 0, after_pay_index
        await self._answer("subscribeinvoices")
        subscription = self._network.subscribe_invoices(
            self._node.name, after_pay_index=after_pay_index
        )
        try:
            with self._offline_signal() as stop, self._follower(stop):
                while True:
                    record = await _next_or_offline(subscription, stop)
                    if record is None:
                        if self._closed:
                            raise NodeError(
                                FailureReason.NODE_UNAVAILABLE, "sim subscribeinvoices: closed"
                            )
                        raise self._offline("subscribeinvoices")
                    yield invoice_status(record)
        finally:
            await subscription.aclose()

    @contextlib.contextmanager
    def _follower(self, stop: asyncio.Event) -> Iterator[None]:
        """``stop`` is set when the adapter closes (at once if it is closed)."""
        self._followers.add(stop)
        if self._closed:
            stop.set()
        try:
            yield
        finally:
            self._followers.discard(stop)

    # -- custom messages (LSPS0's transport, ADR 0250) ----------------------------------------

    async def send_custom_message(
        self, *, peer_pubkey: str, message_type: int, data: bytes
    ) -> None:
        """As lnd's SendCustomMessage: a type below the custom range or an oversized message
        is refused, and so is a peer that is not connected."""
        await self._answer("sendcustommessage")
        if not CUSTOM_MESSAGE_TYPE_MIN <= message_type <= CUSTOM_MESSAGE_TYPE_MAX:
            raise NodeError(
                FailureReason.INCORRECT_DETAILS,
                f"sim sendcustommessage: msg type {message_type} needs to be >= "
                f"{CUSTOM_MESSAGE_TYPE_MIN}",
            )
        if len(data) > CUSTOM_MESSAGE_DATA_BYTES_MAX:
            raise NodeError(FailureReason.INCORRECT_DETAILS, "sim sendcustommessage: too large")
        try:
            self._network.custom_messages.send(self._node.name, peer_pubkey, message_type, data)
        except PeerNotConnected:
            raise NodeError(
                FailureReason.NO_ROUTE, "sim sendcustommessage: peer is not connected"
            ) from None
        except NodeOffline:
            raise self._offline("sendcustommessage") from None

    async def custom_messages(self) -> AsyncIterator[CustomMessage]:
        """The network's custom messages to this node; raises ``NodeError`` once the node goes
        offline or the adapter closes, as the RPC adapters' streams break."""
        await self._answer("subscribecustommessages")
        async with self._network.custom_messages.watch(self._node.name) as queue:
            with self._offline_signal() as stop, self._follower(stop):
                while True:
                    message = await _next_or_offline(_drain(queue), stop)
                    if message is None:
                        if self._closed:
                            raise NodeError(
                                FailureReason.NODE_UNAVAILABLE,
                                "sim subscribecustommessages: closed",
                            )
                        raise self._offline("subscribecustommessages")
                    yield CustomMessage(
                        peer_pubkey=message.sender_pubkey,
                        message_type=message.message_type,
                        data=message.data,
                    )

    # -- channel operations (issue 18): not served yet --------------------------------------

    async def pending_channels(self) -> list[PendingChannel]:
        await self._answer("pendingchannels")
        return [
            PendingChannel(
                channel_point=f"{p.funding_txid}:{p.funding_output}",
                peer_pubkey=p.peer_pubkey,
                capacity_msat=p.capacity_msat,
                local_balance_msat=p.local_balance_msat,
                state="opening" if p.state == "opening" else "closing",
                confirmations=p.confirmations,
                closing_txid=p.closing_txid or None,
                memo=p.memo,
            )
            for p in self._network.pending_channels_of(self._node.name)
            if p.state != "closed"
        ]

    async def wallet_balance(self) -> WalletBalance:
        await self._answer("walletbalance")
        wallet = self._network.wallet_of(self._node.name)
        return WalletBalance(
            confirmed_msat=wallet.confirmed_msat, unconfirmed_msat=wallet.unconfirmed_msat
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
        local_sat, _ = onchain.whole_sats(local_amount_msat, push_msat, sat_per_vbyte)
        if len(peer_pubkey) != 2 * PUBKEY_BYTES:
            raise ValueError(f"peer_pubkey must be a {PUBKEY_BYTES}-byte public key")
        await self._answer("openchannel")
        try:
            funding = self._network.open_channel(
                self._node.name,
                peer_pubkey,
                amount_sat=local_sat,
                push_msat=push_msat,
                sat_per_vbyte=sat_per_vbyte,
                memo=onchain.check_memo(memo),
                zero_conf=zero_conf,
                private=private,
            )
        except ChannelRefused as exc:
            raise channel_errors.sim_error("openchannel", exc.code, str(exc)) from None
        except NodeOffline:
            raise self._offline("openchannel") from None
        return ChannelOpening(
            channel_point=f"{funding.txid}:{funding.output_index}",
            funding_txid=funding.txid,
            output_index=funding.output_index,
        )

    # Interception (InterceptorPort, ADR 0260).

    async def held_htlcs(self) -> AsyncIterator[HeldHtlc]:
        await self._answer("htlcinterceptor")
        async for htlc in sim_interception.held_htlcs(
            self._network,
            self._node.name,
            self._offline_signal,
            lambda: self._offline("htlcinterceptor"),
        ):
            yield htlc

    async def resolve_htlc(self, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
        await self._answer("resolve_htlc")
        sim_interception.resolve(self._network, self._node.name, htlc, resolution)

    async def close_channel(self, *, channel_point: str, sat_per_vbyte: int) -> str:
        onchain.check_fee_rate(sat_per_vbyte)
        onchain.split_channel_point(channel_point)
        await self._answer("closechannel")
        try:
            return self._network.close_channel(
                self._node.name, channel_point, sat_per_vbyte=sat_per_vbyte
            )
        except ChannelRefused as exc:
            if exc.code == "already_closing":
                return str(exc)  # the close already made: its txid
            raise channel_errors.sim_error("closechannel", exc.code, str(exc)) from None
        except NodeOffline:
            raise self._offline("closechannel") from None

    # -- payments ---------------------------------------------------------------------------

    async def pay(self, request: PayRequest) -> PaymentResult:
        """Send unless the node's record answers; never a second live attempt for one hash.

        Raises ``ValueError`` for unusable parameters (nothing sent), ``NodeError`` when the
        node is offline (nothing sent by this call). ``PaymentInFlight`` when the outcome is
        not known within ``request.timeout_s`` or the node went offline while paying.
        """
        payment_hash, amount_msat = self._target(request)
        log.info("sim_pay_started", payment_hash=payment_hash, node=self._node.name)
        try:
            async with asyncio.timeout(request.timeout_s):
                await self._enter()
                attempt = self._record(payment_hash)
                if attempt is None or attempt.status == "failed":
                    sent = await self._send(request, payment_hash)
                    if isinstance(sent, PaymentFailed):
                        return sent
                    attempt = sent
                final = await self._follow(attempt)
        except TimeoutError:
            # The network may still settle it; lookup_payment or payment_updates will tell.
            return PaymentInFlight(payment_hash=payment_hash, amount_msat=amount_msat)
        return for_amount(result_of(final), amount_msat)

    async def _send(self, request: PayRequest, payment_hash: str) -> SimPayment | PaymentFailed:
        """A fresh attempt (or the record that refused it), or why nothing was sent."""
        try:
            return await self._network.send_payment(
                self._node.name,
                payment_request=request.payment_request,
                destination=request.destination,
                amount_msat=request.amount_msat,
                payment_hash=payment_hash,
                preimage=request.keysend_preimage,
                max_fee_msat=request.max_fee_msat,
                timeout_s=request.timeout_s,
                limits=_limits(request, self._network),
            )
        except PaymentExists as exc:
            # Not reachable from one loop (the record was read without a wait in between), but
            # the network's own refusal is the rule, so its record is the answer.
            return exc.existing
        except NodeOffline:
            raise self._offline("pay") from None
        except InvalidPaymentRequest as exc:
            # The node refused our parameters before registering anything: final.
            return PaymentFailed(
                payment_hash=payment_hash,
                reason=FailureReason.INCORRECT_DETAILS,
                detail=f"{exc.code}: {exc}",
            )
        except UnknownNode:
            return PaymentFailed(
                payment_hash=payment_hash,
                reason=FailureReason.NO_ROUTE,
                detail="unknown destination",
            )

    def _target(self, request: PayRequest) -> tuple[str, int]:
        """(payment hash, amount to deliver); raises ``ValueError`` before any node call."""
        if request.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if request.max_fee_msat < 0:
            raise ValueError("max_fee_msat must be non-negative")
        if request.payment_request is not None:
            if request.destination is not None or request.keysend_preimage is not None:
                raise ValueError("give a payment request or keysend fields, not both")
            payment_hash, amount_msat, _ = invoice_target(request)
            return payment_hash, amount_msat
        if self._node.implementation == "cln":
            # CLN's keysend chooses its own preimage, so a retry could not reuse the hash.
            raise ValueError("keysend with a caller-chosen preimage is not supported on CLN")
        if request.destination is not None and (
            len(bytes.fromhex(request.destination)) != PUBKEY_BYTES
        ):
            raise ValueError(f"destination must be a {PUBKEY_BYTES}-byte public key")
        return keysend_target(request)

    async def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        await self._answer("lookup")
        record = self._record(payment_hash)
        return None if record is None else result_of(record)

    async def list_payments(self, *, after_index: int, limit: int) -> NodePaymentPage:
        """The node's attempts by ledger order (``attempt_id``), as lnd's ListPayments pages
        them by ``payment_index``."""
        assert after_index >= 0 and 1 <= limit <= PAYMENT_PAGE_MAX, (after_index, limit)
        await self._answer("listpays")
        attempts = [
            p
            for p in self._network.payments_of(self._node.name)
            if lnd_visible(p) and p.attempt_id > after_index
        ][:limit]
        records = tuple(record_of(attempt) for attempt in attempts)
        return NodePaymentPage(
            records=records, next_index=records[-1].index if records else after_index
        )

    async def payment_updates(self, payment_hash: str) -> AsyncIterator[PaymentResult]:
        """The node's record, then each change, ending at a final result.

        Raises ``NodeError`` if the node has no record of the hash, or goes offline meanwhile.
        """
        await self._answer("track")
        first = self._record(payment_hash)
        if first is None:
            raise NodeError(FailureReason.UNKNOWN, f"sim node has no payment {payment_hash}")
        last = result_of(first)
        yield last
        async with contextlib.aclosing(self._updates(first)) as updates:
            async for update in updates:
                if update is None:
                    raise self._offline("track")
                current = result_of(update)
                if current != last:
                    last = current
                    yield current

    async def _follow(self, attempt: SimPayment) -> SimPayment:
        """The attempt once final, or as it stands when the node goes offline."""
        last = attempt
        async with contextlib.aclosing(self._updates(attempt)) as updates:
            async for update in updates:
                if update is None:
                    log.info("sim_pay_node_offline", payment_hash=attempt.payment_hash)
                    break
                last = update
        return last

    async def _updates(self, first: SimPayment) -> AsyncGenerator[SimPayment | None, None]:
        """Each later state of ``first``'s attempt up to the final one; ``None`` (then the end)
        once the node is offline, as an RPC stream breaks when its node stops."""
        if first.is_final:
            return
        subscription = self._network.subscribe_payment(self._node.name, first.payment_hash)
        try:
            with self._offline_signal() as offline:
                while True:
                    update = await _next_or_offline(subscription, offline)
                    if update is None:
                        yield None
                        return
                    if update.attempt_id != first.attempt_id:
                        continue
                    yield update
                    if update.is_final:
                        return
        finally:
            await subscription.aclose()

    def _record(self, payment_hash: str) -> SimPayment | None:
        """The node's current attempt for the hash, as the node keeps it on record."""
        return latest_visible(self._network.payments_of(self._node.name, payment_hash))

    # -- faults as a client meets them ------------------------------------------------------

    async def _enter(self) -> None:
        """An offline node refuses; a slowed one answers after its latency."""
        if not self._network.is_online(self._node.name):
            raise self._offline("call")
        latency_s = self._network.faults.latency_for(self._node.name)
        if latency_s > 0:
            await asyncio.sleep(latency_s)

    async def _answer(self, call: str) -> None:
        """``_enter`` for a node call, bounded by the adapter's timeout like an RPC."""
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._enter()
        except TimeoutError:
            raise NodeError(
                FailureReason.TIMEOUT, f"sim {call} timed out after {self._timeout_s} s"
            ) from None

    def _offline(self, call: str) -> NodeError:
        return NodeError(
            FailureReason.NODE_UNAVAILABLE, f"sim {call}: node {self._node.name!r} is offline"
        )

    @contextlib.contextmanager
    def _offline_signal(self) -> Iterator[asyncio.Event]:
        """An event set once the node goes offline (at once if it already is)."""
        event = asyncio.Event()
        if not self._network.is_online(self._node.name):
            event.set()

        def changed(name: str, online: bool) -> None:
            if name == self._node.name and not online:
                event.set()

        self._network.add_node_listener(changed)
        try:
            yield event
        finally:
            self._network.remove_node_listener(changed)


def result_of(payment: SimPayment) -> PaymentResult:
    """A simulated attempt as the payer's node reports it through the port."""
    if payment.status == "succeeded":
        assert payment.preimage is not None
        return PaymentSucceeded(
            payment_hash=payment.payment_hash,
            preimage=payment.preimage,
            amount_msat=payment.amount_msat,
            fee_msat=payment.fee_msat,
            hops=payment.hops,
        )
    if payment.status == "failed":
        reason = payment.failure_reason or FailureReason.UNKNOWN
        if not rejected_before_send(payment):
            reason = ON_THE_WIRE.get(reason, reason)
        return PaymentFailed(
            payment_hash=payment.payment_hash, reason=reason, detail=payment.failure_detail
        )
    return PaymentInFlight(payment_hash=payment.payment_hash, amount_msat=payment.amount_msat)


def record_of(payment: SimPayment) -> NodePaymentRecord:
    """A simulated attempt as an entry of the node's payment list."""
    return NodePaymentRecord(
        index=payment.attempt_id,
        payment_hash=payment.payment_hash,
        status=payment.status,
        amount_msat=payment.amount_msat,
        fee_msat=payment.fee_msat if payment.status == "succeeded" else 0,
        created_at_s=int(payment.created_at_s),
        preimage=payment.preimage if payment.status == "succeeded" else None,
    )


# The sim's invoice states as the port names them (an expired invoice is its own state here,
# as in CLN; the LND adapter derives it from lnd's CANCELED past the expiry).
INVOICE_STATE: Final[dict[str, InvoiceState]] = {
    "open": "open",
    "accepted": "accepted",
    "settled": "paid",
    "canceled": "cancelled",
    "expired": "expired",
}


def invoice_status(record: SimInvoice) -> InvoiceStatus:
    paid = record.state == "settled"
    return InvoiceStatus(
        payment_hash=record.payment_hash,
        state=INVOICE_STATE[record.state],
        payment_request=record.bolt11 or "",
        amount_msat=record.amount_msat,
        amount_received_msat=record.amount_received_msat,
        preimage=record.preimage if paid else None,
        created_at_s=record.created_at_s,
        expires_at_s=record.created_at_s + record.expiry_s,
        paid_at_s=record.settled_at_s if paid else None,
        pay_index=record.pay_index,
    )


_T = TypeVar("_T")


async def _next_or_offline(subscription: AsyncIterator[_T], offline: asyncio.Event) -> _T | None:
    """The subscription's next update, or ``None`` once the node is offline."""
    if offline.is_set():
        return None
    next_update = asyncio.ensure_future(anext(subscription))
    went_offline = asyncio.ensure_future(offline.wait())
    try:
        await asyncio.wait({next_update, went_offline}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (next_update, went_offline):
            task.cancel()
        # Let a cancelled read leave the subscription before anyone closes it.
        await asyncio.wait({next_update, went_offline})
    if next_update.done() and not next_update.cancelled():
        return next_update.result()  # an update that arrived with the outage still counts
    return None


def _limits(request: PayRequest, network: SimNetwork) -> RouteLimits:
    """A circle's first and last hop as the simulator's route limits (ADR 0247)."""
    if request.circle is None:
        return NO_LIMITS
    try:
        last_hop = network.node_by_pubkey(request.circle.last_hop_pubkey).name
    except UnknownNode:
        last_hop = request.circle.last_hop_pubkey  # no node of the graph: matches no route
    return RouteLimits(
        first_channels=frozenset({request.circle.outgoing_channel_id}), last_hop=last_hop,
        allow_self_payment=True,
    )  # fmt: skip


async def _drain(queue: asyncio.Queue[SimCustomMessage]) -> AsyncGenerator[SimCustomMessage, None]:
    """One item of ``queue`` (a fresh generator per read: a cancelled read closes only it)."""
    yield await queue.get()
