"""HTLC interception at a simulated LSP (interception.py): a payment to a payee with no
channel, through an invoice route hint naming a jit SCID, is held at the LSP until its client
resolves it; a zero-conf channel then carries it on, less the opening fee."""

from __future__ import annotations

import pytest

from services.lightning.port import FailureReason
from services.sim.interception import EXTRA_FEE_TLV, InterceptError
from services.sim.network import SimNetwork
from services.sim.records import SimRouteHint
from services.sim.topology import ChannelSpec, NodeSpec, Topology
from tests.sim.helpers import manual_network

JIT_SCID = "16000123x4815x1"  # in the alias range JIT SCIDs come from (ADR 0261)
AMOUNT_MSAT = 50_000_000
FEE_MSAT = 546_000


def jit_topology(lsp_implementation: str = "lnd") -> Topology:
    """payer -> lsp (our regional node); wallet has no channel at all."""
    return Topology(
        nodes=(
            NodeSpec(name="payer", role="ours", implementation="cln", region="us"),
            NodeSpec(name="lsp", role="ours", implementation=lsp_implementation, region="us"),  # type: ignore[arg-type]
            NodeSpec(name="wallet", role="merchant", implementation="lnd"),
        ),
        channels=(ChannelSpec(a="payer", b="lsp", capacity_msat=1_000_000_000),),
    )


def jit_invoice(network: SimNetwork, *, fee_max_msat: int = FEE_MSAT) -> str:
    hint = SimRouteHint(pubkey=network.node("lsp").pubkey, short_channel_id=JIT_SCID)
    invoice = network.create_invoice(
        "wallet", AMOUNT_MSAT, "first pay", 3600, route_hint=hint, jit_fee_max_msat=fee_max_msat
    )
    assert invoice.bolt11 is not None
    return invoice.bolt11


def pay(network: SimNetwork, bolt11: str) -> str:
    payment = network.start_payment("payer", payment_request=bolt11, max_fee_msat=10_000)
    return payment.payment_hash


def test_without_interception_the_lsp_fails_unknown_next_peer() -> None:
    network, _ = manual_network(jit_topology())
    payment_hash = pay(network, jit_invoice(network))
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "failed"
    assert record.failure_reason is FailureReason.NO_ROUTE
    assert network.intercepted_htlcs("lsp") == []


def test_held_then_zero_conf_channel_then_resumed_less_the_fee() -> None:
    network, clock = manual_network(jit_topology())
    network.enable_interception("lsp")
    bolt11 = jit_invoice(network)
    payment_hash = pay(network, bolt11)
    clock.advance(1)
    network.run_due()
    [held] = network.intercepted_htlcs("lsp")
    assert held.outgoing_requested_scid == JIT_SCID
    assert held.incoming_amount_msat == held.outgoing_amount_msat == AMOUNT_MSAT
    assert held.auto_fail_height < held.incoming_expiry
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "in_flight"

    network.open_channel(
        "lsp", "wallet", amount_sat=100_000, sat_per_vbyte=2, zero_conf=True, private=True
    )
    [channel] = network.channels_of("wallet")
    assert channel.zero_conf and channel.private and channel.active
    assert channel.channel_id.startswith("16000000x")

    network.resolve_intercepted(
        "lsp",
        held.circuit_key,
        "resume_modified",
        out_amount_msat=AMOUNT_MSAT - FEE_MSAT,
        out_wire_custom_records={EXTRA_FEE_TLV: FEE_MSAT.to_bytes(8, "big")},
    )
    clock.advance(1)
    network.run_due()
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "succeeded"
    [channel] = network.channels_of("wallet")
    assert channel.local_balance_msat == AMOUNT_MSAT - FEE_MSAT
    invoice = network.lookup_invoice("wallet", payment_hash)
    assert invoice is not None and invoice.amount_received_msat == AMOUNT_MSAT - FEE_MSAT
    assert network.intercepted_htlcs("lsp") == []
    network.check_invariants()
    # The funding transaction confirming changes nothing about the channel.
    network.mine(6)
    [after] = network.channels_of("wallet")
    assert after.channel_id == channel.channel_id
    network.check_invariants()


