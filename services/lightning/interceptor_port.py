"""The HTLC interception port: a node holds HTLCs for an unknown next channel (an LSPS2
``jit_channel_scid``) and we settle, fail or resume each one (ADR 0260).

Kept apart from ``NodePort``: only an LSP node needs it, the two vendor mechanisms are
streams with their own life (lnd's ``Router.HtlcInterceptor`` bidi stream, CLN's
``htlc_accepted`` plugin hook), and a node adapter that cannot intercept simply does not
implement it.

Delivery is at least once: a node offers every HTLC it still holds again when a client
(re)connects (lnd replays on reconnect, lightningd replays at startup), so the caller keys its
work on ``HeldHtlc.key`` and must be idempotent. Resolving a key the node no longer holds
raises ``NodeError``; it never settles anything twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, Literal, Protocol, runtime_checkable

import msgspec

# bLIP-52 (via bLIP-25): the TLV type of ``extra_fee`` on update_add_htlc, 8 bytes big-endian.
EXTRA_FEE_TLV_TYPE: Final = 65537


class HeldHtlc(msgspec.Struct, frozen=True, kw_only=True):
    """One HTLC the node holds for us (lnd ForwardHtlcInterceptRequest, CLN htlc_accepted)."""

    incoming_channel_id: str  # short channel id, BLOCKxTXxOUT
    htlc_id: int
    payment_hash: str
    incoming_amount_msat: int
    outgoing_amount_msat: int  # what the onion asks us to forward
    outgoing_scid: str  # the requested next channel
    incoming_expiry: int
    outgoing_expiry: int
    auto_fail_height: int  # the node fails it back itself at this height (0: unknown)

    @property
    def key(self) -> str:
        """The circuit key, unique per HTLC at this node: ``<incoming scid>/<htlc id>``."""
        return f"{self.incoming_channel_id}/{self.htlc_id}"


class SettleHtlc(msgspec.Struct, frozen=True, kw_only=True, tag="settle"):
    preimage: str  # hex


class FailHtlc(msgspec.Struct, frozen=True, kw_only=True, tag="fail"):
    # BOLT 4 failure: unknown_next_peer (LSPS2's refusal) or temporary_channel_failure.
    failure: Literal["unknown_next_peer", "temporary_channel_failure"] = "unknown_next_peer"


class ResumeHtlc(msgspec.Struct, frozen=True, kw_only=True, tag="resume"):
    """Forward it; with ``out_amount_msat`` less than the onion's and ``extra_fee_msat`` set
    (LSPS2's deduction), the forward carries the extra_fee TLV."""

    out_amount_msat: int | None = None
    extra_fee_msat: int | None = None
    # The node to forward to: lnd forwards by the SCID (non-strict); CLN's hook names the
    # channel (``forward_to``), which the adapter finds from this peer.
    next_peer_pubkey: str | None = None


HtlcResolution = SettleHtlc | FailHtlc | ResumeHtlc


def extra_fee_record(extra_fee_msat: int) -> dict[int, bytes]:
    """bLIP-52 section 5: ``extra_fee`` has length 8, a big-endian u64 of msat deducted."""
    assert 0 < extra_fee_msat < 2**64, extra_fee_msat
    return {EXTRA_FEE_TLV_TYPE: extra_fee_msat.to_bytes(8, "big")}


@runtime_checkable
class InterceptorPort(Protocol):
    def held_htlcs(self) -> AsyncIterator[HeldHtlc]:
        """Every HTLC the node holds for us (replays included), then each new one as it is
        held. Does not end on its own; raises ``NodeError`` if the node goes away: iterate
        again to reconnect, and the node offers what it still holds."""
        ...

    async def resolve_htlc(self, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
        """Settle, fail or resume a held HTLC. Needs an open ``held_htlcs`` stream (lnd
        resolves over the stream itself). Raises ``NodeError``."""
        ...
