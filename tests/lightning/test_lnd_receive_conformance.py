"""The simulated LND node's receiving side, as an independent lnd client meets it.

A raw gRPC client (no adapter) calls the invoice RPCs of ``lnrpc.Lightning`` and the
``invoicesrpc.Invoices`` service; messages are checked against lnd's swagger
(shared/conformance/lnd), errors against lnd's codes and texts (named in the server modules).
An outside node of the network (bob) pays, as a customer would.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.lightning.lnd_proto import invoices_pb2, invoices_pb2_grpc
from services.lightning.lnd_proto import lightning_pb2 as ln
from services.sim import lnd_server
from services.sim.lnd_invoices import LightningInvoices
from services.sim.lnd_invoicesrpc import InvoicesServicer
from services.sim.lnd_lightning import LightningServicer
from services.sim.lnd_router import RouterServicer
from tests.lightning.lnd_harness import CONDITION_TIMEOUT_S, MAX_FEE_MSAT, lnd_harness
from tests.lightning.test_lnd_conformance import (
    _LIGHTNING_STUB,
    _ROUTER_STUB,
    _rpc_error,
    assert_conforms,
    needs_swagger,
)
from tests.lightning.test_lnd_conformance import RawLnd as _RawLnd

_INVOICES_STUB: Any = invoices_pb2_grpc.InvoicesStub


@dataclass
class RawLnd(_RawLnd):
    invoices: Any = None


def preimage_of(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[RawLnd]:
    """The conformance suite's raw client, with the invoices service's stub as well."""
    async with lnd_harness(tmp_path) as harness:
        credentials = harness.server.credentials
        channel_credentials = grpc.ssl_channel_credentials(credentials.cert_path.read_bytes())
        target = f"{harness.server.host}:{harness.server.port}"
        async with grpc.aio.secure_channel(target, channel_credentials) as channel:
            yield RawLnd(
                lightning=_LIGHTNING_STUB(channel),
                router=_ROUTER_STUB(channel),
                harness=harness,
                metadata=(("macaroon", credentials.macaroon_path.read_bytes().hex()),),
                invoices=_INVOICES_STUB(channel),
            )


async def pay_from_bob(raw: RawLnd, bolt11: str, *, wait: bool = True) -> Any:
    network = raw.harness.network
    sent = await network.send_payment(
        "bob", payment_request=bolt11, max_fee_msat=MAX_FEE_MSAT, timeout_s=5.0
    )
    if not wait:
        return sent
    return await network.wait_payment("bob", sent.payment_hash, timeout_s=CONDITION_TIMEOUT_S)


async def test_add_invoice_takes_a_chosen_preimage_and_refuses_a_duplicate(
    raw: RawLnd,
) -> None:
    md = raw.metadata
    preimage = preimage_of("chosen")
    added = await raw.lightning.AddInvoice(
        ln.Invoice(memo="chosen", value_msat=20_000, r_preimage=preimage), metadata=md
    )
    assert added.r_hash == hashlib.sha256(preimage).digest()
    error = await _rpc_error(
        raw.lightning.AddInvoice(ln.Invoice(value_msat=1, r_preimage=preimage), metadata=md)
    )
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details() == "invoice with payment hash already exists"
    short = await _rpc_error(
        raw.lightning.AddInvoice(ln.Invoice(value_msat=1, r_preimage=b"\x01" * 31), metadata=md)
    )
    assert short.details() == "invalid preimage length of 31, want 32"


@needs_swagger
async def test_settled_invoice_fields_and_lookups(raw: RawLnd) -> None:
    md = raw.metadata
    preimage = preimage_of("settled")
    added = await raw.lightning.AddInvoice(
        ln.Invoice(memo="paid", value_msat=30_000, r_preimage=preimage), metadata=md
    )
    assert (await pay_from_bob(raw, added.payment_request)).status == "succeeded"
    stored = await raw.lightning.LookupInvoice(ln.PaymentHash(r_hash=added.r_hash), metadata=md)
    invoice = assert_conforms("lightning.swagger.json", "lnrpcInvoice", stored)
    assert invoice["state"] == "SETTLED" and invoice["settled"] is True
    assert (invoice["settle_index"], invoice["add_index"]) == ("1", "1")
    assert (invoice["amt_paid_msat"], invoice["amt_paid_sat"]) == ("30000", "30")
    assert stored.r_preimage == preimage
    v2 = await raw.invoices.LookupInvoiceV2(
        invoices_pb2.LookupInvoiceMsg(payment_hash=added.r_hash), metadata=md
    )
    assert v2 == stored
    missing = await _rpc_error(
        raw.invoices.LookupInvoiceV2(
            invoices_pb2.LookupInvoiceMsg(payment_hash=b"\x00" * 32), metadata=md
        )
    )
    assert (missing.code(), missing.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "unable to locate invoice",
    )


@needs_swagger
async def test_settle_index_follows_settlement_order_and_list_invoices_pages(
    raw: RawLnd,
) -> None:
    md = raw.metadata
    added = [
        await raw.lightning.AddInvoice(ln.Invoice(value_msat=1000 + i), metadata=md)
        for i in range(3)
    ]
    for invoice in (added[2], added[0]):
        await pay_from_bob(raw, invoice.payment_request)
    listed = await raw.lightning.ListInvoices(
        ln.ListInvoiceRequest(index_offset=0, num_max_invoices=2), metadata=md
    )
    page = assert_conforms("lightning.swagger.json", "lnrpcListInvoiceResponse", listed)
    assert [i["add_index"] for i in page["invoices"]] == ["1", "2"]
    assert (page["first_index_offset"], page["last_index_offset"]) == ("1", "2")
    rest = await raw.lightning.ListInvoices(
        ln.ListInvoiceRequest(index_offset=2, num_max_invoices=2), metadata=md
    )
    assert [i.add_index for i in rest.invoices] == [3]
    settle = {i.add_index: i.settle_index for i in [*listed.invoices, *rest.invoices]}
    assert settle == {1: 2, 2: 0, 3: 1}  # the third was paid first
    pending = await raw.lightning.ListInvoices(
        ln.ListInvoiceRequest(pending_only=True), metadata=md
    )
    assert [i.add_index for i in pending.invoices] == [2]


async def test_subscribe_invoices_backlog_then_live(raw: RawLnd) -> None:
    md = raw.metadata
    first = await raw.lightning.AddInvoice(ln.Invoice(value_msat=5_000), metadata=md)
    await pay_from_bob(raw, first.payment_request)
    second = await raw.lightning.AddInvoice(ln.Invoice(value_msat=6_000), metadata=md)
    # The backlog: invoices added after add_index 1 (the second, OPEN) and settled after
    # settle_index 1 (none); then live updates. Reading the backlog proves the stream is open.
    call = raw.lightning.SubscribeInvoices(
        ln.InvoiceSubscription(add_index=1, settle_index=1), metadata=md
    )
    try:
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            added = await call.read()
            assert (added.state, added.add_index) == (ln.Invoice.OPEN, 2)
            await pay_from_bob(raw, second.payment_request)
            settled = await call.read()
        assert (settled.state, settled.settle_index) == (ln.Invoice.SETTLED, 2)
        assert settled.r_hash == second.r_hash
    finally:
        call.cancel()
    # settle_index 0 means "no backlog" in lnd; 1 would send the second settlement again.
    replay = raw.lightning.SubscribeInvoices(ln.InvoiceSubscription(settle_index=1), metadata=md)
    try:
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            again = await replay.read()
        assert again.r_hash == second.r_hash and again.settle_index == 2
    finally:
        replay.cancel()


async def test_expired_invoice_is_canceled(raw: RawLnd) -> None:
    md = raw.metadata
    added = await raw.lightning.AddInvoice(ln.Invoice(value_msat=1_000), metadata=md)
    raw.harness.network.faults.expire_invoice(added.r_hash.hex())
    stored = await raw.lightning.LookupInvoice(ln.PaymentHash(r_hash=added.r_hash), metadata=md)
    assert stored.state == ln.Invoice.CANCELED


@needs_swagger
async def test_channel_balance(raw: RawLnd) -> None:
    md = raw.metadata
    balance = await raw.lightning.ChannelBalance(ln.ChannelBalanceRequest(), metadata=md)
    document = assert_conforms("lightning.swagger.json", "lnrpcChannelBalanceResponse", balance)
    channels = raw.harness.network.channels_of(raw.harness.node)
    local_msat = sum(c.local_balance_msat for c in channels)
    remote_msat = sum(c.remote_balance_msat for c in channels)
    assert document["local_balance"] == {"sat": str(local_msat // 1000), "msat": str(local_msat)}
    assert int(document["remote_balance"]["msat"]) == remote_msat
    assert document["unsettled_local_balance"] == {"sat": "0", "msat": "0"}


@needs_swagger
async def test_hold_invoice_is_held_until_settled(raw: RawLnd) -> None:
    md = raw.metadata
    stub = raw.invoices
    preimage = preimage_of("hold")
    payment_hash = hashlib.sha256(preimage).digest()
    added = await stub.AddHoldInvoice(
        invoices_pb2.AddHoldInvoiceRequest(hash=payment_hash, value_msat=40_000, memo="hold"),
        metadata=md,
    )
    assert_conforms("invoices.swagger.json", "invoicesrpcAddHoldInvoiceResp", added)
    early = await _rpc_error(stub.SettleInvoice(invoices_pb2.SettleInvoiceMsg(preimage=preimage),
                                                metadata=md))  # fmt: skip
    assert (early.code(), early.details()) == (grpc.StatusCode.UNKNOWN, "invoice still open")
    updates = stub.SubscribeSingleInvoice(
        invoices_pb2.SubscribeSingleInvoiceRequest(r_hash=payment_hash), metadata=md
    )
    try:
        async with asyncio.timeout(CONDITION_TIMEOUT_S):
            assert (await updates.read()).state == ln.Invoice.OPEN
            sent = await pay_from_bob(raw, added.payment_request, wait=False)
            accepted = await updates.read()
            assert accepted.state == ln.Invoice.ACCEPTED and accepted.amt_paid_msat == 40_000
            network = raw.harness.network
            # The HTLC is held: the payer's payment stays in flight.
            assert network.get_payment("bob", sent.payment_hash).status == "in_flight"
            await stub.SettleInvoice(invoices_pb2.SettleInvoiceMsg(preimage=preimage), metadata=md)
            settled = await updates.read()
            assert settled.state == ln.Invoice.SETTLED and settled.r_preimage == preimage
            assert await updates.read() is grpc.aio.EOF  # type: ignore[attr-defined]
        assert_conforms("invoices.swagger.json", "lnrpcInvoice", settled)
    finally:
        updates.cancel()
    final = await network.wait_payment("bob", sent.payment_hash, timeout_s=CONDITION_TIMEOUT_S)
    assert final.status == "succeeded" and final.preimage == preimage.hex()
    # Settling again is no error; cancelling a settled invoice is.
    await stub.SettleInvoice(invoices_pb2.SettleInvoiceMsg(preimage=preimage), metadata=md)
    late = await _rpc_error(
        stub.CancelInvoice(invoices_pb2.CancelInvoiceMsg(payment_hash=payment_hash), metadata=md)
    )
    assert late.details() == "invoice already settled"
    network.check_invariants()


async def test_cancelled_hold_invoice_fails_the_held_htlc(raw: RawLnd) -> None:
    md = raw.metadata
    stub = raw.invoices
    payment_hash = hashlib.sha256(preimage_of("cancel")).digest()
    added = await stub.AddHoldInvoice(
        invoices_pb2.AddHoldInvoiceRequest(hash=payment_hash, value_msat=8_000), metadata=md
    )
    network = raw.harness.network
    sent = await pay_from_bob(raw, added.payment_request, wait=False)

    def accepted() -> bool:
        invoice = network.lookup_invoice(raw.harness.node, payment_hash.hex())
        return invoice is not None and invoice.state == "accepted"

    deadline = asyncio.get_running_loop().time() + CONDITION_TIMEOUT_S
    while not accepted():
        assert asyncio.get_running_loop().time() < deadline, "the HTLC never arrived"
        await asyncio.sleep(0.005)
    await stub.CancelInvoice(invoices_pb2.CancelInvoiceMsg(payment_hash=payment_hash), metadata=md)
    await stub.CancelInvoice(invoices_pb2.CancelInvoiceMsg(payment_hash=payment_hash), metadata=md)
    final = await network.wait_payment("bob", sent.payment_hash, timeout_s=CONDITION_TIMEOUT_S)
    assert final.status == "failed"
    stored = await raw.lightning.LookupInvoice(ln.PaymentHash(r_hash=payment_hash), metadata=md)
    assert stored.state == ln.Invoice.CANCELED and stored.amt_paid_msat == 0
    network.check_invariants()


def test_the_server_docstring_names_exactly_what_is_served() -> None:
    """The module says which calls are served; nothing more, nothing less."""
    doc = lnd_server.__doc__ or ""
    claimed = set(re.findall(r"\b([A-Z][A-Za-z0-9]+)\b(?=[,;.]|\s\()", doc))
    served = set()
    for servicer in (LightningServicer, LightningInvoices, RouterServicer, InvoicesServicer):
        for name, member in vars(servicer).items():
            is_rpc = inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member)
            if is_rpc and name[0].isupper():
                served.add(name)
    assert served <= claimed, served - claimed
    assert "HtlcModifier" not in served
    # Every method named in the docstring's lists is served.
    listed = {
        name
        for line in doc.split("- ")[1:]
        for name in re.findall(r"\b([A-Z][a-z]+[A-Z][A-Za-z0-9]*)\b", line.split(":", 1)[-1])
    }
    assert listed == served, listed ^ served


async def test_a_missing_call_is_unimplemented(raw: RawLnd) -> None:
    # A client must be able to tell "not served" from "pending": lnd's own answer for it.
    error = await _rpc_error(raw.lightning.ListPeers(ln.ListPeersRequest(), metadata=raw.metadata))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
