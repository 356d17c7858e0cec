"""The receiving half of the adapter contract: one body per case, run against every adapter.

Invoices with a caller-chosen preimage, the node's record of them (``lookup_invoice``), and
the stream of settlements (``invoice_updates``) that a receive executor follows and resumes.
An outside node of the simulated network (bob, a merchant behind the hub) pays the invoices,
as a customer would. test_real_nodes.py re-runs these bodies on real nodes (cases that need
an outside payer skip there).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.lightning.port import DuplicateInvoice, InvoiceStatus, NodeError
from tests.lightning.conftest import CONDITION_TIMEOUT_S, MAX_FEE_MSAT, AdapterEnv

PAYER = "bob"


def chosen_preimage(env: AdapterEnv, label: str) -> str:
    """Deterministic on the simulator (a fresh network per test); fresh on real nodes, whose
    invoice book outlives a run."""
    if env.network is None:
        return secrets.token_hex(32)
    return hashlib.sha256(f"{env.kind}:{label}".encode()).hexdigest()


def hash_of(preimage: str) -> str:
    return hashlib.sha256(bytes.fromhex(preimage)).hexdigest()


async def pay_from_outside(env: AdapterEnv, bolt11: str, *, amount_msat: int | None = None) -> None:
    """An outside node pays ``bolt11`` through the network; fails the test unless it succeeds."""
    sim = env.sim
    sent = await sim.send_payment(
        PAYER, payment_request=bolt11, amount_msat=amount_msat, max_fee_msat=MAX_FEE_MSAT,
        timeout_s=5.0,
    )  # fmt: skip
    final = await sim.wait_payment(PAYER, sent.payment_hash, timeout_s=CONDITION_TIMEOUT_S)
    assert final.status == "succeeded", final


async def next_update(updates: AsyncIterator[InvoiceStatus]) -> InvoiceStatus:
    async with asyncio.timeout(CONDITION_TIMEOUT_S):
        return await anext(updates)


async def test_invoice_with_a_chosen_preimage_has_its_hash(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    preimage = chosen_preimage(adapter_env, "chosen")
    invoice = await adapter.create_invoice(21_000, "chosen preimage", 600, preimage=preimage)
    assert invoice.payment_hash == hash_of(preimage)
    assert (await adapter.decode(invoice.payment_request)).payment_hash == hash_of(preimage)
    status = await adapter.lookup_invoice(invoice.payment_hash)
    assert status is not None, "the node has no record of the invoice it just made"
    assert status.state == "open" and status.pay_index == 0
    assert status.payment_hash == invoice.payment_hash
    assert status.payment_request == invoice.payment_request
    assert status.amount_msat == 21_000 and status.amount_received_msat == 0
    assert status.created_at_s == invoice.created_at_s
    assert status.expires_at_s == invoice.created_at_s + 600


async def test_a_second_invoice_with_the_same_preimage_is_refused(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    preimage = chosen_preimage(adapter_env, "duplicate")
    first = await adapter.create_invoice(30_000, "first", 600, preimage=preimage)
    with pytest.raises(DuplicateInvoice):
        await adapter.create_invoice(30_000, "retry", 600, preimage=preimage)
    status = await adapter.lookup_invoice(first.payment_hash)
    assert status is not None and status.payment_request == first.payment_request


async def test_lookup_of_an_unknown_invoice_is_none(adapter_env: AdapterEnv) -> None:
    assert await adapter_env.adapter.lookup_invoice(hash_of("00" * 32)) is None


async def test_invoice_paid_by_an_outside_node(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    preimage = chosen_preimage(adapter_env, "paid")
    invoice = await adapter.create_invoice(77_000, "paid from outside", 600, preimage=preimage)
    await pay_from_outside(adapter_env, invoice.payment_request)
    status = await adapter.lookup_invoice(invoice.payment_hash)
    assert status is not None
    assert status.state == "paid" and status.preimage == preimage
    assert status.amount_received_msat == 77_000 and status.amount_msat == 77_000
    assert status.pay_index >= 1 and status.paid_at_s is not None
    assert status.paid_at_s >= status.created_at_s
    stored = adapter_env.sim.lookup_invoice(adapter_env.node, invoice.payment_hash)
    assert stored is not None and stored.pay_index == status.pay_index


async def test_any_amount_invoice_records_what_was_paid(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    invoice = await adapter.create_invoice(None, "any amount", 600)
    await pay_from_outside(adapter_env, invoice.payment_request, amount_msat=12_345)
    status = await adapter.lookup_invoice(invoice.payment_hash)
    assert status is not None and status.state == "paid"
    assert status.amount_msat is None and status.amount_received_msat == 12_345


async def test_invoice_updates_in_pay_order_and_resume(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    assert adapter_env.sim is not None  # skips on real nodes: needs an outside payer
    invoices = [await adapter.create_invoice(10_000 + i, f"follow {i}", 600) for i in range(3)]
    # Paid out of creation order: the stream follows settlement, not creation.
    paid_order = [invoices[2], invoices[0], invoices[1]]
    for invoice in paid_order[:2]:
        await pay_from_outside(adapter_env, invoice.payment_request)
    updates = adapter.invoice_updates(after_pay_index=0)
    try:
        seen = [await next_update(updates), await next_update(updates)]
        # A settlement after the stream opened arrives live.
        await pay_from_outside(adapter_env, paid_order[2].payment_request)
        seen.append(await next_update(updates))
    finally:
        await updates.aclose()
    assert [s.payment_hash for s in seen] == [i.payment_hash for i in paid_order]
    assert all(s.state == "paid" for s in seen)
    indexes = [s.pay_index for s in seen]
    assert indexes == sorted(indexes) and len(set(indexes)) == 3 and indexes[0] >= 1
    # Resuming after the first one's pay index yields the rest, in the same order.
    resumed = adapter.invoice_updates(after_pay_index=indexes[0])
    try:
        again = [await next_update(resumed), await next_update(resumed)]
    finally:
        await resumed.aclose()
    assert again == seen[1:]


async def test_invoice_updates_resume_past_the_last_yields_only_new_ones(
    adapter_env: AdapterEnv,
) -> None:
    adapter = adapter_env.adapter
    assert adapter_env.sim is not None  # skips on real nodes: needs an outside payer
    first = await adapter.create_invoice(5_000, "before", 600)
    await pay_from_outside(adapter_env, first.payment_request)
    status = await adapter.lookup_invoice(first.payment_hash)
    assert status is not None and status.state == "paid"
    updates = adapter.invoice_updates(after_pay_index=status.pay_index)
    try:
        later = await adapter.create_invoice(6_000, "after", 600)
        waiting = asyncio.ensure_future(next_update(updates))
        await pay_from_outside(adapter_env, later.payment_request)
        update = await waiting
    finally:
        await updates.aclose()
    assert update.payment_hash == later.payment_hash
    assert update.pay_index > status.pay_index


async def test_expired_invoice_is_expired(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    invoice = await adapter.create_invoice(9_000, "expires at once", 1)
    # The invoice's own clock: its expiry passes within two seconds (whole-second times).
    deadline_s = time.monotonic() + CONDITION_TIMEOUT_S
    while True:
        status = await adapter.lookup_invoice(invoice.payment_hash)
        assert status is not None
        if status.state == "expired":
            break
        assert status.state == "open", status
        if time.monotonic() > deadline_s:
            raise AssertionError(f"invoice still {status.state} past its expiry")
        await asyncio.sleep(0.05)
    assert status.pay_index == 0 and status.preimage is None


async def test_lookup_of_an_invoice_on_an_offline_node_raises(adapter_env: AdapterEnv) -> None:
    invoice = await adapter_env.adapter.create_invoice(4_000, "offline", 600)
    await adapter_env.set_offline(True)
    try:
        with pytest.raises(NodeError):
            await adapter_env.adapter.lookup_invoice(invoice.payment_hash)
    finally:
        await adapter_env.set_offline(False)


async def test_close_ends_an_invoice_follower(adapter_env: AdapterEnv, monkeypatch: Any) -> None:
    """A follower waiting for the next settlement ends with ``NodeError`` once the adapter is
    closed (the CLN adapter within one waitanyinvoice slice, ADR 0210), never runs on and
    never looks like a cancel of its caller's task."""
    from services.lightning import cln

    monkeypatch.setattr(cln, "INVOICE_WAIT_SLICE_S", 1)
    updates = adapter_env.adapter.invoice_updates(after_pay_index=0)
    follower = asyncio.ensure_future(anext(updates))
    await asyncio.sleep(0)  # let it start waiting
    await adapter_env.adapter.close()
    with pytest.raises(NodeError):
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            await follower
