"""The payment engine: starts attempts, locks HTLCs along a route, resolves them on time.

Synchronous and clock-driven: ``start`` does pathfinding and locks liquidity at once, and
``run_due`` resolves every HTLC whose time has come by ``now_s()``. Whoever owns the clock
decides when that is (the async driver in ``network.py``, or a deterministic simulation).
"""

from __future__ import annotations

import dataclasses
import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from services.bolt11.codec import InvoiceDecodeError, decode_invoice, payment_hash_of
from services.lightning.port import FailureReason, RouteHop
from services.sim.errors import InvalidPaymentRequest, NodeOffline, PaymentExists, UnknownNode
from services.sim.faults import SimFaults
from services.sim.interception import (
    AUTO_FAIL_BLOCKS_BEFORE_EXPIRY,
    EXTRA_FEE_TLV,
    HELD_HTLCS_MAX,
    InterceptAction,
    InterceptBook,
    InterceptError,
    SimInterceptedHtlc,
)
from services.sim.keys import derive_bytes
from services.sim.ledger import PaymentLedger
from services.sim.records import SimPayment, SimRouteHint
from services.sim.routing import NO_LIMITS, Leg, Route, RouteLimits, find_route
from services.sim.state import NetworkState

# Like LND's default attempt budget: after this many routes failed mid-way, give up.
ROUTE_ATTEMPTS_MAX = 10
# BOLT 4: a payee may accept up to twice the invoice amount (overpayment for privacy).
OVERPAY_FACTOR_MAX = 2

DETAIL_TOO_EXPENSIVE = "route too expensive"
DETAIL_NO_PATH = "no path to destination"
DETAIL_LOCAL_BALANCE = "insufficient local balance"
DETAIL_ALREADY_SETTLED = "invoice already settled"
DETAIL_UNKNOWN_INVOICE = "unknown invoice"
DETAIL_HTLC_TIMEOUT = "HTLC timed out"
DETAIL_INVOICE_CANCELED = "invoice canceled"
DETAIL_UNKNOWN_NEXT_PEER = "unknown next peer"
# The payee's verdict on a hold invoice's HTLC: keep it until the invoice settles or cancels.
_HOLD = "hold"

_PUBKEY = re.compile(r"0[23][0-9a-f]{64}")
_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class _InFlight:
    attempt_id: int
    route: Route
    htlc_ids: tuple[int, ...]
    resolve_at_s: float
    keysend_preimage: str | None
    scheduled_s: float = 0.0
    parked: bool = False
    park_deadline_s: float | None = None
    # Held by the payee of a hold invoice until it settles or cancels (never by a fault, so
    # releasing dropped HTLCs leaves it alone).
    held: bool = False
    # Held at an intercepting LSP until its client resolves it (interception.py).
    intercepted: bool = False
    # LSPS2's extra_fee TLV on the last hop: what the LSP deducted from the onion's amount.
    extra_fee_msat: int = 0


@dataclass(frozen=True, slots=True)
class _Target:
    payment_hash: str
    destination: str  # node name, or the pubkey when the node is not in the network
    amount_msat: int
    payment_request: str | None
    keysend_preimage: str | None
    invoice_created_at_s: int = 0
    invoice_expiry_s: int = 0
    limits: RouteLimits = NO_LIMITS
    min_final_cltv_expiry: int = 18


@dataclass(frozen=True, slots=True)
class _Jit:
    """A payment through an LSP's route hint whose channel the LSP does not have (yet)."""

    lsp: str
    hint: SimRouteHint


