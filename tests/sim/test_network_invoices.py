"""The invoice book on a clock-stepped network (no driver): chosen preimages, the pay index in
settlement order, hold invoices held until settled or cancelled, and expiry by the clock."""

from __future__ import annotations

import hashlib

import pytest

from services.sim.errors import InvoiceExists, InvoiceNotOpen
from services.sim.network import SimNetwork
from tests.sim.helpers import diamond_topology

FEE_MSAT = 10_000


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now_s


def network_with(clock: Clock) -> SimNetwork:
    return SimNetwork.from_topology(diamond_topology(), seed=9, now_s=clock)


def pay(network: SimNetwork, bolt11: str | None) -> str:
    started = network.start_payment("alice", payment_request=bolt11, max_fee_msat=FEE_MSAT)
    network.run_due()
    return started.payment_hash


def test_pay_index_follows_settlement_order_and_preimages_can_be_chosen() -> None:
    network = network_with(Clock())
    preimage = hashlib.sha256(b"chosen").hexdigest()
    chosen = network.create_invoice("bob", 1000, "a", 600, preimage=preimage)
    assert chosen.payment_hash == hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    with pytest.raises(InvoiceExists):
        network.create_invoice("bob", 5, "again", 600, preimage=preimage)
    other = network.create_invoice("bob", 2000, "b", 600)
    pay(network, other.bolt11)
    pay(network, chosen.bolt11)
    settled = network.settled_invoices("bob")
    assert [(i.payment_hash, i.pay_index) for i in settled] == [
        (other.payment_hash, 1),
        (chosen.payment_hash, 2),
    ]
    assert settled[1].preimage == preimage
    assert network.settled_invoices("bob", after_pay_index=1) == settled[1:]
    network.check_invariants()


def test_a_hold_invoice_holds_its_htlc_until_settled() -> None:
    network = network_with(Clock())
    preimage = hashlib.sha256(b"hold").hexdigest()
    payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    held = network.create_hold_invoice("bob", payment_hash, 3000, "hold", 600)
    with pytest.raises(InvoiceNotOpen):
        network.settle_invoice("bob", preimage)  # no HTLC yet: "invoice still open"
    pay(network, held.bolt11)
    assert network.get_payment("alice", payment_hash).status == "in_flight"  # type: ignore[union-attr]
    invoice = network.lookup_invoice("bob", payment_hash)
    assert invoice is not None and invoice.state == "accepted"
    assert invoice.amount_received_msat == 3000 and invoice.pay_index == 0
    assert network.faults.release_dropped() == 0  # a held HTLC is no dropped one
    network.settle_invoice("bob", preimage)
    paid = network.get_payment("alice", payment_hash)
    assert paid is not None and paid.status == "succeeded" and paid.preimage == preimage
    invoice = network.lookup_invoice("bob", payment_hash)
    assert invoice is not None and invoice.state == "settled" and invoice.pay_index == 1
    with pytest.raises(InvoiceNotOpen):
        network.cancel_invoice("bob", payment_hash)
    network.check_invariants()


def test_cancelling_a_hold_invoice_fails_the_held_htlc_and_restores_balances() -> None:
    network = network_with(Clock())
    before = {c.channel_id: c.local_balance_msat for c in network.channels_of("alice")}
    payment_hash = hashlib.sha256(b"cancel").hexdigest()
    held = network.create_hold_invoice("bob", payment_hash, 4000, "hold", 600)
    pay(network, held.bolt11)
    network.cancel_invoice("bob", payment_hash)
    network.cancel_invoice("bob", payment_hash)  # again: no error, as lnd
    failed = network.get_payment("alice", payment_hash)
    assert failed is not None and failed.status == "failed"
    assert {c.channel_id: c.local_balance_msat for c in network.channels_of("alice")} == before
    invoice = network.lookup_invoice("bob", payment_hash)
    assert invoice is not None and invoice.state == "canceled"
    assert network.settled_invoices("bob") == []
    network.check_invariants()


def test_an_invoice_expires_by_the_clock() -> None:
    clock = Clock()
    network = network_with(clock)
    invoice = network.create_invoice("bob", 1000, "soon", 60)
    clock.now_s += 61
    stored = network.lookup_invoice("bob", invoice.payment_hash)
    assert stored is not None and stored.state == "expired"
    payment_hash = pay(network, invoice.bolt11)
    failed = network.get_payment("alice", payment_hash)
    assert failed is not None and failed.status == "failed"
