"""One contract for every NodePort adapter, run against each kind of ``adapter_env``.

Simulated kinds (conftest.ENV_FACTORIES: CLN paying with xpay, the default, and with pay, the
opt-in; LND) script faults and check the network's ground truth; the same bodies run against
real nodes from test_real_nodes.py (cases that need fault controls skip there). CLN-only cases
(the xpay error table, the URI options) are in test_cln_adapter.py.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from services.bolt11.codec import encode_invoice
from services.lightning.port import (
    PAYMENT_PAGE_MAX,
    ChannelOpening,
    FailureReason,
    NodeError,
    PaymentFailed,
    PaymentInFlight,
    PaymentResult,
    PaymentSucceeded,
    PayRequest,
    PendingChannel,
    WalletBalance,
)
from services.sim.chain import CLOSING_TX_VSIZE, FUNDING_TX_VSIZE
from services.sim.channel_ops import FUNDING_CONFIRMATIONS
from tests.lightning.conftest import MAX_FEE_MSAT, AdapterEnv, wait_until


def pay_request(bolt11: str, *, timeout_s: float = 5.0, **fields: object) -> PayRequest:
    values: dict[str, object] = {"max_fee_msat": MAX_FEE_MSAT, "timeout_s": timeout_s}
    values.update(fields)
    return PayRequest(payment_request=bolt11, **values)  # type: ignore[arg-type]


def assert_failed(result: PaymentResult, *reasons: FailureReason) -> PaymentFailed:
    assert isinstance(result, PaymentFailed), result
    assert result.reason in reasons, result
    return result


async def test_get_info(adapter_env: AdapterEnv) -> None:
    info = await adapter_env.adapter.get_info()
    assert len(info.pubkey) == 66
    assert info.network in {"mainnet", "testnet", "signet", "regtest"}
    assert info.block_height > 0
    if adapter_env.network is not None:
        node = adapter_env.network.node(adapter_env.node)
        assert info.pubkey == node.pubkey
        assert info.network == "regtest"
        assert info.block_height == adapter_env.network.block_height


async def test_invoice_create_and_decode(adapter_env: AdapterEnv) -> None:
    adapter = adapter_env.adapter
    info = await adapter.get_info()
    invoice = await adapter.create_invoice(12_345, "contract memo", 600)
    assert invoice.amount_msat == 12_345 and invoice.expiry_s == 600
    decoded = await adapter.decode(invoice.payment_request)
    assert decoded.payment_hash == invoice.payment_hash
    assert decoded.destination == info.pubkey
    assert decoded.amount_msat == 12_345
    assert decoded.description == "contract memo"
    assert decoded.network == info.network
    assert (decoded.created_at_s, decoded.expiry_s) == (invoice.created_at_s, 600)
    open_amount = await adapter.create_invoice(None, "any amount", 600)
    assert (await adapter.decode(open_amount.payment_request)).amount_msat is None
    if adapter_env.network is not None:
        stored = adapter_env.network.lookup_invoice(adapter_env.node, invoice.payment_hash)
        assert stored is not None and stored.state == "open"


async def test_pay_and_track_success(adapter_env: AdapterEnv) -> None:
    invoice = await adapter_env.merchant_invoice(100_000)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert isinstance(result, PaymentSucceeded), result
    assert hashlib.sha256(bytes.fromhex(result.preimage)).hexdigest() == invoice.payment_hash
    assert result.amount_msat == 100_000
    assert 0 <= result.fee_msat <= MAX_FEE_MSAT
    assert await adapter_env.adapter.lookup_payment(invoice.payment_hash) == result
    updates = [u async for u in adapter_env.adapter.payment_updates(invoice.payment_hash)]
    assert updates[-1] == result
    if adapter_env.network is not None:
        (truth,) = adapter_env.attempts(invoice.payment_hash)
        assert truth.status == "succeeded" and truth.origin == adapter_env.node
        assert (truth.preimage, truth.fee_msat) == (result.preimage, result.fee_msat)


async def test_lookup_of_unknown_hash_is_none(adapter_env: AdapterEnv) -> None:
    assert await adapter_env.adapter.lookup_payment("00" * 32) is None


async def test_duplicate_pay_returns_the_node_record(adapter_env: AdapterEnv) -> None:
    invoice = await adapter_env.merchant_invoice(50_000)
    first = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    second = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert isinstance(first, PaymentSucceeded)
    assert second == first
    if adapter_env.network is not None:
        assert len(adapter_env.attempts(invoice.payment_hash)) == 1


async def test_concurrent_duplicate_pays_send_once(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.delay_resolution(0.2)
    invoice = await adapter_env.merchant_invoice(40_000)
    results = await asyncio.gather(
        *(adapter_env.adapter.pay(pay_request(invoice.payment_request)) for _ in range(3))
    )
    assert all(isinstance(r, PaymentSucceeded) for r in results), results
    assert len({r for r in results}) == 1
    assert len(adapter_env.attempts(invoice.payment_hash)) == 1


async def test_no_route(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    invoice = await adapter_env.merchant_invoice(10_000)
    sim.faults.set_offline("bob")  # the only channel to bob goes inactive
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert_failed(result, FailureReason.NO_ROUTE)


async def test_insufficient_liquidity(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    for channel in sim.channels_of(adapter_env.node):
        sim.faults.drain_channel(channel.channel_id, toward=channel.peer)
    invoice = await adapter_env.merchant_invoice(10_000)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert_failed(result, FailureReason.INSUFFICIENT_LIQUIDITY)
    assert (await adapter_env.adapter.liquidity_summary()).outbound_msat == 0


async def test_htlc_timeout_fails_with_timeout(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.drop_resolution(timeout_s=0.05)
    invoice = await adapter_env.merchant_invoice(10_000)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert_failed(result, FailureReason.TIMEOUT)
    (truth,) = adapter_env.attempts(invoice.payment_hash)
    assert truth.failure_reason is FailureReason.TIMEOUT


async def test_incorrect_details_for_an_invoice_the_payee_never_issued(
    adapter_env: AdapterEnv,
) -> None:
    sim = adapter_env.sim
    forged = encode_invoice(
        privkey=sim.node("bob").privkey,
        network=sim.network,
        payment_hash=hashlib.sha256(b"never issued").hexdigest(),
        payment_secret="11" * 32,
        amount_msat=10_000,
        description="not in bob's database",
        created_at_s=int(sim.now_s()),
        expiry_s=600,
    )
    result = await adapter_env.adapter.pay(pay_request(forged))
    assert_failed(result, FailureReason.INCORRECT_DETAILS)


async def test_invoice_expired(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    invoice = await adapter_env.merchant_invoice(10_000)
    sim.faults.expire_invoice(invoice.payment_hash)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert_failed(result, FailureReason.INVOICE_EXPIRED)


async def test_already_paid_with_another_amount(adapter_env: AdapterEnv) -> None:
    invoice = await adapter_env.merchant_invoice(None)
    first = await adapter_env.adapter.pay(pay_request(invoice.payment_request, amount_msat=7000))
    assert isinstance(first, PaymentSucceeded)
    again = await adapter_env.adapter.pay(pay_request(invoice.payment_request, amount_msat=9000))
    assert_failed(again, FailureReason.ALREADY_PAID)
    if adapter_env.network is not None:
        assert len(adapter_env.attempts(invoice.payment_hash)) == 1


async def test_invoice_settled_by_another_node(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    invoice = await adapter_env.merchant_invoice(10_000)
    await sim.send_payment(
        "dave", payment_request=invoice.payment_request, max_fee_msat=MAX_FEE_MSAT, timeout_s=5
    )
    assert (await sim.wait_payment("dave", invoice.payment_hash, 5)).status == "succeeded"
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    # On the wire the payee only says incorrect_or_unknown_payment_details (BOLT 4).
    assert_failed(result, FailureReason.INCORRECT_DETAILS, FailureReason.ALREADY_PAID)
    ours = [p for p in adapter_env.attempts(invoice.payment_hash) if p.origin == adapter_env.node]
    assert [p.failure_reason for p in ours] == [FailureReason.ALREADY_PAID]
    assert sum(p.status == "succeeded" for p in adapter_env.attempts(invoice.payment_hash)) == 1


async def test_unknown_failure_stays_unknown(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.fail_route(node="bob", reason=FailureReason.UNKNOWN)
    invoice = await adapter_env.merchant_invoice(10_000)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert_failed(result, FailureReason.UNKNOWN)


async def test_node_unavailable(adapter_env: AdapterEnv) -> None:
    invoice = await adapter_env.merchant_invoice(10_000)
    await adapter_env.set_offline(True)
    with pytest.raises(NodeError) as info:
        await adapter_env.adapter.get_info()
    assert info.value.reason is FailureReason.NODE_UNAVAILABLE
    with pytest.raises(NodeError) as info:
        await adapter_env.adapter.pay(pay_request(invoice.payment_request))
    assert info.value.reason is FailureReason.NODE_UNAVAILABLE
    assert adapter_env.attempts(invoice.payment_hash) == []  # nothing was sent
    await adapter_env.set_offline(False)
    assert isinstance(
        await adapter_env.adapter.pay(pay_request(invoice.payment_request)), PaymentSucceeded
    )


async def test_pay_timeout_is_in_flight_and_lookup_recovers(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.drop_resolution()
    invoice = await adapter_env.merchant_invoice(10_000)
    result = await adapter_env.adapter.pay(pay_request(invoice.payment_request, timeout_s=0.3))
    assert isinstance(result, PaymentInFlight), result
    assert isinstance(
        await adapter_env.adapter.lookup_payment(invoice.payment_hash), PaymentInFlight
    )
    # A retry while in flight must not send again.
    retry = await adapter_env.adapter.pay(pay_request(invoice.payment_request, timeout_s=0.3))
    assert isinstance(retry, PaymentInFlight), retry
    assert len(adapter_env.attempts(invoice.payment_hash)) == 1
    sim.faults.release_dropped()
    final: list[PaymentResult] = []
    async for update in adapter_env.adapter.payment_updates(invoice.payment_hash):
        final.append(update)
    assert isinstance(final[-1], PaymentSucceeded)
    assert await adapter_env.adapter.lookup_payment(invoice.payment_hash) == final[-1]


async def test_node_offline_mid_payment_then_recovery(adapter_env: AdapterEnv) -> None:
    sim = adapter_env.sim
    sim.faults.drop_resolution()
    invoice = await adapter_env.merchant_invoice(10_000)
    paying = asyncio.create_task(adapter_env.adapter.pay(pay_request(invoice.payment_request)))
    await wait_until(lambda: len(adapter_env.attempts(invoice.payment_hash)) == 1)
    await adapter_env.set_offline(True)
    result = await paying
    assert isinstance(result, PaymentInFlight), result  # unknown is not failed
    with pytest.raises(NodeError):
        await adapter_env.adapter.lookup_payment(invoice.payment_hash)
    sim.faults.release_dropped()  # the HTLC stays stuck while our node is down
    assert adapter_env.attempts(invoice.payment_hash)[0].status == "in_flight"
    await adapter_env.set_offline(False)
    recovered: list[PaymentResult | None] = []

    async def settled() -> bool:
        recovered.append(await adapter_env.adapter.lookup_payment(invoice.payment_hash))
        return isinstance(recovered[-1], PaymentSucceeded)

    deadline = asyncio.get_running_loop().time() + 5
    while not await settled():
        assert asyncio.get_running_loop().time() < deadline, recovered[-1]
        await asyncio.sleep(0.01)
    assert len(adapter_env.attempts(invoice.payment_hash)) == 1


async def test_list_channels_and_liquidity(adapter_env: AdapterEnv) -> None:
    channels = await adapter_env.adapter.list_channels()
    summary = await adapter_env.adapter.liquidity_summary()
    assert summary.channels == len(channels)
    assert summary.outbound_msat == sum(c.local_balance_msat for c in channels if c.active)
    for channel in channels:
        assert channel.local_balance_msat + channel.remote_balance_msat <= channel.capacity_msat
    if adapter_env.network is not None:
        truth = {c.channel_id: c for c in adapter_env.network.channels_of(adapter_env.node)}
        assert {c.channel_id for c in channels} == set(truth)
        for channel in channels:
            expected = truth[channel.channel_id]
            assert channel.peer_pubkey == expected.peer_pubkey
            assert channel.capacity_msat == expected.capacity_msat
            assert channel.local_balance_msat == expected.local_balance_msat
            assert channel.active == expected.active
        assert summary.max_sendable_msat == max(c.local_balance_msat for c in truth.values())
        adapter_env.network.faults.set_offline("hub")
        assert not any(c.active for c in await adapter_env.adapter.list_channels())


async def _list_end(adapter_env: AdapterEnv) -> int:
    """The index after which nothing is listed yet (real nodes may have history)."""
    cursor = 0
    while True:
        page = await adapter_env.adapter.list_payments(after_index=cursor, limit=PAYMENT_PAGE_MAX)
        if not page.records:
            assert page.next_index == cursor
            return cursor
        cursor = page.next_index


async def test_list_payments_pages_the_whole_record(adapter_env: AdapterEnv) -> None:
    start = await _list_end(adapter_env)
    paid = []
    for amount_msat in (11_000, 12_000, 13_000):
        invoice = await adapter_env.merchant_invoice(amount_msat)
        result = await adapter_env.adapter.pay(pay_request(invoice.payment_request))
        assert isinstance(result, PaymentSucceeded), result
        paid.append(result)
    first = await adapter_env.adapter.list_payments(after_index=start, limit=2)
    second = await adapter_env.adapter.list_payments(after_index=first.next_index, limit=2)
    end = await adapter_env.adapter.list_payments(after_index=second.next_index, limit=2)
    # The page boundary: two, then the one left, then an empty page that keeps the cursor.
    assert len(first.records) == 2 and len(second.records) == 1
    assert end.records == () and end.next_index == second.next_index
    records = first.records + second.records
    indexes = [record.index for record in records]
    assert indexes == sorted(set(indexes)) and indexes[0] > start
    assert first.next_index == indexes[1] and second.next_index == indexes[2]
    for record, result in zip(records, paid, strict=True):
        assert record.payment_hash == result.payment_hash and record.status == "succeeded"
        assert (record.amount_msat, record.fee_msat) == (result.amount_msat, result.fee_msat)
        assert record.preimage == result.preimage


async def test_list_payments_shows_failures_and_sends_we_never_made(
    adapter_env: AdapterEnv,
) -> None:
    sim = adapter_env.sim
    start = await _list_end(adapter_env)
    sim.faults.drop_resolution(timeout_s=0.05)
    failed_invoice = await adapter_env.merchant_invoice(10_000)
    failed = await adapter_env.adapter.pay(pay_request(failed_invoice.payment_request))
    assert_failed(failed, FailureReason.TIMEOUT)
    # A payment made on the node behind the adapter's back is on the node's list all the same.
    behind = await adapter_env.merchant_invoice(21_000)
    sent = await sim.send_payment(
        adapter_env.node, payment_request=behind.payment_request, max_fee_msat=MAX_FEE_MSAT,
        timeout_s=5.0,
    )  # fmt: skip
    await sim.wait_payment(adapter_env.node, sent.payment_hash, timeout_s=5.0)
    page = await adapter_env.adapter.list_payments(after_index=start, limit=PAYMENT_PAGE_MAX)
    by_hash = {record.payment_hash: record for record in page.records}
    assert set(by_hash) == {failed_invoice.payment_hash, behind.payment_hash}
    assert by_hash[failed_invoice.payment_hash].status == "failed"
    assert by_hash[failed_invoice.payment_hash].fee_msat == 0
    assert by_hash[behind.payment_hash].status == "succeeded"
    assert by_hash[behind.payment_hash].amount_msat == 21_000


# -- on-chain wallet and channel lifecycle (issue 18) -----------------------------------------

OPEN_AMOUNT_MSAT = 1_000_000_000  # 0.01 BTC
FEE_RATE_SAT_PER_VBYTE = 10


def _total_msat(balance: WalletBalance) -> int:
    return balance.confirmed_msat + balance.unconfirmed_msat


async def _pending(adapter_env: AdapterEnv, channel_point: str) -> PendingChannel | None:
    listed = await adapter_env.adapter.pending_channels()
    found = [p for p in listed if p.channel_point == channel_point]
    assert len(found) <= 1, found
    return found[0] if found else None


async def _open_channel(adapter_env: AdapterEnv, peer: str = "carol") -> ChannelOpening:
    return await adapter_env.adapter.open_channel(
        peer_pubkey=adapter_env.sim.node(peer).pubkey,
        local_amount_msat=OPEN_AMOUNT_MSAT,
        sat_per_vbyte=FEE_RATE_SAT_PER_VBYTE,
    )


async def test_open_channel_is_pending_until_confirmed_then_routes(
    adapter_env: AdapterEnv,
) -> None:
    sim, adapter = adapter_env.sim, adapter_env.adapter
    before = await adapter.wallet_balance()
    opening = await _open_channel(adapter_env)
    assert opening.channel_point == f"{opening.funding_txid}:{opening.output_index}"
    fee_msat = FEE_RATE_SAT_PER_VBYTE * FUNDING_TX_VSIZE * 1000
    spent = await adapter.wallet_balance()
    assert _total_msat(before) - _total_msat(spent) == OPEN_AMOUNT_MSAT + fee_msat
    for mined in range(FUNDING_CONFIRMATIONS):
        pending = await _pending(adapter_env, opening.channel_point)
        assert pending is not None and pending.state == "opening", pending
        assert pending.confirmations == mined
        assert (pending.capacity_msat, pending.local_balance_msat) == (OPEN_AMOUNT_MSAT,) * 2
        assert pending.peer_pubkey == sim.node("carol").pubkey
        points = {c.channel_point for c in await adapter.list_channels()}
        assert opening.channel_point not in points  # not routable while pending
        sim.mine(1)
    assert await _pending(adapter_env, opening.channel_point) is None
    (channel,) = [
        c for c in await adapter.list_channels() if c.channel_point == opening.channel_point
    ]
    assert channel.active and channel.initiator is True
    assert (channel.capacity_msat, channel.local_balance_msat) == (OPEN_AMOUNT_MSAT,) * 2
    assert channel.peer_pubkey == sim.node("carol").pubkey and channel.pending_htlcs_msat == 0
    assert channel.fee_base_msat is not None and channel.fee_ppm is not None
    info = await adapter.get_info()
    assert info.block_height == sim.block_height
    assert int(channel.channel_id.split("x")[0]) == info.block_height - FUNDING_CONFIRMATIONS + 1
    # The change came back and confirmed: the wallet is down by exactly amount + fee.
    confirmed = await adapter.wallet_balance()
    assert confirmed.unconfirmed_msat == 0
    assert confirmed.confirmed_msat == _total_msat(before) - OPEN_AMOUNT_MSAT - fee_msat
    # The new channel carries payments: the direct hop to carol is the cheapest route.
    invoice = await adapter_env.merchant_invoice(70_000, payee="carol")
    paid = await adapter.pay(pay_request(invoice.payment_request))
    assert isinstance(paid, PaymentSucceeded), paid
    (truth,) = adapter_env.attempts(invoice.payment_hash)
    assert [hop.channel_id for hop in truth.hops] == [channel.channel_id]
    sim.check_invariants()


async def test_close_channel_pays_back_after_the_closing_transaction_confirms(
    adapter_env: AdapterEnv,
) -> None:
    sim, adapter = adapter_env.sim, adapter_env.adapter
    (channel,) = await adapter.list_channels()  # alice's one channel, to the hub; we opened it
    assert channel.initiator is True and channel.channel_point
    before = await adapter.wallet_balance()
    closing_txid = await adapter.close_channel(
        channel_point=channel.channel_point, sat_per_vbyte=FEE_RATE_SAT_PER_VBYTE
    )
    assert len(closing_txid) == 64
    assert await adapter.list_channels() == []  # out of routing at once
    pending = await _pending(adapter_env, channel.channel_point)
    assert pending is not None and pending.state == "closing", pending
    assert pending.closing_txid in (closing_txid, None)  # CLN's listpeerchannels has no txid
    # A retry (after a crash, say) answers the same close instead of failing or closing twice.
    again = await adapter.close_channel(
        channel_point=channel.channel_point, sat_per_vbyte=FEE_RATE_SAT_PER_VBYTE
    )
    assert again == closing_txid
    assert (await adapter.wallet_balance()).confirmed_msat == before.confirmed_msat
    sim.mine(1)
    assert await _pending(adapter_env, channel.channel_point) is None
    # We opened it, so the closing fee came out of our side (BOLT 2).
    fee_msat = FEE_RATE_SAT_PER_VBYTE * CLOSING_TX_VSIZE * 1000
    returned_msat = (channel.local_balance_msat - fee_msat) // 1000 * 1000
    after = await adapter.wallet_balance()
    assert after.confirmed_msat == before.confirmed_msat + returned_msat
    assert after.unconfirmed_msat == before.unconfirmed_msat
    sim.check_invariants()


async def test_open_channel_without_the_funds_is_a_clear_node_error(
    adapter_env: AdapterEnv,
) -> None:
    sim, adapter = adapter_env.sim, adapter_env.adapter
    before = await adapter.wallet_balance()
    with pytest.raises(NodeError) as info:
        await adapter.open_channel(
            peer_pubkey=sim.node("carol").pubkey,
            local_amount_msat=_total_msat(before) // 1000 * 1000 + OPEN_AMOUNT_MSAT,
            sat_per_vbyte=FEE_RATE_SAT_PER_VBYTE,
        )
    assert info.value.reason is FailureReason.INSUFFICIENT_LIQUIDITY
    assert str(info.value).startswith("insufficient on-chain funds")
    assert await adapter.wallet_balance() == before and sim.chain.mempool == []
    assert await adapter.pending_channels() == []


async def test_open_channel_to_a_node_nobody_knows_is_refused(adapter_env: AdapterEnv) -> None:
    sim, adapter = adapter_env.sim, adapter_env.adapter
    stranger = "02" + "11" * 32
    with pytest.raises(NodeError) as info:
        await adapter.open_channel(
            peer_pubkey=stranger, local_amount_msat=OPEN_AMOUNT_MSAT, sat_per_vbyte=1
        )
    assert info.value.reason in (FailureReason.NODE_UNAVAILABLE, FailureReason.INCORRECT_DETAILS)
    assert sim.chain.mempool == []
    with pytest.raises(ValueError):  # on-chain amounts are whole satoshis
        await adapter.open_channel(
            peer_pubkey=sim.node("carol").pubkey, local_amount_msat=1_000_500, sat_per_vbyte=1
        )


async def test_an_open_is_found_again_by_its_memo(adapter_env: AdapterEnv) -> None:
    """The node keeps the opener's memo with the channel, pending and open: the record a
    caller reads after a crash to know that its open happened (ADR 0233; CLN keeps it in its
    datastore, ADR 0235)."""
    sim, adapter = adapter_env.sim, adapter_env.adapter
    memo = "corridor:open:intent-42"
    opening = await adapter.open_channel(
        peer_pubkey=sim.node("carol").pubkey,
        local_amount_msat=OPEN_AMOUNT_MSAT,
        sat_per_vbyte=FEE_RATE_SAT_PER_VBYTE,
        memo=memo,
    )
    (pending,) = [p for p in await adapter.pending_channels() if p.memo == memo]
    assert pending.channel_point == opening.channel_point
    sim.mine(FUNDING_CONFIRMATIONS)
    (channel,) = [c for c in await adapter.list_channels() if c.memo == memo]
    assert channel.channel_point == opening.channel_point
    others = [c for c in await adapter.list_channels() if c.channel_point != channel.channel_point]
    assert others and all(c.memo == "" for c in others)
