"""Invoices held by payee nodes: creation (with a caller-chosen preimage if given), lookup with
expiry, settlement in pay-index order, and a listener told of each settlement."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from services.bolt11.codec import (
    CURRENCY_TO_NETWORK,
    DEFAULT_MIN_FINAL_CLTV_EXPIRY,
    encode_invoice,
    payment_hash_of,
)
from services.lightning.port import DecodedInvoice
from services.sim.errors import InvoiceExists, InvoiceNotOpen
from services.sim.keys import derive_bytes
from services.sim.records import InvoiceState, SimInvoice, SimRouteHint

# A node refuses absurd expiries instead of storing them (LND caps at one year).
INVOICE_EXPIRY_S_MAX = 365 * 24 * 3600
_PREIMAGE = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class _InvoiceState:
    record: SimInvoice
    forced_expired: bool = False


class InvoiceBook:
    """All invoices of all nodes, keyed by (payee, payment hash)."""

    def __init__(self, *, seed: int, network: str, now_s: Callable[[], float]) -> None:
        self._seed = seed
        self._network = network
        self._now_s = now_s
        self._invoices: dict[tuple[str, str], _InvoiceState] = {}
        self._count_by_payee: dict[str, int] = {}
        self._paid_by_payee: dict[str, int] = {}
        # Told of every new invoice and every change of state (SimNetwork feeds its invoice
        # subscriptions from it); an expiry is no event, it is read from the clock.
        self.on_change: Callable[[SimInvoice], None] | None = None
        self._forced_expired_hashes: set[str] = set()
        # What decoding our own invoices would give; saves the (slow) package decode per payment.
        self._decoded: dict[str, DecodedInvoice] = {}
        assert network in CURRENCY_TO_NETWORK.values(), network

    def create(
        self,
        *,
        payee: str,
        payee_pubkey: str,
        privkey: bytes,
        amount_msat: int | None,
        memo: str,
        expiry_s: int,
        preimage: str | None = None,
        hold_hash: str | None = None,
        route_hint: SimRouteHint | None = None,
        jit_fee_max_msat: int = 0,
    ) -> SimInvoice:
        """A new open invoice; raises ``ValueError`` for bad arguments and ``InvoiceExists``
        when ``preimage`` (the caller's, hex) hashes to an invoice the payee already has.

        With ``hold_hash`` it is a hold invoice for that hash, whose preimage only the caller
        knows until it settles the invoice.
        """
        assert preimage is None or hold_hash is None, "a hold invoice has no preimage yet"
        if hold_hash is not None:
            if not _PREIMAGE.fullmatch(hold_hash):
                raise ValueError("payment hash must be 32 bytes of lower-case hex")
            if (payee, hold_hash) in self._invoices:
                raise InvoiceExists(payee, hold_hash)
        if amount_msat is not None and amount_msat <= 0:
            raise ValueError("amount_msat must be positive or None")
        if not 0 < expiry_s <= INVOICE_EXPIRY_S_MAX:
            raise ValueError(f"expiry_s must be in (0, {INVOICE_EXPIRY_S_MAX}]")
        if preimage is not None:
            if not _PREIMAGE.fullmatch(preimage):
                raise ValueError("preimage must be 32 bytes of lower-case hex")
            if (payee, payment_hash_of(preimage)) in self._invoices:
                raise InvoiceExists(payee, payment_hash_of(preimage))
        index = self._count_by_payee.get(payee, 0) + 1
        self._count_by_payee[payee] = index
        if preimage is None and hold_hash is None:
            preimage = derive_bytes(self._seed, "preimage", payee, index).hex()
        payment_secret = derive_bytes(self._seed, "payment-secret", payee, index).hex()
        payment_hash = hold_hash if preimage is None else payment_hash_of(preimage)
        assert payment_hash is not None
        created_at_s = int(self._now_s())
        # bLIP-52 section 3: a JIT invoice asks for 2 more blocks than the payee will check.
        min_final = DEFAULT_MIN_FINAL_CLTV_EXPIRY + (2 if route_hint is not None else 0)
        bolt11 = encode_invoice(
            privkey=privkey,
            network=self._network,
            payment_hash=payment_hash,
            payment_secret=payment_secret,
            amount_msat=amount_msat,
            description=memo,
            created_at_s=created_at_s,
            expiry_s=expiry_s,
            min_final_cltv_expiry=min_final,
            route_hint=None
            if route_hint is None
            else (
                route_hint.pubkey,
                route_hint.short_channel_id,
                route_hint.fee_base_msat,
                route_hint.fee_ppm,
                route_hint.cltv_expiry_delta,
            ),
        )
        record = SimInvoice(
            bolt11=bolt11,
            payment_hash=payment_hash,
            preimage=preimage or "",
            payment_secret=payment_secret,
            amount_msat=amount_msat,
            memo=memo,
            created_at_s=created_at_s,
            expiry_s=expiry_s,
            payee=payee,
            state="open",
            add_index=index,
            is_hold=hold_hash is not None,
            route_hint=route_hint,
            jit_fee_max_msat=jit_fee_max_msat,
        )
        self._invoices[(payee, payment_hash)] = _InvoiceState(record)
        self._decoded[bolt11] = DecodedInvoice(
            payment_request=bolt11,
            payment_hash=payment_hash,
            destination=payee_pubkey,
            amount_msat=amount_msat,
            network=self._network,
            created_at_s=created_at_s,
            expiry_s=expiry_s,
            description=memo,
            min_final_cltv_expiry=min_final,
        )
        self._changed(record)
        return record

    def decoded(self, bolt11: str) -> DecodedInvoice | None:
        """The decoding of an invoice this network created, without decoding it again."""
        return self._decoded.get(bolt11.strip())

    def add_keysend(self, *, payee: str, preimage: str, amount_msat: int) -> SimInvoice:
        """Record a received keysend as a settled invoice, like LND does."""
        index = self._count_by_payee.get(payee, 0) + 1
        self._count_by_payee[payee] = index
        now_s = int(self._now_s())
        record = SimInvoice(
            bolt11=None,
            payment_hash=payment_hash_of(preimage),
            preimage=preimage,
            payment_secret="",
            amount_msat=amount_msat,
            memo="keysend",
            created_at_s=now_s,
            expiry_s=86400,
            payee=payee,
            state="settled",
            add_index=index,
            amount_received_msat=amount_msat,
            settled_at_s=now_s,
            is_keysend=True,
            pay_index=self._next_pay_index(payee),
        )
        self._invoices[(payee, record.payment_hash)] = _InvoiceState(record)
        self._changed(record)
        return record

    def lookup(self, payee: str, payment_hash: str) -> SimInvoice | None:
        state = self._invoices.get((payee, payment_hash))
        if state is None:
            return None
        return msgspec.structs.replace(state.record, state=self._state_of(state))

    def of_payee(self, payee: str) -> list[SimInvoice]:
        found = [s for (p, _), s in self._invoices.items() if p == payee]
        return [msgspec.structs.replace(s.record, state=self._state_of(s)) for s in found]

    def settled_after(self, payee: str, after_pay_index: int) -> list[SimInvoice]:
        """The payee's settled invoices with a pay index above ``after_pay_index``, in order."""
        found = [
            s.record
            for (p, _), s in self._invoices.items()
            if p == payee and s.record.pay_index > after_pay_index
        ]
        return sorted(found, key=lambda record: record.pay_index)

    def settle(self, payee: str, payment_hash: str, amount_msat: int) -> None:
        state = self._invoices[(payee, payment_hash)]
        assert self._state_of(state) == "open", (payee, payment_hash)
        state.record = msgspec.structs.replace(
            state.record,
            state="settled",
            amount_received_msat=amount_msat,
            settled_at_s=int(self._now_s()),
            pay_index=self._next_pay_index(payee),
        )
        self._changed(state.record)

    def accept(self, payee: str, payment_hash: str, amount_msat: int) -> None:
        """A hold invoice's HTLC arrived and is held: the invoice is ACCEPTED, not paid."""
        state = self._invoices[(payee, payment_hash)]
        assert state.record.is_hold and self._state_of(state) == "open", (payee, payment_hash)
        state.record = msgspec.structs.replace(
            state.record, state="accepted", amount_received_msat=amount_msat
        )
        self._changed(state.record)

    def settle_held(self, payee: str, preimage: str) -> SimInvoice:
        """Settle an accepted hold invoice with its preimage; raises ``KeyError`` if the payee
        has no invoice for the preimage's hash, ``InvoiceNotOpen`` unless it is accepted."""
        payment_hash = payment_hash_of(preimage)
        state = self._invoices[(payee, payment_hash)]
        current = self._state_of(state)
        if current != "accepted":
            raise InvoiceNotOpen(payment_hash, current)
        state.record = msgspec.structs.replace(
            state.record,
            state="settled",
            preimage=preimage,
            settled_at_s=int(self._now_s()),
            pay_index=self._next_pay_index(payee),
        )
        self._changed(state.record)
        return state.record

    def cancel(self, payee: str, payment_hash: str) -> SimInvoice:
        """Cancel an open or accepted invoice (its held HTLC fails back); cancelling twice is
        allowed. Raises ``KeyError`` for an unknown hash, ``InvoiceNotOpen`` if settled."""
        state = self._invoices[(payee, payment_hash)]
        current = self._state_of(state)
        if current == "settled":
            raise InvoiceNotOpen(payment_hash, current)
        if state.record.state != "canceled":
            state.record = msgspec.structs.replace(
                state.record, state="canceled", amount_received_msat=0
            )
            self._changed(state.record)
        return state.record

    def _next_pay_index(self, payee: str) -> int:
        index = self._paid_by_payee.get(payee, 0) + 1
        self._paid_by_payee[payee] = index
        return index

    def _changed(self, record: SimInvoice) -> None:
        if self.on_change is not None:
            self.on_change(record)

    def force_expire(self, payment_hash: str) -> int:
        """Expire every open invoice with this hash; returns how many were touched."""
        touched = 0
        for (_, h), state in self._invoices.items():
            if h == payment_hash and state.record.state == "open":
                state.forced_expired = True
                touched += 1
        if touched:
            self._forced_expired_hashes.add(payment_hash)
        return touched

    def is_expired_for_sender(self, payment_hash: str, created_at_s: int, expiry_s: int) -> bool:
        """What a sender sees: the clock passed the expiry, or the sim fast-forwarded it."""
        if self._now_s() > created_at_s + expiry_s:
            return True
        return payment_hash in self._forced_expired_hashes

    def _state_of(self, state: _InvoiceState) -> InvoiceState:
        record = state.record
        if record.state != "open":
            return record.state
        if state.forced_expired or self._now_s() > record.created_at_s + record.expiry_s:
            return "expired"
        return "open"
