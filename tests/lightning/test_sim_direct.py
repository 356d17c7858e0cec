"""The in-process adapter (ADR 0114) beyond the shared contract: virtual time, lnd's reasons,
keysend per implementation, and no RPC machinery.

The contract suite (test_adapter_contract.py, kind ``sim-direct``) proves its port semantics
next to the gRPC and JSON-RPC adapters; these tests prove what only this adapter promises.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from services.lightning import lnd_convert, sim_direct
from services.lightning.lnd_errors import grpc_status_rule
from services.lightning.port import (
    FailureReason,
    NodeError,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
    RouteHop,
)
from services.lightning.sim_direct import SimNodeAdapter, result_of
from services.sim import lnd_messages
from services.sim.lnd_payments import invoice_expired_text, rejected_before_send
from services.sim.network import SimNetwork
from services.sim.records import SimPayment
from services.simulation.virtual_loop import WouldBlockForever, run_virtual, virtual_loop
from tests.lightning.conftest import MAX_FEE_MSAT, SEED, contract_topology

# Each turn of the virtual loop takes a microsecond (TURN_S): answers land within this.
LOOP_TURNS_S = 1e-3
HOP_DELAY_S = 0.5  # two hops from alice to bob or carol: one second per payment
SLOW_RESOLUTION_S = 600.0
PAY_TIMEOUT_S = 120.0
RELEASE_AFTER_S = 3600.0
HTLC_TIMEOUT_S = 1800.0
NODE_LATENCY_S = 45.0
ADAPTER_TIMEOUT_S = 30.0

Trace = list[tuple[str, float, object]]


def _pay(bolt11: str | None, timeout_s: float) -> PayRequest:
    return PayRequest(payment_request=bolt11, max_fee_msat=MAX_FEE_MSAT, timeout_s=timeout_s)


async def _hours_of_faults() -> Trace:
    """Slow, parked, timed-out and concurrent payments and a slow node: hours of network time.

    Each step notes what the adapter answered and how much virtual time had passed.
    """
    loop = virtual_loop()
    network = SimNetwork.from_topology(
        contract_topology("lnd"), seed=SEED, now_s=loop.wall_s, hop_delay_s=HOP_DELAY_S
    )
    adapter = SimNodeAdapter(network, "alice", timeout_s=ADAPTER_TIMEOUT_S)
    faults = network.faults
    start_s = loop.time()
    trace: Trace = []

    def note(step: str, answer: object) -> None:
        trace.append((step, loop.time() - start_s, answer))

    def invoice(payee: str, amount_msat: int) -> str:
        bolt11 = network.create_invoice(payee, amount_msat, "virtual", 86_400).bolt11
        assert bolt11 is not None
        return bolt11

    try:
        faults.delay_resolution(SLOW_RESOLUTION_S)
        note("slow", await adapter.pay(_pay(invoice("bob", 100_000), timeout_s=3600)))
        faults.delay_resolution(0)

        faults.drop_resolution()
        parked = invoice("bob", 20_000)
        note("parked", await adapter.pay(_pay(parked, timeout_s=PAY_TIMEOUT_S)))
        loop.call_later(RELEASE_AFTER_S, faults.release_dropped)
        parked_hash = network.decode(parked).payment_hash
        note("released", [update async for update in adapter.payment_updates(parked_hash)])

        faults.drop_resolution(timeout_s=HTLC_TIMEOUT_S)
        note("htlc timeout", await adapter.pay(_pay(invoice("carol", 30_000), timeout_s=3600)))

        faults.delay_resolution(5)
        shared, other = invoice("bob", 1000), invoice("carol", 2000)
        note(
            "concurrent",
            await asyncio.gather(*(adapter.pay(_pay(b, 60)) for b in (shared, other, shared))),
        )

        faults.slow_node("alice", NODE_LATENCY_S)
        with pytest.raises(NodeError) as slow:
            await adapter.get_info()
        note("slow node", slow.value.reason)
        network.check_invariants()
        note("attempts", len(network.payments()))
    finally:
        await network.aclose()
    return trace


def test_hours_of_network_time_run_on_a_virtual_loop_without_waiting() -> None:
    threads_before = threading.active_count()
    trace = run_virtual(_hours_of_faults())
    steps = {step: (at_s, answer) for step, at_s, answer in trace}

    slow_at_s, slow = steps["slow"]
    assert isinstance(slow, PaymentSucceeded) and slow.hops, slow
    assert slow_at_s == pytest.approx(
        SLOW_RESOLUTION_S + 2 * HOP_DELAY_S, abs=LOOP_TURNS_S
    )  # the network's time

    parked_at_s, parked = steps["parked"]
    assert isinstance(parked, PaymentInFlight)
    assert parked_at_s == pytest.approx(
        slow_at_s + PAY_TIMEOUT_S, abs=LOOP_TURNS_S
    )  # pay's timeout ran on the same clock

    released_at_s, updates = steps["released"]
    assert isinstance(updates, list)
    assert [type(u) for u in updates] == [PaymentInFlight, PaymentSucceeded]
    assert released_at_s == pytest.approx(parked_at_s + RELEASE_AFTER_S, abs=LOOP_TURNS_S)

    timed_out_at_s, timed_out = steps["htlc timeout"]
    assert isinstance(timed_out, PaymentFailed) and timed_out.reason is FailureReason.TIMEOUT
    assert timed_out_at_s == pytest.approx(released_at_s + HTLC_TIMEOUT_S, abs=LOOP_TURNS_S)

    concurrent_at_s, concurrent = steps["concurrent"]
    assert isinstance(concurrent, list)
    assert all(isinstance(r, PaymentSucceeded) for r in concurrent), concurrent
    assert concurrent[0] == concurrent[2]  # one hash paid once, both callers told so
    assert concurrent_at_s == pytest.approx(timed_out_at_s + 5 + 2 * HOP_DELAY_S, abs=LOOP_TURNS_S)

    slow_node_at_s, reason = steps["slow node"]
    assert reason is FailureReason.TIMEOUT
    assert slow_node_at_s == pytest.approx(concurrent_at_s + ADAPTER_TIMEOUT_S, abs=LOOP_TURNS_S)
    assert steps["attempts"][1] == 5  # slow, parked, timed out, and two concurrent hashes
    assert threading.active_count() == threads_before


def test_a_seed_replays_exactly() -> None:
    assert run_virtual(_hours_of_faults()) == run_virtual(_hours_of_faults())


def test_a_wait_nothing_can_end_is_reported_not_hung() -> None:
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(WouldBlockForever):
        run_virtual(wait_forever())


# The adapter reports what lnd's adapter reports for the same record.

_PREIMAGE = "42" * 32
_HASH = hashlib.sha256(bytes.fromhex(_PREIMAGE)).hexdigest()
_HOPS = (
    RouteHop(pubkey="02" + "11" * 32, channel_id="101x1x0", amount_msat=1000, fee_msat=2),
    RouteHop(pubkey="03" + "22" * 32, channel_id="102x1x0", amount_msat=1000, fee_msat=0),
)


def _record(status: str, *, reason: FailureReason | None = None, locked: bool = True) -> SimPayment:
    return SimPayment(
        attempt_id=7,
        payment_hash=_HASH,
        origin="alice",
        destination="bob",
        amount_msat=1000,
        fee_msat=2 if locked else 0,
        status=status,  # type: ignore[arg-type]
        failure_reason=reason,
        preimage=_PREIMAGE if status == "succeeded" else None,
        hops=_HOPS if locked else (),
        created_at_s=1_700_000_000.0,
        resolved_at_s=None if status == "in_flight" else 1_700_000_001.0,
    )


def _through_lnd(record: SimPayment) -> PaymentResult:
    """What LndAdapter makes of the record, as the simulated lnd sends it."""
    if rejected_before_send(record):
        # SendPaymentV2 refuses before registering: a gRPC error, not a payment record.
        text = invoice_expired_text(1_700_000_000, 600)
        rule = grpc_status_rule(grpc.StatusCode.UNKNOWN, text)
        return PaymentFailed(payment_hash=record.payment_hash, reason=rule.reason)
    return lnd_convert.payment_result(lnd_messages.payment(record))


@pytest.mark.parametrize("locked", [True, False], ids=["htlc-sent", "refused-before-htlc"])
@pytest.mark.parametrize("reason", list(FailureReason))
def test_failure_reasons_are_what_lnd_reports(reason: FailureReason, locked: bool) -> None:
    record = _record("failed", reason=reason, locked=locked)
    ours = result_of(record)
    assert isinstance(ours, PaymentFailed)
    assert ours.reason is _through_lnd(record).reason  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["succeeded", "in_flight"])
def test_success_and_in_flight_are_what_lnd_reports(status: str) -> None:
    record = _record(status)
    assert result_of(record) == _through_lnd(record)


# Keysend follows the node's implementation, as the production adapters do (ADR 0008, 0103).


def _keysend(destination: str, preimage: str) -> PayRequest:
    return PayRequest(
        destination=destination,
        amount_msat=5000,
        keysend_preimage=preimage,
        max_fee_msat=MAX_FEE_MSAT,
        timeout_s=5,
    )


async def test_keysend_from_an_lnd_node_pays_once_with_the_callers_preimage() -> None:
    network = SimNetwork.from_topology(contract_topology("lnd"), seed=SEED)
    adapter = SimNodeAdapter(network, "alice")
    try:
        request = _keysend(network.node("bob").pubkey, _PREIMAGE)
        first = await adapter.pay(request)
        assert isinstance(first, PaymentSucceeded) and first.preimage == _PREIMAGE
        assert await adapter.pay(request) == first
        assert [p.payment_hash for p in network.payments()] == [_HASH]
    finally:
        await network.aclose()


async def test_keysend_from_a_cln_node_is_refused_before_sending() -> None:
    network = SimNetwork.from_topology(contract_topology("cln"), seed=SEED)
    adapter = SimNodeAdapter(network, "alice")
    try:
        with pytest.raises(ValueError, match="not supported on CLN"):
            await adapter.pay(_keysend(network.node("bob").pubkey, _PREIMAGE))
        assert network.payments() == []
    finally:
        await network.aclose()


# No RPC machinery: what lets a virtual-time loop drive it.


def test_the_module_imports_no_rpc_thread_or_clock_machinery() -> None:
    source = Path(sim_direct.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    forbidden = {"grpc", "pyln", "socket", "threading", "concurrent", "selectors", "time"}
    assert not imported & forbidden, imported & forbidden
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, services.lightning.sim_direct; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'pyln')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
