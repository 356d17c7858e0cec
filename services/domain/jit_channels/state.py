"""The state of one JIT channel sale, and its transition table (one source for both)."""

from __future__ import annotations

import enum
from typing import Final

import msgspec

from schemas.jit_messages import FeeParams


class JitStatus(enum.StrEnum):
    SOLD = "sold"  # lsps2.buy answered: the SCID waits for its HTLC
    REFUSED = "refused"  # lsps2.buy refused: nothing was promised
    INTERCEPTED = "intercepted"  # the HTLC is held; the open is ordered (exactly once)
    OPENED = "opened"  # the zero-conf channel to the client exists
    FORWARDED = "forwarded"  # the payment less the fee went on to the client: done
    FAILED = "failed"  # the HTLC was failed back; the sale is over


_S = JitStatus
# (status before, event type) -> status after. Anything else is refused by ``evolve``: in
# particular there is one way into INTERCEPTED, from SOLD, so a sale orders one open at most.
TRANSITIONS: Final[dict[tuple[JitStatus | None, str], JitStatus]] = {
    (None, "JitChannelSold"): _S.SOLD,
    (None, "JitSaleRefused"): _S.REFUSED,
    (_S.SOLD, "JitHtlcIntercepted"): _S.INTERCEPTED,
    (_S.SOLD, "JitFailed"): _S.FAILED,
    (_S.INTERCEPTED, "JitChannelOpened"): _S.OPENED,
    (_S.INTERCEPTED, "JitFailed"): _S.FAILED,
    (_S.OPENED, "JitPaymentForwarded"): _S.FORWARDED,
    (_S.OPENED, "JitFailed"): _S.FAILED,
}
FINAL: Final = frozenset({_S.REFUSED, _S.FORWARDED, _S.FAILED})


class JitChannel(msgspec.Struct, frozen=True, kw_only=True):
    sale_id: str
    status: JitStatus
    version: int
    region: str
    node: str
    client_pubkey: str
    jit_scid: str | None = None
    params: FeeParams | None = None
    payment_size_msat: int | None = None
    htlc_key: str | None = None
    payment_hash: str | None = None
    amount_msat: int | None = None
    opening_fee_msat: int | None = None
    forward_msat: int | None = None
    channel_size_msat: int | None = None
    channel_point: str | None = None
    alias_scid: str | None = None
    refusal: str | None = None
    failure: str | None = None
