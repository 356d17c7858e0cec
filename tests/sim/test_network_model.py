"""The synchronous network model driven by a manual clock."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.lightning.port import FailureReason
from services.sim.errors import (
    InvalidPaymentRequest,
    NodeOffline,
    PaymentExists,
    TopologyError,
    UnknownChannel,
    UnknownNode,
)
from services.sim.network import SimNetwork
from services.sim.topology import default_topology, load_topology
from tests.sim.helpers import channel_between, diamond_topology, manual_network

FEE_MAX_MSAT = 50_000


def test_same_seed_same_keys_channels_and_invoices() -> None:
    first, _ = manual_network(seed=42)
    second, _ = manual_network(seed=42)
    other, _ = manual_network(seed=43)
    assert [n.pubkey for n in first.nodes.values()] == [n.pubkey for n in second.nodes.values()]
    assert first.channel_ids() == second.channel_ids()
    assert (
        first.create_invoice("bob", 1000, "m", 60).bolt11
        == second.create_invoice("bob", 1000, "m", 60).bolt11
    )
    assert first.node("bob").pubkey != other.node("bob").pubkey


def test_default_topology_shape() -> None:
    network = SimNetwork.from_topology(default_topology(), seed=1)
    ours = [n for n in network.nodes.values() if n.role == "ours"]
    merchants = [n for n in network.nodes.values() if n.role == "merchant"]
    assert sorted(n.name for n in ours) == sorted(
        f"{r}-{i}" for r in ("us", "eu", "asia") for i in ("lnd", "cln")
    )
    assert len(merchants) == 20
    assert {n.implementation for n in merchants} == {"lnd", "cln"}
    assert {n.region for n in merchants} == {"us", "eu", "asia"}
    for node in ours:
        assert all(
            50_000_000_000 <= c.capacity_msat <= 100_000_000_000
            for c in network.channels_of(node.name)
        )
    assert network.network == "regtest"
    network.check_invariants()


def test_invoice_payment_takes_cheapest_route_and_moves_liquidity() -> None:
    network, _ = manual_network()
    invoice = network.create_invoice("bob", 1_000_000, "coffee", 3600)
    assert network.decode(invoice.bolt11).destination == network.node("bob").pubkey
    before = {c.channel_id: c for c in network.channels_of("alice")}
    payment = network.start_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.status == "in_flight"
    first_hop = payment.hops[0].channel_id
    assert first_hop == channel_between(network, "alice", "hub1")  # the cheaper hub
    # Fee of hub1 on 1_000_000 msat: 1000 base + 100 ppm.
    assert payment.fee_msat == 1000 + 100
    sent_msat = 1_000_000 + payment.fee_msat
    held = {c.channel_id: c for c in network.channels_of("alice")}[first_hop]
    assert held.local_balance_msat == before[first_hop].local_balance_msat - sent_msat
    assert held.remote_balance_msat == before[first_hop].remote_balance_msat  # not yet settled
    network.check_invariants()

    assert network.run_due() == 1
    done = network.get_payment("alice", invoice.payment_hash)
    assert done is not None and done.status == "succeeded"
    assert done.preimage is not None
    assert hashlib.sha256(bytes.fromhex(done.preimage)).hexdigest() == invoice.payment_hash
    after = {c.channel_id: c for c in network.channels_of("alice")}[first_hop]
    assert after.remote_balance_msat == before[first_hop].remote_balance_msat + sent_msat
    assert network.lookup_invoice("bob", invoice.payment_hash).state == "settled"  # type: ignore[union-attr]
    assert sum(h.fee_msat for h in done.hops) == done.fee_msat
    network.check_invariants()


def test_hop_delay_keeps_htlc_in_flight_until_clock_passes() -> None:
    network, clock = manual_network(hop_delay_s=0.5)
    invoice = network.create_invoice("bob", 5000, "", 3600)
    network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    assert network.next_due_s() == clock() + 1.0  # two hops
    clock.advance(0.9)
    assert network.run_due() == 0
    clock.advance(0.1)
    assert network.run_due() == 1


def test_keysend_with_caller_preimage() -> None:
    network, _ = manual_network()
    preimage = "ab" * 32
    payment_hash = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
    payment = network.start_payment(
        "alice",
        destination=network.node("carol").pubkey,
        amount_msat=2000,
        payment_hash=payment_hash,
        preimage=preimage,
        max_fee_msat=FEE_MAX_MSAT,
    )
    assert payment.payment_hash == payment_hash and payment.destination == "carol"
    network.run_due()
    done = network.get_payment("alice", payment_hash)
    assert done is not None and done.status == "succeeded" and done.preimage == preimage
    receipt = network.lookup_invoice("carol", payment_hash)
    assert receipt is not None and receipt.is_keysend and receipt.amount_received_msat == 2000
    with pytest.raises(InvalidPaymentRequest):
        network.start_payment(
            "alice",
            destination="carol",
            amount_msat=2000,
            payment_hash="00" * 32,
            preimage=preimage,
            max_fee_msat=FEE_MAX_MSAT,
        )


def test_one_live_attempt_per_origin_and_hash_but_failed_may_retry() -> None:
    network, _ = manual_network()
    invoice = network.create_invoice("bob", 1000, "", 3600)
    network.faults.fail_route(node="bob", reason=FailureReason.UNKNOWN)
    first = network.start_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    with pytest.raises(PaymentExists) as info:
        network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    assert info.value.existing.attempt_id == first.attempt_id
    network.run_due()
    failed = network.get_payment("alice", invoice.payment_hash)
    assert failed is not None and failed.failure_reason is FailureReason.UNKNOWN
    network.faults.clear()
    retry = network.start_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    network.run_due()
    with pytest.raises(PaymentExists) as info:
        network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    assert info.value.existing.status == "succeeded"
    assert [p.attempt_id for p in network.payments_of("alice", invoice.payment_hash)] == [
        first.attempt_id,
        retry.attempt_id,
    ]
    network.check_invariants()


def test_second_payer_of_a_settled_invoice_fails_already_paid() -> None:
    network, _ = manual_network()
    invoice = network.create_invoice("bob", 1000, "", 3600)
    network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    network.run_due()
    network.start_payment("carol", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    network.run_due()
    second = network.get_payment("carol", invoice.payment_hash)
    assert second is not None and second.failure_reason is FailureReason.ALREADY_PAID
    assert [p.status for p in network.payments()] == ["succeeded", "failed"]
    network.check_invariants()


def test_failure_reasons_at_start() -> None:
    network, _ = manual_network(diamond_topology(capacity_msat=1_000_000))
    big = network.create_invoice("bob", 900_000, "", 3600)
    # Each of alice's channels holds half the capacity: 500_000 msat.
    payment = network.start_payment("alice", payment_request=big.bolt11, max_fee_msat=FEE_MAX_MSAT)
    assert payment.failure_reason is FailureReason.INSUFFICIENT_LIQUIDITY
    small = network.create_invoice("bob", 1000, "", 3600)
    payment = network.start_payment("alice", payment_request=small.bolt11, max_fee_msat=10)
    assert payment.failure_reason is FailureReason.NO_ROUTE
    assert payment.failure_detail == "route too expensive"
    network.faults.set_offline("hub1")
    network.faults.set_offline("hub2")
    other = network.create_invoice("bob", 1000, "", 3600)
    payment = network.start_payment(
        "alice", payment_request=other.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.failure_reason is FailureReason.INSUFFICIENT_LIQUIDITY  # no active channel
    network.faults.set_offline("hub1", offline=False)
    network.faults.set_offline("hub2", offline=False)
    network.faults.set_offline("bob")
    third = network.create_invoice("carol", 1000, "", 3600)
    network.faults.set_offline("carol")
    payment = network.start_payment(
        "alice", payment_request=third.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.failure_reason is FailureReason.NO_ROUTE
    network.check_invariants()


def test_expired_invoice_fails_for_the_sender() -> None:
    network, clock = manual_network()
    short = network.create_invoice("bob", 1000, "", 10)
    clock.advance(11)
    payment = network.start_payment(
        "alice", payment_request=short.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.failure_reason is FailureReason.INVOICE_EXPIRED
    scripted = network.create_invoice("bob", 1000, "", 3600)
    network.faults.expire_invoice(scripted.payment_hash)
    assert network.lookup_invoice("bob", scripted.payment_hash).state == "expired"  # type: ignore[union-attr]
    payment = network.start_payment(
        "alice", payment_request=scripted.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.failure_reason is FailureReason.INVOICE_EXPIRED


def test_wrong_invoice_parameters_are_rejected() -> None:
    network, _ = manual_network()
    open_amount = network.create_invoice("bob", None, "", 3600)
    with pytest.raises(InvalidPaymentRequest) as info:
        network.start_payment("alice", payment_request=open_amount.bolt11, max_fee_msat=1)
    assert info.value.code == "amount_required"
    fixed = network.create_invoice("bob", 1000, "", 3600)
    with pytest.raises(InvalidPaymentRequest) as info:
        network.start_payment("alice", payment_request=fixed.bolt11, amount_msat=5, max_fee_msat=1)
    assert info.value.code == "amount_mismatch"
    with pytest.raises(InvalidPaymentRequest):
        network.start_payment("alice", payment_request="lnbc1garbage", max_fee_msat=1)
    with pytest.raises(UnknownNode):
        network.start_payment("nobody", payment_request=fixed.bolt11, max_fee_msat=1)
    assert network.payments() == []


def test_intermediate_without_liquidity_is_routed_around() -> None:
    network, _ = manual_network()
    network.faults.drain_channel(channel_between(network, "hub1", "bob"), toward="bob")
    invoice = network.create_invoice("bob", 1000, "", 3600)
    payment = network.start_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.hops[0].channel_id == channel_between(network, "alice", "hub2")
    network.run_due()
    assert network.get_payment("alice", invoice.payment_hash).status == "succeeded"  # type: ignore[union-attr]


def test_fail_route_routes_around_or_fails_with_the_scripted_reason() -> None:
    network, _ = manual_network()
    network.faults.fail_route(node="hub1", reason=FailureReason.TIMEOUT)
    invoice = network.create_invoice("bob", 1000, "", 3600)
    payment = network.start_payment(
        "alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.status == "in_flight"
    assert payment.hops[0].channel_id == channel_between(network, "alice", "hub2")
    to_carol = network.create_invoice("carol", 1000, "", 3600)  # only reachable through hub1
    payment = network.start_payment(
        "alice", payment_request=to_carol.bolt11, max_fee_msat=FEE_MAX_MSAT
    )
    assert payment.failure_reason is FailureReason.TIMEOUT


def test_offline_origin_refuses_and_offline_hop_parks_the_htlc() -> None:
    network, _ = manual_network()
    invoice = network.create_invoice("bob", 1000, "", 3600)
    network.faults.set_offline("alice")
    with pytest.raises(NodeOffline):
        network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    with pytest.raises(NodeOffline):
        network.create_invoice("alice", 1, "", 60)
    network.faults.set_offline("alice", offline=False)
    network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    network.faults.set_offline("alice")  # goes down with the HTLC out
    assert network.run_due() == 0
    assert network.get_payment("alice", invoice.payment_hash).status == "in_flight"  # type: ignore[union-attr]
    network.faults.set_offline("alice", offline=False)
    assert network.run_due() == 1
    assert network.get_payment("alice", invoice.payment_hash).status == "succeeded"  # type: ignore[union-attr]


def test_drop_release_and_drop_timeout() -> None:
    network, clock = manual_network()
    network.faults.drop_resolution(count=1)
    held = network.create_invoice("bob", 1000, "", 3600)
    network.start_payment("alice", payment_request=held.bolt11, max_fee_msat=FEE_MAX_MSAT)
    clock.advance(100)
    assert network.run_due() == 0
    assert network.faults.release_dropped() == 1
    assert network.run_due() == 1
    network.faults.drop_resolution(node="bob", timeout_s=30)
    timed = network.create_invoice("bob", 1000, "", 3600)
    network.start_payment("alice", payment_request=timed.bolt11, max_fee_msat=FEE_MAX_MSAT)
    clock.advance(29)
    assert network.run_due() == 0
    clock.advance(1)
    assert network.run_due() == 1
    payment = network.get_payment("alice", timed.payment_hash)
    assert payment is not None and payment.failure_reason is FailureReason.TIMEOUT
    assert network.lookup_invoice("bob", timed.payment_hash).state == "open"  # type: ignore[union-attr]
    network.check_invariants()


def test_delay_resolution_applies_to_routes_through_the_node() -> None:
    network, clock = manual_network()
    network.faults.delay_resolution(5.0, node="hub1")
    invoice = network.create_invoice("carol", 1000, "", 3600)
    network.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=FEE_MAX_MSAT)
    assert network.next_due_s() == clock() + 5.0


def test_fault_arguments_are_checked() -> None:
    network, _ = manual_network()
    with pytest.raises(UnknownNode):
        network.faults.set_offline("nobody")
    with pytest.raises(UnknownChannel):
        network.faults.drain_channel("1x1x1", toward="alice")
    with pytest.raises(ValueError):
        network.faults.fail_route()
    with pytest.raises(ValueError):
        network.faults.delay_resolution(-1)
    with pytest.raises(KeyError):
        network.faults.expire_invoice("00" * 32)
    network.faults.slow_node("alice", 0.25)
    assert network.faults.latency_for("alice") == 0.25
    network.faults.clear()
    assert network.faults.latency_for("alice") == 0.0


def test_topology_files(tmp_path: Path) -> None:
    good = tmp_path / "t.yaml"
    good.write_text(
        "nodes:\n"
        "  - {name: a, role: ours, implementation: cln, region: us}\n"
        "  - {name: b, role: merchant}\n"
        "channels:\n"
        "  - {a: a, b: b, capacity_msat: 1000000, a_balance_msat: 600000}\n"
    )
    topology = load_topology(good)
    network = SimNetwork.from_topology(topology, seed=3)
    assert network.channels_of("a")[0].local_balance_msat == 600_000
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"nodes": [{"name": "a", "role": "ours"}],'
        ' "channels": [{"a": "a", "b": "zz", "capacity_msat": 5}]}'
    )
    with pytest.raises(TopologyError, match="unknown node"):
        load_topology(bad)
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("nodes: []\nchannels: []\nnetwrk: regtest\n")
    with pytest.raises(TopologyError, match="invalid topology"):
        load_topology(typo)


def test_shipped_example_topology_loads() -> None:
    path = Path(__file__).parents[2] / "services" / "sim" / "topologies" / "small.yaml"
    SimNetwork.from_topology(load_topology(path), seed=1).check_invariants()
