"""The JIT channel sale aggregate (ADR 0261): bLIP-52's refusals, one open per sale, replays
of the HTLC and of reports change nothing, and a Hypothesis run over random command orders
keeps the invariants (at most one open order, one opened, one forward; fee + forward is the
HTLC; the log folds to the same state)."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import jit_messages as jm
from schemas.events import EventData
from services.domain.jit_channels import (
    JitChannel,
    JitContext,
    JitPolicy,
    JitStatus,
    Refusal,
    decide,
    evolve,
    replay,
)
from services.domain.jit_channels.fees import compute_opening_fee

NOW_MS = 1_700_000_000_000
CLIENT = "02" + "11" * 32
POLICY = JitPolicy(
    fee_max_msat=5_000_000,
    fee_max_ppm=100_000,
    htlc_minimum_msat=1_000,
    channel_msat_min=100_000_000,
    channel_msat_max=16_777_215_000,
    channel_headroom_ppm=10_000,
    cltv_expiry_delta=144,
)
CTX = JitContext(sale_id="jit-1", jit_scid="16000000x77x0", now_ms=NOW_MS, policy=POLICY)
PARAMS = jm.FeeParams(
    min_fee_msat=546_000,
    proportional=1200,
    valid_until_ms=NOW_MS + 600_000,
    min_lifetime=1008,
    max_client_to_self_delay=2016,
    min_payment_size_msat=1000,
    max_payment_size_msat=1_000_000_000,
)


def sell(**over: object) -> jm.SellJitChannel:
    fields: dict[str, object] = {
        "region": "us", "node": "us-lnd", "client_pubkey": CLIENT, "request_id": "r1",
        "params": PARAMS,
    }  # fmt: skip
    fields.update(over)
    return jm.SellJitChannel(**fields)  # type: ignore[arg-type]


def htlc(key: str = "101x1x0/1", amount_msat: int = 50_000_000) -> jm.RecordJitHtlc:
    return jm.RecordJitHtlc(
        sale_id="jit-1", htlc_key=key, payment_hash="ab" * 32, amount_msat=amount_msat
    )


def apply(
    state: JitChannel | None, command: jm.JitCommand, ctx: JitContext = CTX
) -> tuple[JitChannel | None, list[EventData]]:
    decision = decide(state, command, ctx)
    assert not isinstance(decision, Refusal), decision
    for event in decision:
        state = evolve(state, event)
    return state, decision


def test_buy_past_valid_until_is_201_and_fee_not_below_payment_is_202() -> None:
    late = JitContext(
        sale_id="jit-1", jit_scid="1x1x1", now_ms=PARAMS.valid_until_ms, policy=POLICY
    )
    [event] = decide(None, sell(), late)  # type: ignore[misc]
    assert isinstance(event, jm.JitSaleRefused) and event.reason == "invalid_opening_fee_params"
    # The spec's worked example: 42000 msat pays 546000 msat: the fee is not below the size.
    [event] = decide(None, sell(payment_size_msat=42_000), CTX)  # type: ignore[misc]
    assert isinstance(event, jm.JitSaleRefused) and event.reason == "payment_size_too_small"
    [event] = decide(None, sell(payment_size_msat=2_000_000_000), CTX)  # type: ignore[misc]
    assert isinstance(event, jm.JitSaleRefused) and event.reason == "payment_size_too_large"


def test_policy_caps_the_fee() -> None:
    # 546000 msat is 10.92 % of 5_000_000: over the 10 % cap.
    [event] = decide(None, sell(payment_size_msat=5_000_000), CTX)  # type: ignore[misc]
    assert isinstance(event, jm.JitSaleRefused) and event.reason == "fee_over_policy"


def test_the_whole_sale_and_replays_change_nothing() -> None:
    state, [sold] = apply(None, sell())
    assert isinstance(sold, jm.JitChannelSold) and sold.jit_scid == CTX.jit_scid
    assert sold.lsp_cltv_expiry_delta == 144 and sold.client_trusts_lsp is False
    assert apply(state, sell())[1] == []  # the same buy again
    state, [order] = apply(state, htlc())
    assert isinstance(order, jm.JitHtlcIntercepted)
    assert order.opening_fee_msat == compute_opening_fee(50_000_000, 546_000, 1200) == 546_000
    assert order.forward_msat == 50_000_000 - 546_000
    assert order.channel_size_msat >= order.forward_msat
    assert order.channel_size_msat % 1000 == 0
    # The node replays the HTLC after a restart: no second order.
    assert apply(state, htlc())[1] == []
    assert decide(state, htlc(key="101x1x0/2"), CTX) == Refusal("sale_in_progress", "htlc_key")
    opened = jm.RecordJitReport(sale_id="jit-1", stage="opened", channel_point="aa" * 32 + ":0")
    state, [event] = apply(state, opened)
    assert isinstance(event, jm.JitChannelOpened)
    assert apply(state, opened)[1] == []
    forwarded = jm.RecordJitReport(sale_id="jit-1", stage="forwarded")
    state, [event] = apply(state, forwarded)
    assert isinstance(event, jm.JitPaymentForwarded)
    assert apply(state, forwarded)[1] == []
    assert state is not None and state.status is JitStatus.FORWARDED


def test_an_htlc_too_small_for_the_fee_fails_unknown_next_peer() -> None:
    state, _ = apply(None, sell())
    state, [event] = apply(state, htlc(amount_msat=546_500))
    assert isinstance(event, jm.JitFailed) and event.failure == "htlc_too_small"
    assert state is not None and state.status is JitStatus.FAILED


def test_an_htlc_after_valid_until_fails() -> None:
    state, _ = apply(None, sell())
    late = JitContext(
        sale_id="jit-1", jit_scid=CTX.jit_scid, now_ms=PARAMS.valid_until_ms, policy=POLICY
    )
    state, [event] = apply(state, htlc(), late)
    assert isinstance(event, jm.JitFailed) and event.failure == "expired"


commands = st.one_of(
    st.just(sell()),
    st.builds(
        htlc, key=st.sampled_from(["101x1x0/1", "101x1x0/2"]), amount_msat=st.integers(1, 10**9)
    ),
    st.builds(
        jm.RecordJitReport,
        sale_id=st.just("jit-1"),
        stage=st.sampled_from(["opened", "forwarded", "failed"]),
        channel_point=st.sampled_from([None, "aa" * 32 + ":0", "bb" * 32 + ":1"]),
        failure=st.sampled_from([None, "open_failed", "client_disconnected"]),
    ),
)


@settings(max_examples=300, derandomize=True)
@given(st.lists(commands, max_size=12))
def test_random_orders_keep_the_invariants(sequence: list[jm.JitCommand]) -> None:
    state: JitChannel | None = None
    log: list[EventData] = []
    for command in sequence:
        decision = decide(state, command, CTX)
        if isinstance(decision, Refusal):
            continue
        for event in decision:
            state = evolve(state, event)
            log.append(event)
    names = [type(e).__name__ for e in log]
    assert names.count("JitHtlcIntercepted") <= 1, names
    assert names.count("JitChannelOpened") <= 1, names
    assert names.count("JitPaymentForwarded") <= 1, names
    assert names.count("JitChannelSold") <= 1, names
    for event in log:
        if isinstance(event, jm.JitHtlcIntercepted):
            assert event.opening_fee_msat + event.forward_msat == event.amount_msat
            assert event.opening_fee_msat == compute_opening_fee(event.amount_msat, 546_000, 1200)
    if "JitPaymentForwarded" in names:
        assert names.index("JitChannelOpened") < names.index("JitPaymentForwarded")
    assert replay(log) == state
    if state is not None:
        assert msgspec.json.decode(msgspec.json.encode(state), type=JitChannel) == state
