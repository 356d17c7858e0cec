"""``decide``: a command against a JIT channel sale, to events or a refusal. Pure: the sale
id, the SCID, the time and the policy arrive in the context (ADR 0261).

- A sale (``lsps2.buy``) is refused with bLIP-52's reasons (201 past ``valid_until``, 202 fee
  not below the payment, 203 overflow or, ours, over the policy cap); the promise itself is
  checked by the LSPS2 server, which holds the secret.
- The first HTLC for the SCID is judged as section 4 says ("no-MPP+var-invoice" when the buy
  named no size; otherwise the fee is on ``payment_size_msat``) and, if good, becomes the one
  order to open and forward. The same HTLC again (a node's replay after a restart) changes
  nothing; another HTLC while the sale is in progress is refused (we serve one part).
- Reports move the sale on; a duplicate report is no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas import jit_messages as jm
from schemas.events import EventData
from services.domain.jit_channels.fees import compute_opening_fee, fee_within_policy
from services.domain.jit_channels.state import JitChannel, JitStatus

MSAT_PER_SAT: Final = 1000
_PPM: Final = 1_000_000


@dataclass(frozen=True, kw_only=True, slots=True)
class JitPolicy:
    """Our limits as the LSP (settings, ADR 0262)."""

    fee_max_msat: int  # no opening fee above this, whatever the menu says
    fee_max_ppm: int  # nor above this share of the payment
    htlc_minimum_msat: int  # the client's htlc_minimum on the new channel
    channel_msat_min: int  # the smallest channel we open
    channel_msat_max: int  # the largest
    channel_headroom_ppm: int  # the channel is this much larger than the forward (reserve)
    cltv_expiry_delta: int  # lsp_cltv_expiry_delta in the buy result


@dataclass(frozen=True, kw_only=True, slots=True)
class JitContext:
    sale_id: str
    jit_scid: str  # derived from the sale id by the service layer
    now_ms: int
    policy: JitPolicy


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    field: str | None = None


Decision = list[EventData] | Refusal


def decide(state: JitChannel | None, command: jm.JitCommand, ctx: JitContext) -> Decision:
    match command:
        case jm.SellJitChannel():
            if state is not None:
                same = state.client_pubkey == command.client_pubkey and state.node == command.node
                return [] if same else Refusal("sale_exists", "request_id")
            return [_sell(command, ctx)]
        case jm.RecordJitHtlc():
            return _htlc(state, command, ctx)
        case jm.RecordJitReport():
            return _report(state, command)


def _refused(
    command: jm.SellJitChannel, ctx: JitContext, reason: jm.JitRefusal, detail: str
) -> EventData:
    return jm.JitSaleRefused(
        sale_id=ctx.sale_id, region=command.region, node=command.node,
        client_pubkey=command.client_pubkey, reason=reason, detail=detail,
    )  # fmt: skip


def _sell(command: jm.SellJitChannel, ctx: JitContext) -> EventData:
    params = command.params
    if ctx.now_ms >= params.valid_until_ms:
        return _refused(command, ctx, "invalid_opening_fee_params", "valid_until is past")
    size = command.payment_size_msat
    if size is not None:
        if not params.min_payment_size_msat <= size <= params.max_payment_size_msat:
            reason: jm.JitRefusal = (
                "payment_size_too_small"
                if size < params.min_payment_size_msat
                else "payment_size_too_large"
            )
            return _refused(command, ctx, reason, "outside the menu's payment sizes")
        fee = compute_opening_fee(size, params.min_fee_msat, params.proportional)
        if fee is None:
            return _refused(command, ctx, "payment_size_too_large", "fee overflows u64")
        if fee >= size:
            return _refused(command, ctx, "payment_size_too_small", "fee not below the payment")
        if not _within_policy(fee, size, ctx.policy):
            return _refused(command, ctx, "fee_over_policy", f"fee {fee} msat over policy")
    return jm.JitChannelSold(
        sale_id=ctx.sale_id, region=command.region, node=command.node,
        client_pubkey=command.client_pubkey, jit_scid=ctx.jit_scid, params=params,
        payment_size_msat=size, lsp_cltv_expiry_delta=ctx.policy.cltv_expiry_delta,
        client_trusts_lsp=False, sold_at_ms=ctx.now_ms,
    )  # fmt: skip


def _within_policy(fee_msat: int, size_msat: int, policy: JitPolicy) -> bool:
    return fee_within_policy(
        opening_fee_msat=fee_msat, payment_size_msat=size_msat,
        fee_max_msat=policy.fee_max_msat, fee_max_ppm=policy.fee_max_ppm,
    )  # fmt: skip


def _htlc(state: JitChannel | None, command: jm.RecordJitHtlc, ctx: JitContext) -> Decision:
    if state is None or state.status is JitStatus.REFUSED:
        return Refusal("unknown_sale", "sale_id")
    if state.htlc_key is not None or state.status is not JitStatus.SOLD:
        # The same HTLC offered again (a replay) changes nothing; any other is not ours to
        # take while this sale is in progress or over.
        return [] if command.htlc_key == state.htlc_key else Refusal("sale_in_progress", "htlc_key")
    assert state.params is not None
    params = state.params

    def failed(failure: jm.JitFailure, detail: str) -> list[EventData]:
        return [
            jm.JitFailed(
                sale_id=state.sale_id, failure=failure, htlc_key=command.htlc_key, detail=detail
            )
        ]

    if ctx.now_ms >= params.valid_until_ms:
        return failed("expired", "the HTLC came after valid_until")
    size = state.payment_size_msat or command.amount_msat
    fee = compute_opening_fee(size, params.min_fee_msat, params.proportional)
    if fee is None:
        return failed("fee_overflow", "the opening fee overflows u64")
    if fee + ctx.policy.htlc_minimum_msat > command.amount_msat:
        return failed("htlc_too_small", "opening fee plus htlc minimum above the HTLC")
    if not _within_policy(fee, size, ctx.policy):
        return failed("fee_over_policy", f"fee {fee} msat over policy")
    forward = command.amount_msat - fee
    wanted = forward + forward * ctx.policy.channel_headroom_ppm // _PPM
    channel = max(ctx.policy.channel_msat_min, -(-wanted // MSAT_PER_SAT) * MSAT_PER_SAT)
    if channel > ctx.policy.channel_msat_max:
        return failed("fee_over_policy", "the channel would exceed the largest we open")
    return [
        jm.JitHtlcIntercepted(
            sale_id=state.sale_id,
            region=state.region,
            node=state.node,
            client_pubkey=state.client_pubkey,
            htlc_key=command.htlc_key,
            payment_hash=command.payment_hash,
            amount_msat=command.amount_msat,
            opening_fee_msat=fee,
            forward_msat=forward,
            channel_size_msat=channel,
        )
    ]


def _report(state: JitChannel | None, report: jm.RecordJitReport) -> Decision:
    if state is None or state.status is JitStatus.REFUSED:
        return Refusal("unknown_sale", "sale_id")
    if report.stage == "opened":
        if report.channel_point is None:
            return Refusal("missing_channel_point", "channel_point")
        if state.status is JitStatus.INTERCEPTED:
            return [
                jm.JitChannelOpened(
                    sale_id=state.sale_id,
                    channel_point=report.channel_point,
                    alias_scid=report.alias_scid,
                )
            ]
        if state.channel_point == report.channel_point:
            return []  # the same report again
        return Refusal("conflicting_channel", "channel_point")
    if report.stage == "forwarded":
        if state.status is JitStatus.OPENED:
            assert state.forward_msat is not None and state.opening_fee_msat is not None
            return [
                jm.JitPaymentForwarded(
                    sale_id=state.sale_id,
                    forward_msat=state.forward_msat,
                    opening_fee_msat=state.opening_fee_msat,
                )
            ]
        if state.status is JitStatus.FORWARDED:
            return []
        return Refusal("not_opened", "stage")
    if report.failure is None:
        return Refusal("missing_failure", "failure")
    if state.status is JitStatus.FAILED:
        return []
    if state.status is JitStatus.FORWARDED:
        return Refusal("sale_complete", "stage")
    return [jm.JitFailed(sale_id=state.sale_id, failure=report.failure, htlc_key=state.htlc_key)]
