"""The simulated chain and channel lifecycle, on the network core alone (no RPC)."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from services.sim.chain import CLOSING_TX_VSIZE, FUNDING_TX_VSIZE
from services.sim.channel_ops import FUNDING_CONFIRMATIONS, ChannelRefused
from services.sim.clock import ManualClock
from services.sim.network import SimNetwork
from services.sim.topology import default_topology
from tests.lightning.conftest import SEED, contract_topology


def network(seed: int = SEED) -> SimNetwork:
    return SimNetwork.from_topology(contract_topology("lnd"), seed=seed, now_s=ManualClock())


def script(net: SimNetwork) -> list[object]:
    """Open, confirm, close and confirm; everything a node could observe along the way."""
    funding = net.open_channel("alice", "carol", amount_sat=300_000, sat_per_vbyte=4)
    net.mine(FUNDING_CONFIRMATIONS)
    (opened,) = [c for c in net.channels_of("alice") if c.funding_txid == funding.txid]
    closing = net.close_channel("alice", opened.channel_id, sat_per_vbyte=2)
    net.mine(1)
    return [
        funding,
        opened,
        closing,
        net.wallet_of("alice"),
        net.chain.block_hash(net.block_height),
    ]


def test_the_chain_is_derived_from_the_seed() -> None:
    assert script(network()) == script(network())
    assert script(network(SEED + 1))[0] != script(network())[0]


def test_fees_are_the_rate_times_the_fixed_size() -> None:
    net = network()
    before = net.wallet_of("alice").confirmed_msat
    funding = net.open_channel("alice", "carol", amount_sat=300_000, sat_per_vbyte=7)
    assert funding.fee_sat == 7 * FUNDING_TX_VSIZE
    after = net.wallet_of("alice")
    assert (
        before - after.confirmed_msat - after.unconfirmed_msat == (300_000 + funding.fee_sat) * 1000
    )
    net.mine(FUNDING_CONFIRMATIONS)
    chan = next(c for c in net.channels_of("alice") if c.funding_txid == funding.txid)
    closing_txid = net.close_channel("carol", chan.channel_id, sat_per_vbyte=3)
    # The opener (alice) pays the closing fee even though carol asked for the close.
    outputs = dict(net.chain.txs[closing_txid].outputs)
    assert outputs == {"alice": 300_000 - 3 * CLOSING_TX_VSIZE}
    net.check_invariants()


def test_a_pending_channel_does_not_route_and_a_closed_one_stops_at_once() -> None:
    net = network()
    net.open_channel("alice", "bob", amount_sat=500_000, sat_per_vbyte=1)
    net.mine(FUNDING_CONFIRMATIONS - 1)
    invoice = net.create_invoice("bob", 10_000, "m", 600)
    paid = net.start_payment("alice", payment_request=invoice.bolt11, max_fee_msat=50_000)
    assert paid.hops[0].pubkey == net.node("hub").pubkey  # through the hub, not direct
    net.mine(1)
    direct = next(c for c in net.channels_of("alice") if c.peer == "bob")
    net.close_channel("alice", direct.channel_id, sat_per_vbyte=1)
    assert all(c.peer != "bob" for c in net.channels_of("alice"))
    with pytest.raises(ChannelRefused) as info:
        net.close_channel("alice", direct.channel_id, sat_per_vbyte=1)
    assert info.value.code == "already_closing"


def test_funds_are_finite() -> None:
    net = network()
    confirmed = net.wallet_of("alice").confirmed_msat // 1000
    with pytest.raises(ChannelRefused) as info:
        net.open_channel("alice", "carol", amount_sat=confirmed, sat_per_vbyte=1)
    assert info.value.code == "insufficient_funds" and info.value.have_sat == confirmed
    # Change is unconfirmed until mined, so a second open must wait for the block.
    net.open_channel("alice", "carol", amount_sat=confirmed // 2, sat_per_vbyte=1)
    with pytest.raises(ChannelRefused):
        net.open_channel("alice", "bob", amount_sat=confirmed // 4, sat_per_vbyte=1)
    net.mine(1)
    net.open_channel("alice", "bob", amount_sat=confirmed // 4, sat_per_vbyte=1)
    net.check_invariants()


def test_default_topology_funds_every_role() -> None:
    net = SimNetwork.from_topology(default_topology(), seed=1, now_s=ManualClock())
    assert net.wallet_of("us-lnd").confirmed_msat == 2 * 10**11
    assert net.wallet_of("hub-global").confirmed_msat == 10 * 10**11
    assert net.wallet_of("merchant-01").confirmed_msat == 10**10


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["open", "close", "mine", "pay"]),
            st.sampled_from(["alice", "dave", "bob", "carol", "hub"]),
            st.sampled_from(["alice", "dave", "bob", "carol", "hub"]),
            st.integers(min_value=20_000, max_value=3_000_000),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=25,
    )
)
def test_value_is_conserved_to_the_msat(steps: list[tuple[str, str, str, int, int]]) -> None:
    net = network()
    for action, node, peer, amount_sat, rate in steps:
        try:
            if action == "open":
                net.open_channel(node, peer, amount_sat=amount_sat, sat_per_vbyte=rate)
            elif action == "close":
                for chan in net.channels_of(node)[:1]:
                    net.close_channel(node, chan.channel_id, sat_per_vbyte=rate)
            elif action == "mine":
                net.mine(rate % 4 + 1)
            else:
                invoice = net.create_invoice(peer, amount_sat, "p", 600)
                net.start_payment(node, payment_request=invoice.bolt11, max_fee_msat=10**7)
        except ChannelRefused:
            pass
        net.check_invariants()
