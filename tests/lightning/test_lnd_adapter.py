"""LndAdapter against a simulated LND node served through lnd's real gRPC API (TLS + macaroon).

Only the LND-specific cases live here; test_adapter_contract.py runs the common contract
(every failure reason, duplicates, timeouts, offline recovery) against the ``lnd`` kind too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.lightning.lnd import LndAdapter
from services.lightning.port import (
    FailureReason,
    NodeError,
    NodePort,
    PaymentFailed,
    PaymentInFlight,
    PaymentSucceeded,
    PayRequest,
)
from tests.lightning.lnd_harness import MAX_FEE_MSAT, LndHarness, lnd_harness, wait_until


@pytest.fixture
async def lnd(tmp_path: Path) -> AsyncIterator[LndHarness]:
    async with lnd_harness(tmp_path) as harness:
        yield harness


def _pay_request(bolt11: str | None, **fields: object) -> PayRequest:
    values: dict[str, object] = {"max_fee_msat": MAX_FEE_MSAT, "timeout_s": 5.0}
    values.update(fields)
    return PayRequest(payment_request=bolt11, **values)  # type: ignore[arg-type]


async def test_adapter_satisfies_the_port(lnd: LndHarness) -> None:
    assert isinstance(lnd.adapter, NodePort)


async def test_decode_rejects_garbage(lnd: LndHarness) -> None:
    with pytest.raises(NodeError):
        await lnd.adapter.decode("lnbcrt1notaninvoice")


async def test_pay_rejects_a_malformed_invoice_before_calling_the_node(lnd: LndHarness) -> None:
    with pytest.raises(ValueError):
        await lnd.adapter.pay(_pay_request("lnbcrt1notaninvoice"))
    assert lnd.network.payments() == []


async def test_success_reports_the_route_and_tracks(lnd: LndHarness) -> None:
    invoice = lnd.invoice(100_000)
    result = await lnd.adapter.pay(_pay_request(invoice.bolt11))
    assert isinstance(result, PaymentSucceeded)
    assert hashlib.sha256(bytes.fromhex(result.preimage)).hexdigest() == invoice.payment_hash
    assert result.amount_msat == 100_000
    assert 0 < result.fee_msat <= MAX_FEE_MSAT
    assert [hop.pubkey for hop in result.hops] == [
        lnd.network.node("hub").pubkey,
        lnd.network.node("bob").pubkey,
    ]
    assert await lnd.adapter.lookup_payment(invoice.payment_hash) == result
    assert [update async for update in lnd.adapter.payment_updates(invoice.payment_hash)] == [
        result
    ]
    (truth,) = lnd.attempts(invoice.payment_hash)
    assert (truth.status, truth.fee_msat, truth.preimage) == (
        "succeeded",
        result.fee_msat,
        result.preimage,
    )


async def test_pay_open_amount_invoice(lnd: LndHarness) -> None:
    invoice = lnd.invoice(None)
    with pytest.raises(ValueError):
        await lnd.adapter.pay(_pay_request(invoice.bolt11))
    result = await lnd.adapter.pay(_pay_request(invoice.bolt11, amount_msat=42_000))
    assert isinstance(result, PaymentSucceeded) and result.amount_msat == 42_000


async def test_keysend(lnd: LndHarness) -> None:
    preimage = hashlib.sha256(b"keysend-1").hexdigest()
    request = PayRequest(
        destination=lnd.network.node("bob").pubkey,
        amount_msat=7_000,
        keysend_preimage=preimage,
        max_fee_msat=MAX_FEE_MSAT,
        timeout_s=5.0,
    )
    result = await lnd.adapter.pay(request)
    assert isinstance(result, PaymentSucceeded) and result.preimage == preimage
    # The retry after a crash reuses the preimage, so it is answered from the record.
    assert await lnd.adapter.pay(request) == result
    assert len(lnd.attempts(result.payment_hash)) == 1


async def _assert_fails(lnd: LndHarness, bolt11: str, reason: FailureReason) -> PaymentFailed:
    result = await lnd.adapter.pay(_pay_request(bolt11))
    assert isinstance(result, PaymentFailed), result
    assert result.reason is reason, result
    return result


async def test_no_route_when_fee_limit_allows_no_path(lnd: LndHarness) -> None:
    # lnd with a zero fee limit considers only fee-free routes (router.proto, fee_limit_msat).
    invoice = lnd.invoice()
    result = await lnd.adapter.pay(_pay_request(invoice.bolt11, max_fee_msat=0))
    assert isinstance(result, PaymentFailed) and result.reason is FailureReason.NO_ROUTE
    assert result.detail == "FAILURE_REASON_NO_ROUTE"


async def test_invoice_expired_is_refused_before_sending(lnd: LndHarness) -> None:
    invoice = lnd.invoice()
    lnd.network.faults.expire_invoice(invoice.payment_hash)
    result = await _assert_fails(lnd, invoice.bolt11 or "", FailureReason.INVOICE_EXPIRED)
    assert "invoice expired" in result.detail
    # Like lnd, no payment was registered: nothing to track, no HTLC ever locked.
    assert await lnd.adapter.lookup_payment(invoice.payment_hash) is None
    assert all(not attempt.hops for attempt in lnd.attempts(invoice.payment_hash))


async def test_a_failed_hash_may_be_paid_again(lnd: LndHarness) -> None:
    invoice = lnd.invoice()
    failed = await lnd.adapter.pay(_pay_request(invoice.bolt11, max_fee_msat=0))
    assert isinstance(failed, PaymentFailed)
    # A FAILED attempt can no longer pay, so a new attempt cannot pay twice.
    again = await lnd.adapter.pay(_pay_request(invoice.bolt11))
    assert isinstance(again, PaymentSucceeded)
    assert [a.status for a in lnd.attempts(invoice.payment_hash)] == ["failed", "succeeded"]


async def test_a_vouched_send_of_a_live_hash_answers_in_flight_at_once(lnd: LndHarness) -> None:
    # The caller skipped its look-up (first delivery); lnd refuses the second send, and the
    # adapter answers with the live payment's state instead of waiting for it to end.
    lnd.network.faults.drop_resolution(node="bob")
    invoice = lnd.invoice()
    first = asyncio.create_task(lnd.adapter.pay(_pay_request(invoice.bolt11, timeout_s=30.0)))
    await wait_until(lambda: len(lnd.attempts(invoice.payment_hash)) == 1)
    vouched = _pay_request(invoice.bolt11, timeout_s=60.0, node_record_checked=True)
    # Waiting for the held payment would take the whole 60 s timeout.
    again = await asyncio.wait_for(lnd.adapter.pay(vouched), timeout=10)
    assert isinstance(again, PaymentInFlight)
    lnd.network.faults.release_dropped()
    assert isinstance(await first, PaymentSucceeded)
    assert [a.status for a in lnd.attempts(invoice.payment_hash)] == ["succeeded"]


async def test_slow_node_answers_late_and_times_out(lnd: LndHarness) -> None:
    latency_s = 0.3
    lnd.network.faults.slow_node("alice", latency_s)
    started_s = time.monotonic()
    assert (await lnd.adapter.get_info()).alias == "alice"
    assert time.monotonic() - started_s >= latency_s

    impatient = LndAdapter.from_uri(lnd.server.endpoint, timeout_s=latency_s / 3)
    try:
        with pytest.raises(NodeError) as raised:
            await impatient.get_info()
        assert raised.value.reason is FailureReason.TIMEOUT
    finally:
        await impatient.close()


async def test_list_channels_and_liquidity(lnd: LndHarness) -> None:
    invoice = lnd.invoice(250_000)
    paid = await lnd.adapter.pay(_pay_request(invoice.bolt11))
    assert isinstance(paid, PaymentSucceeded)

    channels = await lnd.adapter.list_channels()
    truth = {chan.channel_id: chan for chan in lnd.network.channels_of("alice")}
    assert {chan.channel_id for chan in channels} == set(truth)
    for chan in channels:
        expected = truth[chan.channel_id]
        assert chan.peer_pubkey == expected.peer_pubkey
        assert chan.capacity_msat == expected.capacity_msat
        # lnrpc.Channel reports whole satoshis.
        assert chan.local_balance_msat == expected.local_balance_msat // 1000 * 1000
        assert chan.remote_balance_msat == expected.remote_balance_msat // 1000 * 1000
        assert chan.active == expected.active

    summary = await lnd.adapter.liquidity_summary()
    assert (summary.channels, summary.active_channels) == (1, 1)
    assert summary.outbound_msat == channels[0].local_balance_msat
    assert summary.max_sendable_msat == channels[0].local_balance_msat
    assert summary.inbound_msat == channels[0].remote_balance_msat

    lnd.network.faults.set_offline("hub")
    assert (await lnd.adapter.liquidity_summary()).active_channels == 0


async def test_wrong_macaroon_is_refused(lnd: LndHarness, tmp_path: Path) -> None:
    forged = tmp_path / "forged.macaroon"
    forged.write_bytes(b"\x02" * 64)
    adapter = LndAdapter(
        lnd.server.host, lnd.server.port, lnd.server.credentials.cert_path, forged, timeout_s=2
    )
    try:
        with pytest.raises(NodeError) as raised:
            await adapter.get_info()
        assert "UNAUTHENTICATED" in str(raised.value)
    finally:
        await adapter.close()


async def test_certificate_of_another_node_is_refused(lnd: LndHarness, tmp_path: Path) -> None:
    async with lnd_harness(tmp_path / "other") as other:
        adapter = LndAdapter(
            lnd.server.host,
            lnd.server.port,
            other.server.credentials.cert_path,
            lnd.server.credentials.macaroon_path,
            timeout_s=2,
        )
        try:
            with pytest.raises(NodeError) as raised:
                await adapter.get_info()
            assert raised.value.reason is FailureReason.NODE_UNAVAILABLE
        finally:
            await adapter.close()


async def test_secrets_stay_out_of_reprs_errors_and_logs(
    lnd: LndHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = lnd.server.credentials
    macaroon_hex = credentials.macaroon_path.read_bytes().hex()
    key_pem = (credentials.cert_path.parent / "tls.key").read_text()
    key_body = "".join(key_pem.splitlines()[1:-1])
    secrets = (macaroon_hex, macaroon_hex.upper(), key_body)

    texts = [repr(lnd.adapter), repr(lnd.server), repr(credentials), lnd.server.endpoint]
    invoice = lnd.invoice()
    await lnd.adapter.pay(_pay_request(invoice.bolt11))
    lnd.network.faults.set_offline("alice")
    for failing in (lnd.adapter.get_info(), lnd.adapter.decode("lnbcrt1x")):
        with pytest.raises(NodeError) as raised:
            await failing
        texts += [str(raised.value), repr(raised.value)]
    lnd.network.faults.set_offline("alice", offline=False)
    forged = tmp_path / "forged.macaroon"
    forged.write_bytes(b"\x03" * 64)
    wrong = LndAdapter(lnd.server.host, lnd.server.port, credentials.cert_path, forged)
    with pytest.raises(NodeError) as refused:
        await wrong.get_info()
    await wrong.close()
    texts += [str(refused.value), repr(refused.value), repr(wrong)]
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]

    assert "lnd_pay_started" in captured.out  # the logs were captured and are checked
    for text in texts:
        for secret in secrets:
            assert secret not in text