class PaymentEngine:
    def __init__(
        self,
        state: NetworkState,
        ledger: PaymentLedger,
        *,
        now_s: Callable[[], float],
        hop_delay_s: float,
        on_update: Callable[[SimPayment], None],
        on_schedule: Callable[[], None] = lambda: None,
    ) -> None:
        assert hop_delay_s >= 0
        self._state = state
        self._ledger = ledger
        self._now_s = now_s
        self._hop_delay_s = hop_delay_s
        self._on_update = on_update
        self._on_schedule = on_schedule
        self.faults = SimFaults(self)
        self._in_flight: dict[int, _InFlight] = {}
        self._schedule: list[tuple[float, int, int]] = []  # (due_s, sequence, attempt_id)
        self._sequence = 0
        self._htlc_ids = 0
        self._keysend_count = 0
        self.node_listeners: list[Callable[[str, bool], None]] = []
        self.intercepts = InterceptBook()
        self._intercepted: dict[tuple[str, tuple[str, int]], int] = {}  # -> attempt id

    # Starting a payment.

    def start(
        self,
        origin: str,
        *,
        payment_request: str | None,
        destination: str | None,
        amount_msat: int | None,
        payment_hash: str | None,
        preimage: str | None,
        max_fee_msat: int,
        limits: RouteLimits = NO_LIMITS,
    ) -> SimPayment:
        """``limits``: lnd's first-hop, last-hop and self-payment restrictions (ADR 0247)."""
        self._state.node(origin)
        if not self._state.is_online(origin):
            raise NodeOffline(origin)
        if max_fee_msat < 0:
            raise InvalidPaymentRequest("bad_fee_limit", "max_fee_msat must be non-negative")
        if payment_request is not None:
            if destination is not None or preimage is not None:
                raise InvalidPaymentRequest(
                    "conflicting_parameters", "give a payment request or keysend fields, not both"
                )
            target = self._invoice_target(payment_request, amount_msat, payment_hash)
        else:
            target = self._keysend_target(origin, destination, amount_msat, payment_hash, preimage)
        target = dataclasses.replace(target, limits=limits)
        existing = self._ledger.latest(origin, target.payment_hash)
        if existing is not None and existing.status != "failed":
            raise PaymentExists(existing)
        record = SimPayment(
            attempt_id=self._ledger.next_id(),
            payment_hash=target.payment_hash,
            origin=origin,
            destination=target.destination,
            amount_msat=target.amount_msat,
            fee_msat=0,
            status="in_flight",
            failure_reason=None,
            preimage=None,
            hops=(),
            created_at_s=self._now_s(),
            resolved_at_s=None,
            max_fee_msat=max_fee_msat,
            payment_request=target.payment_request,
            is_keysend=target.keysend_preimage is not None,
        )
        self._ledger.add(record)
        self._attempt(record, target)
        current = self._ledger.get(record.attempt_id)
        self._on_update(current)
        return current

    def _invoice_target(
        self, payment_request: str, amount_msat: int | None, payment_hash: str | None
    ) -> _Target:
        try:
            decoded = self._state.invoices.decoded(payment_request) or decode_invoice(
                payment_request
            )
        except InvoiceDecodeError as exc:
            raise InvalidPaymentRequest("invalid_invoice", str(exc)) from exc
        if decoded.network != self._state.network:
            raise InvalidPaymentRequest(
                "wrong_network",
                f"invoice is for {decoded.network}, node is on {self._state.network}",
            )
        if payment_hash is not None and payment_hash != decoded.payment_hash:
            raise InvalidPaymentRequest("hash_mismatch", "payment_hash differs from the invoice's")
        if decoded.amount_msat is None:
            if amount_msat is None or amount_msat <= 0:
                raise InvalidPaymentRequest(
                    "amount_required", "invoice has no amount: amount_msat is required"
                )
            amount = amount_msat
        else:
            if amount_msat is not None and amount_msat != decoded.amount_msat:
                raise InvalidPaymentRequest(
                    "amount_mismatch", "amount_msat differs from the invoice amount"
                )
            amount = decoded.amount_msat
        try:
            destination = self._state.node_by_pubkey(decoded.destination).name
        except UnknownNode:
            destination = decoded.destination
        return _Target(
            payment_hash=decoded.payment_hash,
            destination=destination,
            amount_msat=amount,
            payment_request=decoded.payment_request,
            keysend_preimage=None,
            invoice_created_at_s=decoded.created_at_s,
            invoice_expiry_s=decoded.expiry_s,
            min_final_cltv_expiry=decoded.min_final_cltv_expiry,
        )

    def _keysend_target(
        self,
        origin: str,
        destination: str | None,
        amount_msat: int | None,
        payment_hash: str | None,
        preimage: str | None,
    ) -> _Target:
        if destination is None or amount_msat is None or amount_msat <= 0:
            raise InvalidPaymentRequest(
                "keysend_fields", "keysend needs destination and a positive amount_msat"
            )
        if preimage is None:
            self._keysend_count += 1
            preimage = derive_bytes(self._state.seed, "keysend", origin, self._keysend_count).hex()
        if not _HASH.fullmatch(preimage):
            raise InvalidPaymentRequest("bad_preimage", "preimage must be 32 bytes of hex")
        computed_hash = payment_hash_of(preimage)
        if payment_hash is not None and payment_hash != computed_hash:
            raise InvalidPaymentRequest("hash_mismatch", "sha256(preimage) != payment_hash")
        try:
            name = self._state.resolve_node(destination).name
        except UnknownNode:
            if not _PUBKEY.fullmatch(destination):
                raise
            name = destination  # a well-formed pubkey we have no channel graph for
        return _Target(
            payment_hash=computed_hash,
            destination=name,
            amount_msat=amount_msat,
            payment_request=None,
            keysend_preimage=preimage,
        )

    def _attempt(self, record: SimPayment, target: _Target) -> None:
        state = self._state
        if record.destination not in state.nodes:
            self._fail(record.attempt_id, FailureReason.NO_ROUTE, "unknown destination")
            return
        limits = target.limits
        if record.destination == record.origin and not limits.allow_self_payment:
            self._fail(record.attempt_id, FailureReason.NO_ROUTE, "self-payment")
            return
        if target.payment_request is not None and state.invoices.is_expired_for_sender(
            target.payment_hash, target.invoice_created_at_s, target.invoice_expiry_s
        ):
            self._fail(record.attempt_id, FailureReason.INVOICE_EXPIRED, "invoice expired")
            return
        local_msat = max(
            (
                c.balance_msat[record.origin]
                for c in state.channels_by_node[record.origin]
                if state.is_active(c)
                and (not limits.first_channels or c.channel_id in limits.first_channels)
            ),
            default=0,
        )
        if local_msat < record.amount_msat:
            self._fail(
                record.attempt_id, FailureReason.INSUFFICIENT_LIQUIDITY, DETAIL_LOCAL_BALANCE
            )
            return
        jit = self._jit_of(record, target)
        route_to, route_msat = record.destination, record.amount_msat
        if jit is not None:
            if jit.lsp not in self.intercepts.enabled or jit.lsp == record.origin:
                # lnd without an interceptor (and any node for its own payment) knows no
                # channel by that id: BOLT 4 unknown_next_peer.
                self._fail(record.attempt_id, FailureReason.NO_ROUTE, DETAIL_UNKNOWN_NEXT_PEER)
                return
            if self.intercepts.count(jit.lsp) >= HELD_HTLCS_MAX:
                self._fail(record.attempt_id, FailureReason.NO_ROUTE, "too many held HTLCs")
                return
            route_to = jit.lsp
            route_msat += jit.hint.fee_base_msat + record.amount_msat * jit.hint.fee_ppm // 10**6
        excluded: set[str] = set()
        refusal_reason: FailureReason | None = None
        detail = DETAIL_NO_PATH
        for _ in range(ROUTE_ATTEMPTS_MAX):
            route = find_route(
                channels_by_node=state.channels_by_node,
                origin=record.origin,
                destination=route_to,
                amount_msat=route_msat,
                usable=state.is_active,
                excluded_channels=frozenset(excluded),
                limits=limits,
            )
            if route is None:
                break
            if route.fee_msat > record.max_fee_msat:
                detail = DETAIL_TOO_EXPENSIVE
                break
            refused = self._first_refusing_leg(route)
            if refused is None:
                self._lock(record, route, target.keysend_preimage)
                if jit is not None:
                    self._hold_at_lsp(record, target, jit)
                return
            channel_id, reason = refused
            excluded.add(channel_id)
            refusal_reason = reason or refusal_reason
            detail = f"forwarding failed at channel {channel_id}"
        self._fail(record.attempt_id, refusal_reason or FailureReason.NO_ROUTE, detail)

    def _jit_of(self, record: SimPayment, target: _Target) -> _Jit | None:
        """The LSP to route to when the invoice's route hint names a channel nobody has."""
        if target.payment_request is None:
            return None
        invoice = self._state.invoices.lookup(record.destination, record.payment_hash)
        if invoice is None or invoice.route_hint is None:
            return None
        hint = invoice.route_hint
        if hint.short_channel_id in self._state.channels:
            return None  # an ordinary hinted channel: the route finder uses it
        try:
            lsp = self._state.node_by_pubkey(hint.pubkey).name
        except UnknownNode:
            return None
        return _Jit(lsp=lsp, hint=hint)

    def _hold_at_lsp(self, record: SimPayment, target: _Target, jit: _Jit) -> None:
        flight = self._in_flight[record.attempt_id]
        flight.parked = flight.intercepted = True
        flight.park_deadline_s = None
        last = flight.route.legs[-1]
        height = self._state.block_height
        outgoing_expiry = height + target.min_final_cltv_expiry
        incoming_expiry = outgoing_expiry + jit.hint.cltv_expiry_delta
        htlc = SimInterceptedHtlc(
            node=jit.lsp,
            incoming_channel_id=last.channel_id,
            htlc_id=flight.htlc_ids[-1],
            payment_hash=record.payment_hash,
            incoming_amount_msat=last.amount_msat,
            outgoing_amount_msat=record.amount_msat,
            outgoing_requested_scid=jit.hint.short_channel_id,
            incoming_expiry=incoming_expiry,
            outgoing_expiry=outgoing_expiry,
            auto_fail_height=incoming_expiry - AUTO_FAIL_BLOCKS_BEFORE_EXPIRY,
            peer_pubkey=self._state.nodes[last.sender].pubkey,
            destination=record.destination,
        )
        self._intercepted[(jit.lsp, htlc.circuit_key)] = record.attempt_id
        self.intercepts.hold(htlc)

    def resolve_intercepted(
        self,
        node: str,
        circuit_key: tuple[str, int],
        action: InterceptAction,
        *,
        preimage: str | None = None,
        out_amount_msat: int = 0,
        out_wire_custom_records: dict[int, bytes] | None = None,
        failure_reason: FailureReason = FailureReason.NO_ROUTE,
    ) -> None:
        """Resolve a held HTLC; raises ``InterceptError`` for an unknown circuit or a bad
        resolution (nothing changes then)."""
        held = self.intercepts.held.get(node, {}).get(circuit_key)
        if held is None:
            raise InterceptError(
                "unknown_circuit", f"htlc {circuit_key[0]}:{circuit_key[1]} not found"
            )
        if action == "settle" and (
            preimage is None
            or not _HASH.fullmatch(preimage)
            or payment_hash_of(preimage) != held.payment_hash
        ):
            raise InterceptError("bad_preimage", "preimage does not match the payment hash")
        amount_msat = held.outgoing_amount_msat
        extra_fee_msat = 0
        if action == "resume_modified":
            if out_amount_msat:
                if out_amount_msat > held.outgoing_amount_msat:
                    raise InterceptError("bad_amount", "out_amount_msat above the onion amount")
                amount_msat = out_amount_msat
            raw = (out_wire_custom_records or {}).get(EXTRA_FEE_TLV)
            if raw is not None:
                if len(raw) != 8:
                    raise InterceptError("bad_tlv", "extra_fee must be 8 bytes (bLIP-52)")
                extra_fee_msat = int.from_bytes(raw, "big")
        self.intercepts.release(node, circuit_key)
        flight = self._in_flight[self._intercepted.pop((node, circuit_key))]
        flight.intercepted = False
        if action == "settle":
            assert preimage is not None
            self._finish(flight, preimage, None, "")
        elif action == "fail":
            self._finish(flight, None, failure_reason, "failed by the interceptor")
        else:
            self._forward_held(flight, held, amount_msat, extra_fee_msat)

    def _forward_held(
        self, flight: _InFlight, held: SimInterceptedHtlc, amount_msat: int, extra_fee_msat: int
    ) -> None:
        # Non-strict forwarding (lnd's htlcswitch): any active channel to the next node will
        # do. The simulator knows the next node from the payment; a real LSP binds the jit
        # SCID to the new channel (ADR 0260).
        channels = [
            c
            for c in self._state.channels_by_node[held.node]
            if c.peer_of(held.node) == held.destination
            and self._state.is_active(c)
            and c.can_send(held.node, amount_msat)
        ]
        if not channels:
            self._finish(flight, None, FailureReason.NO_ROUTE, DETAIL_UNKNOWN_NEXT_PEER)
            return
        channel = next((c for c in channels if c.channel_id == held.outgoing_requested_scid), None)
        channel = channel or channels[0]
        self._htlc_ids += 1
        channel.add_htlc(self._htlc_ids, held.node, amount_msat, held.payment_hash)
        leg = Leg(
            channel.channel_id,
            held.node,
            held.destination,
            amount_msat,
            channel.policy[held.node].cltv_delta,
        )
        flight.route = Route(legs=(*flight.route.legs, leg), amount_msat=amount_msat)
        flight.htlc_ids = (*flight.htlc_ids, self._htlc_ids)
        flight.extra_fee_msat = extra_fee_msat
        flight.parked = False
        now_s = self._now_s()
        flight.resolve_at_s = now_s + self._hop_delay_s
        self._reschedule(flight, flight.resolve_at_s)

    def auto_fail_intercepted(self, height: int) -> int:
        """Fail back each held HTLC whose ``auto_fail_height`` the chain reached."""
        failed = 0
        for node, held in list(self.intercepts.held.items()):
            for key, htlc in list(held.items()):
                if htlc.auto_fail_height <= height:
                    self.resolve_intercepted(
                        node, key, "fail", failure_reason=FailureReason.TIMEOUT
                    )
                    failed += 1
        return failed

    def _first_refusing_leg(self, route: Route) -> tuple[str, FailureReason | None] | None:
        """The first channel where the attempt would fail, and the scripted reason if any."""
        for index, leg in enumerate(route.legs):
            rule = self.faults.refusal(channel_id=leg.channel_id)
            if rule is None and index > 0:
                rule = self.faults.refusal(node=leg.sender)
            if rule is not None:
                return leg.channel_id, rule.reason
            channel = self._state.channels[leg.channel_id]
            if not channel.can_send(leg.sender, leg.amount_msat):
                return leg.channel_id, None  # temporary_channel_failure: no liquidity there
        return None

    def _lock(self, record: SimPayment, route: Route, keysend_preimage: str | None) -> None:
        htlc_ids = []
        for leg in route.legs:
            self._htlc_ids += 1
            self._state.channels[leg.channel_id].add_htlc(
                self._htlc_ids, leg.sender, leg.amount_msat, record.payment_hash
            )
            htlc_ids.append(self._htlc_ids)
        now_s = self._now_s()
        nodes = route.nodes()
        flight = _InFlight(
            attempt_id=record.attempt_id,
            route=route,
            htlc_ids=tuple(htlc_ids),
            resolve_at_s=now_s + self._hop_delay_s * len(route.legs) + self.faults.delay_for(nodes),
            keysend_preimage=keysend_preimage,
        )
        drop = self.faults.take_drop(nodes)
        if drop is not None:
            flight.parked = True
            if drop.timeout_s is not None:
                flight.park_deadline_s = now_s + drop.timeout_s
        self._in_flight[record.attempt_id] = flight
        self._ledger.update(
            msgspec.structs.replace(record, fee_msat=route.fee_msat, hops=self._hops(route))
        )
        if not flight.parked:
            self._reschedule(flight, flight.resolve_at_s)
        elif flight.park_deadline_s is not None:
            self._reschedule(flight, flight.park_deadline_s)

    def _hops(self, route: Route) -> tuple[RouteHop, ...]:
        # LND's Hop semantics: the node reached over the channel, what it forwards on, its fee.
        hops = []
        for index, leg in enumerate(route.legs):
            forwarded_msat = (
                route.legs[index + 1].amount_msat
                if index + 1 < len(route.legs)
                else leg.amount_msat
            )
            hops.append(
                RouteHop(
                    pubkey=self._state.nodes[leg.receiver].pubkey,
                    channel_id=leg.channel_id,
                    amount_msat=forwarded_msat,
                    fee_msat=leg.amount_msat - forwarded_msat,
                )
            )
        return tuple(hops)

    # Resolving HTLCs.

    def next_due_s(self) -> float | None:
        while self._schedule:
            due_s, _, attempt_id = self._schedule[0]
            flight = self._in_flight.get(attempt_id)
            if flight is not None and flight.scheduled_s == due_s:
                return due_s
            heapq.heappop(self._schedule)  # stale entry
        return None

    def run_due(self) -> int:
        """Resolve every HTLC due by now; returns how many payments reached a final state."""
        resolved = 0
        now_s = self._now_s()
        while (due_s := self.next_due_s()) is not None and due_s <= now_s:
            _, _, attempt_id = heapq.heappop(self._schedule)
            flight = self._in_flight[attempt_id]
            flight.scheduled_s = -1.0  # no longer scheduled until someone reschedules it
            resolved += self._resolve(flight, now_s)
        return resolved

    def _resolve(self, flight: _InFlight, now_s: float) -> int:
        if flight.parked:
            if flight.park_deadline_s is not None and now_s >= flight.park_deadline_s:
                self._finish(flight, None, FailureReason.TIMEOUT, DETAIL_HTLC_TIMEOUT)
                return 1
            return 0
        if any(not self._state.is_online(n) for n in flight.route.nodes()):
            return 0  # stuck until the node is back: set_node_online reschedules it
        record = self._ledger.get(flight.attempt_id)
        preimage, reason, detail = self._destination_verdict(record, flight)
        if detail == _HOLD:
            flight.parked = flight.held = True
            return 0
        self._finish(flight, preimage, reason, detail)
        return 1

    def _destination_verdict(
        self, record: SimPayment, flight: _InFlight
    ) -> tuple[str | None, FailureReason | None, str]:
        """What the payee does with the HTLC: (preimage, None, "") or (None, reason, detail)."""
        invoices = self._state.invoices
        payee = record.destination
        rule = self.faults.refusal(node=payee)
        if rule is not None:
            return None, rule.reason, "destination refused the HTLC"
        invoice = invoices.lookup(payee, record.payment_hash)
        if flight.keysend_preimage is not None:
            if invoice is not None:
                if invoice.state == "settled":
                    return None, FailureReason.ALREADY_PAID, DETAIL_ALREADY_SETTLED
                return None, FailureReason.INCORRECT_DETAILS, "hash belongs to an invoice"
            invoices.add_keysend(
                payee=payee, preimage=flight.keysend_preimage, amount_msat=record.amount_msat
            )
            return flight.keysend_preimage, None, ""
        if invoice is None:
            return None, FailureReason.INCORRECT_DETAILS, DETAIL_UNKNOWN_INVOICE
        if invoice.state == "settled":
            return None, FailureReason.ALREADY_PAID, DETAIL_ALREADY_SETTLED
        if invoice.state == "expired":
            return None, FailureReason.INVOICE_EXPIRED, "invoice expired at the payee"
        if invoice.state == "canceled":
            return None, FailureReason.INCORRECT_DETAILS, DETAIL_INVOICE_CANCELED
        if invoice.state == "accepted":
            return None, FailureReason.INCORRECT_DETAILS, "invoice already accepted"
        if invoice.amount_msat is not None and not (
            invoice.amount_msat <= record.amount_msat <= OVERPAY_FACTOR_MAX * invoice.amount_msat
        ):
            return None, FailureReason.INCORRECT_DETAILS, "amount does not match the invoice"
        # bLIP-52 section 5: a JIT payee accepts an HTLC short of the onion's amount by exactly
        # its extra_fee TLV, up to the opening fee it agreed to.
        received_msat = flight.route.amount_msat
        shortfall_msat = record.amount_msat - received_msat
        if shortfall_msat and not (
            shortfall_msat == flight.extra_fee_msat <= invoice.jit_fee_max_msat
        ):
            return None, FailureReason.INCORRECT_DETAILS, "amount does not match the invoice"
        if invoice.is_hold:
            invoices.accept(payee, record.payment_hash, received_msat)
            return None, None, _HOLD
        invoices.settle(payee, record.payment_hash, received_msat)
        return invoice.preimage, None, ""

    def settle_held(self, payee: str, preimage: str) -> None:
        """Settle ``payee``'s accepted hold invoice: its held HTLC pays with the preimage."""
        settled = self._state.invoices.settle_held(payee, preimage)
        for flight in self._held(payee, settled.payment_hash):
            self._finish(flight, preimage, None, "")

    def cancel_invoice(self, payee: str, payment_hash: str) -> None:
        """Cancel ``payee``'s open or accepted invoice: a held HTLC fails back."""
        self._state.invoices.cancel(payee, payment_hash)
        for flight in self._held(payee, payment_hash):
            self._finish(flight, None, FailureReason.INCORRECT_DETAILS, DETAIL_INVOICE_CANCELED)

    def _held(self, payee: str, payment_hash: str) -> list[_InFlight]:
        return [
            flight
            for flight in self._in_flight.values()
            if flight.held
            and (record := self._ledger.get(flight.attempt_id)).destination == payee
            and record.payment_hash == payment_hash
        ]

    def _finish(
        self, flight: _InFlight, preimage: str | None, reason: FailureReason | None, detail: str
    ) -> None:
        del self._in_flight[flight.attempt_id]
        record = self._ledger.get(flight.attempt_id)
        for leg, htlc_id in zip(flight.route.legs, flight.htlc_ids, strict=True):
            channel = self._state.channels[leg.channel_id]
            if preimage is not None:
                channel.settle_htlc(htlc_id)
            else:
                channel.fail_htlc(htlc_id)
        if preimage is not None:
            # The sender accepts a preimage only if it hashes to the payment hash.
            assert payment_hash_of(preimage) == record.payment_hash, record.payment_hash
            updated = msgspec.structs.replace(
                record, status="succeeded", preimage=preimage, resolved_at_s=self._now_s()
            )
        else:
            assert reason is not None
            updated = msgspec.structs.replace(
                record,
                status="failed",
                failure_reason=reason,
                failure_detail=detail,
                resolved_at_s=self._now_s(),
            )
        self._ledger.update(updated)
        self._on_update(updated)

    def _fail(self, attempt_id: int, reason: FailureReason, detail: str) -> None:
        """Fail an attempt that never locked an HTLC (reported by ``start``'s caller)."""
        record = self._ledger.get(attempt_id)
        self._ledger.update(
            msgspec.structs.replace(
                record,
                status="failed",
                failure_reason=reason,
                failure_detail=detail,
                resolved_at_s=self._now_s(),
            )
        )

    def _reschedule(self, flight: _InFlight, due_s: float) -> None:
        self._sequence += 1
        flight.scheduled_s = due_s
        heapq.heappush(self._schedule, (due_s, self._sequence, flight.attempt_id))
        self._on_schedule()

    def in_flight_count(self) -> int:
        return len(self._in_flight)

    # FaultHost: what SimFaults asks of the engine.

    def require_node(self, name: str) -> None:
        self._state.node(name)

    def require_channel(self, channel_id: str) -> None:
        self._state.channel(channel_id)

    def offline_nodes(self) -> list[str]:
        return sorted(self._state.offline)

    def set_node_online(self, name: str, online: bool) -> None:
        was_online = self._state.is_online(name)
        if online:
            self._state.offline.discard(name)
            now_s = self._now_s()
            for flight in self._in_flight.values():
                if not flight.parked and flight.scheduled_s < 0:
                    self._reschedule(flight, max(now_s, flight.resolve_at_s))
        else:
            self._state.offline.add(name)
        if was_online != online:
            for listener in list(self.node_listeners):
                listener(name, online)

    def drain_channel(self, channel_id: str, toward: str) -> None:
        self._state.channel(channel_id).drain_toward(toward)

    def release_dropped(self) -> int:
        released = 0
        now_s = self._now_s()
        for flight in self._in_flight.values():
            if flight.parked and not flight.held and not flight.intercepted:
                flight.parked = False
                flight.park_deadline_s = None
                self._reschedule(flight, max(now_s, flight.resolve_at_s))
                released += 1
        return released

    def expire_invoice(self, payment_hash: str) -> int:
        return self._state.invoices.force_expire(payment_hash)
