"""Property tests: random small topologies, random payments and faults, invariants hold.

Checked after every step: per-channel value conservation (balances + HTLCs == capacity), no
balance below zero or above capacity, fees within [0, max_fee_msat], the ledger agrees with the
HTLCs in flight, no invoice hash paid twice and no payee settling a hash twice (keysend
preimages chosen by callers may repeat across payees, as on mainnet). At the end, once
everything resolved, each node's wealth changed exactly by what the ground-truth payments say.
"""

from __future__ import annotations

import contextlib
from collections import Counter

from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from services.lightning.port import FailureReason
from services.sim.clock import ManualClock
from services.sim.errors import InvalidPaymentRequest, NodeOffline, PaymentExists
from services.sim.network import SimNetwork
from services.sim.topology import ChannelSpec, NodeSpec, PolicySpec, Topology

PROPERTY_SETTINGS = settings(
    max_examples=80,
    derandomize=True,  # same examples on every run: a red CI run reproduces locally
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # The explain phase traces every line (Python < 3.12) and turns a failure into minutes.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    count = draw(st.integers(min_value=3, max_value=6))
    names = [f"n{i}" for i in range(count)]
    nodes = tuple(NodeSpec(name=n, role="ours" if i == 0 else "hub") for i, n in enumerate(names))
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    chosen = draw(st.lists(st.sampled_from(pairs), min_size=2, max_size=len(pairs), unique=True))
    policies = st.builds(
        PolicySpec,
        fee_base_msat=st.integers(0, 2000),
        fee_ppm=st.integers(0, 5000),
        cltv_delta=st.integers(0, 144),
    )
    channels = []
    for a, b in chosen:
        capacity_msat = draw(st.integers(10_000, 2_000_000))
        channels.append(
            ChannelSpec(
                a=a,
                b=b,
                capacity_msat=capacity_msat,
                a_balance_msat=draw(st.integers(0, capacity_msat)),
                a_policy=draw(policies),
                b_policy=draw(policies),
            )
        )
    return Topology(nodes=nodes, channels=tuple(channels))


amounts_msat = st.integers(1, 200_000)
fee_limits_msat = st.integers(0, 50_000)
pay = st.tuples(
    st.just("pay"),
    st.integers(0, 5),
    st.integers(0, 5),
    amounts_msat,
    fee_limits_msat,
    st.booleans(),
)
keysend = st.tuples(
    st.just("keysend"),
    st.integers(0, 5),
    st.integers(0, 5),
    amounts_msat,
    fee_limits_msat,
    st.integers(0, 3),
)
advance = st.tuples(st.just("advance"), st.floats(0, 3))
faults = st.one_of(
    st.tuples(st.just("repay"), st.integers(0, 5), st.integers(0, 50)),
    st.tuples(st.just("offline"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("drain"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("drop"), st.integers(1, 3), st.sampled_from([None, 0.5, 2.0])),
    st.tuples(st.just("release")),
    st.tuples(st.just("fail_route"), st.integers(0, 5), st.sampled_from(list(FailureReason))),
    st.tuples(st.just("delay"), st.floats(0, 2)),
    st.tuples(st.just("expire"), st.integers(0, 50)),
    st.tuples(st.just("clear")),
)
# Payments and clock steps dominate so that most examples settle something.
operation = st.one_of(pay, pay, keysend, advance, advance, faults)


def _wealth(network: SimNetwork) -> dict[str, int]:
    return {n: sum(c.local_balance_msat for c in network.channels_of(n)) for n in network.nodes}


@PROPERTY_SETTINGS
@given(topology=topologies(), operations=st.lists(operation, min_size=5, max_size=50))
def test_random_payments_and_faults_keep_invariants(topology: Topology, operations: list) -> None:
    clock = ManualClock()
    network = SimNetwork.from_topology(topology, seed=11, now_s=clock, hop_delay_s=0.1)
    names = sorted(network.nodes)
    start_wealth = _wealth(network)
    invoices: list[str] = []  # bolt11 strings created so far
    transfers: Counter[str] = Counter()

    def pick(index: int) -> str:
        return names[index % len(names)]

    def pick_other(origin: int, index: int) -> str:
        # Self-payments are refused up front; keep examples on real routes.
        return names[(origin + 1 + index % (len(names) - 1)) % len(names)]

    for op in operations:
        kind = op[0]
        # Refusals a caller can legitimately hit are part of the contract, not failures.
        with contextlib.suppress(PaymentExists, NodeOffline, InvalidPaymentRequest, KeyError):
            if kind == "pay":
                _, origin, payee, amount_msat, fee_max_msat, open_amount = op
                invoice = network.create_invoice(
                    pick_other(origin, payee), None if open_amount else amount_msat, "p", 3600
                )
                invoices.append(invoice.bolt11)
                network.start_payment(
                    pick(origin),
                    payment_request=invoice.bolt11,
                    amount_msat=amount_msat if open_amount else None,
                    max_fee_msat=fee_max_msat,
                )
            elif kind == "keysend":
                _, origin, payee, amount_msat, fee_max_msat, preimage_index = op
                network.start_payment(
                    pick(origin),
                    destination=pick(payee),
                    amount_msat=amount_msat,
                    preimage=f"{preimage_index:064x}",
                    max_fee_msat=fee_max_msat,
                )
            elif kind == "repay" and invoices:
                _, origin, which = op
                network.start_payment(
                    pick(origin),
                    payment_request=invoices[which % len(invoices)],
                    amount_msat=None
                    if network.decode(invoices[which % len(invoices)]).amount_msat
                    else 1000,
                    max_fee_msat=10_000,
                )
            elif kind == "advance":
                clock.advance(op[1])
                network.run_due()
            elif kind == "offline":
                network.faults.set_offline(pick(op[1]), offline=op[2])
            elif kind == "drain":
                channel_ids = network.channel_ids()
                channel_id = channel_ids[op[1] % len(channel_ids)]
                ends = sorted(
                    n for n in names if channel_id in {c.channel_id for c in network.channels_of(n)}
                )
                toward, other = ends[int(op[2])], ends[1 - int(op[2])]
                # Draining moves value outside any payment: account for it.
                moved_msat = network.channel(channel_id, side=other).local_balance_msat
                network.faults.drain_channel(channel_id, toward=toward)
                transfers[toward] += moved_msat
                transfers[other] -= moved_msat
            elif kind == "drop":
                network.faults.drop_resolution(count=op[1], timeout_s=op[2])
            elif kind == "release":
                network.faults.release_dropped()
            elif kind == "fail_route":
                network.faults.fail_route(node=pick(op[1]), reason=op[2])
            elif kind == "delay":
                network.faults.delay_resolution(op[1])
            elif kind == "expire" and invoices:
                network.faults.expire_invoice(
                    network.decode(invoices[op[1] % len(invoices)]).payment_hash
                )
            elif kind == "clear":
                network.faults.clear()
        network.check_invariants()
        for name in names:
            for view in network.channels_of(name):
                assert 0 <= view.local_balance_msat <= view.capacity_msat
                assert 0 <= view.pending_htlc_msat <= view.capacity_msat

    # Let everything resolve, then account for every msat.
    network.faults.clear()
    clock.advance(3600)
    network.run_due()
    network.check_invariants()
    assert network.in_flight_count() == 0
    expected = Counter(start_wealth)
    expected.update(transfers)
    by_pubkey = {n.pubkey: n.name for n in network.nodes.values()}
    succeeded_hashes = []
    settled_by_payee = []
    for payment in network.payments():
        assert payment.status != "in_flight"
        assert 0 <= payment.fee_msat <= payment.max_fee_msat or payment.status == "failed"
        if payment.status != "succeeded":
            continue
        if not payment.is_keysend:  # invoice hashes are unique network-wide
            succeeded_hashes.append(payment.payment_hash)
        settled_by_payee.append((payment.destination, payment.payment_hash))
        expected[payment.origin] -= payment.amount_msat + payment.fee_msat
        expected[payment.destination] += payment.amount_msat
        for hop in payment.hops:
            expected[by_pubkey[hop.pubkey]] += hop.fee_msat
    assert len(succeeded_hashes) == len(set(succeeded_hashes))
    assert len(settled_by_payee) == len(set(settled_by_payee))
    event(f"succeeded payments: {min(len(succeeded_hashes), 3)}+")
    for payment in network.payments():
        event(f"outcome: {payment.failure_reason or payment.status}")
    assert _wealth(network) == {n: expected[n] for n in names}