def test_payee_refuses_a_deduction_beyond_the_agreed_fee() -> None:
    network, clock = manual_network(jit_topology())
    network.enable_interception("lsp")
    payment_hash = pay(network, jit_invoice(network, fee_max_msat=FEE_MSAT - 1))
    [held] = network.intercepted_htlcs("lsp")
    network.open_channel("lsp", "wallet", amount_sat=100_000, sat_per_vbyte=2, zero_conf=True)
    network.resolve_intercepted(
        "lsp",
        held.circuit_key,
        "resume_modified",
        out_amount_msat=AMOUNT_MSAT - FEE_MSAT,
        out_wire_custom_records={EXTRA_FEE_TLV: FEE_MSAT.to_bytes(8, "big")},
    )
    clock.advance(1)
    network.run_due()
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "failed"
    assert record.failure_reason is FailureReason.INCORRECT_DETAILS
    network.check_invariants()


def test_resume_without_a_channel_fails_unknown_next_peer_and_bad_resolutions_change_nothing() -> (
    None
):
    network, clock = manual_network(jit_topology())
    network.enable_interception("lsp")
    payment_hash = pay(network, jit_invoice(network))
    [held] = network.intercepted_htlcs("lsp")
    with pytest.raises(InterceptError):
        network.resolve_intercepted("lsp", ("1x1x1", 99), "fail")
    with pytest.raises(InterceptError):
        network.resolve_intercepted("lsp", held.circuit_key, "settle", preimage="00" * 32)
    with pytest.raises(InterceptError):
        network.resolve_intercepted(
            "lsp",
            held.circuit_key,
            "resume_modified",
            out_wire_custom_records={EXTRA_FEE_TLV: b"\x01"},
        )
    assert network.intercepted_htlcs("lsp") == [held]
    network.resolve_intercepted("lsp", held.circuit_key, "resume")
    clock.advance(1)
    network.run_due()
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "failed"
    assert record.failure_detail == "unknown next peer"
    network.check_invariants()


def test_a_held_htlc_is_failed_at_its_auto_fail_height() -> None:
    network, _ = manual_network(jit_topology())
    network.enable_interception("lsp")
    payment_hash = pay(network, jit_invoice(network))
    [held] = network.intercepted_htlcs("lsp")
    network.mine(held.auto_fail_height - network.block_height - 1)
    assert network.intercepted_htlcs("lsp") == [held]
    network.mine(1)
    assert network.intercepted_htlcs("lsp") == []
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "failed"
    network.check_invariants()


def test_the_lsp_may_settle_a_held_htlc_itself() -> None:
    network, _ = manual_network(jit_topology())
    network.enable_interception("lsp")
    bolt11 = jit_invoice(network)
    payment_hash = pay(network, bolt11)
    [held] = network.intercepted_htlcs("lsp")
    invoice = network.lookup_invoice("wallet", payment_hash)
    assert invoice is not None
    network.resolve_intercepted("lsp", held.circuit_key, "settle", preimage=invoice.preimage)
    record = network.get_payment("payer", payment_hash)
    assert record is not None and record.status == "succeeded"
    network.check_invariants()


def test_the_jit_invoice_carries_the_route_hint_in_bolt11() -> None:
    """bLIP-52 section 3: one hint hop (LSP, jit SCID, zero fees, the LSP's CLTV delta) and a
    min_final_cltv_expiry two above normal; checked with the ``bolt11`` package as oracle."""
    import bolt11

    network, _ = manual_network(jit_topology())
    decoded = bolt11.decode(jit_invoice(network))
    [hint] = decoded.route_hints
    [hop] = hint.routes
    assert hop.public_key == network.node("lsp").pubkey
    assert hop.short_channel_id == JIT_SCID
    assert (hop.base_fee, hop.ppm_fee, hop.cltv_expiry_delta) == (0, 0, 144)
    assert decoded.min_final_cltv_expiry == 20
