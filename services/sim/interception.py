"""HTLC interception at a simulated LSP node: the network side of lnd's ``HtlcInterceptor``
and Core Lightning's ``htlc_accepted`` hook (ADR 0260).

An HTLC whose next hop is a short channel id the forwarding node does not know (an LSPS2
``jit_channel_scid`` from an invoice's route hint) is held at that node, if interception is
on there, until a client resolves it: settle with a preimage, fail back, or resume (with a
lower outgoing amount and extra wire TLVs, LSPS2's ``extra_fee``). Without interception the
node fails such an HTLC at once (``unknown_next_peer``), as lnd does.

Interception is switched on per node and stays on (lnd's ``requireinterceptor``, CLN's
hook plugin configured at start): held HTLCs outlive a client's disconnect and are offered
again to the next client (lnd's replay on reconnect, CLN's replay at startup). A held HTLC is
failed back once the chain reaches its ``auto_fail_height``, as lnd does to keep the
incoming channel from force-closing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

# lnd fails a held HTLC this many blocks before its incoming expiry (htlcswitch's
# DefaultFinalCltvRejectDelta plus the broadcast delta: the incoming channel must not reach
# the block where it would have to go on chain).
AUTO_FAIL_BLOCKS_BEFORE_EXPIRY: Final = 13
# The invoice's own final CLTV delta plus LSPS2's +2 margin (bLIP-52 section 3).
JIT_FINAL_CLTV_DELTA: Final = 20
# lnd's default TLV type of LSPS2's extra_fee (bLIP-25), on update_add_htlc.
EXTRA_FEE_TLV: Final = 65537
# An interception client is a program we run; a node holding more HTLCs than this for it
# is being flooded, and new ones fail instead of piling up.
HELD_HTLCS_MAX: Final = 10_000

InterceptAction = Literal["settle", "fail", "resume", "resume_modified"]


class SimInterceptedHtlc(msgspec.Struct, frozen=True, kw_only=True):
    """One held HTLC as ``ForwardHtlcInterceptRequest`` / ``htlc_accepted`` describe it."""

    node: str  # the intercepting node
    incoming_channel_id: str  # circuit key part 1 (short channel id)
    htlc_id: int  # circuit key part 2
    payment_hash: str
    incoming_amount_msat: int
    outgoing_amount_msat: int  # what the onion asks the node to forward
    outgoing_requested_scid: str  # the unknown next channel (the jit SCID)
    incoming_expiry: int
    outgoing_expiry: int
    auto_fail_height: int
    peer_pubkey: str  # the node the HTLC came from
    destination: str  # the payee (its name); the simulator's stand-in for the onion's next node

    @property
    def circuit_key(self) -> tuple[str, int]:
        return (self.incoming_channel_id, self.htlc_id)


class InterceptError(ValueError):
    """A resolution the node refuses (lnd answers the stream with an error, CLN logs it)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class InterceptBook:
    """Which nodes intercept, what each holds, and who is told of a new held HTLC."""

    enabled: set[str] = field(default_factory=set)
    held: dict[str, dict[tuple[str, int], SimInterceptedHtlc]] = field(default_factory=dict)
    listeners: list[Callable[[SimInterceptedHtlc], None]] = field(default_factory=list)

    def hold(self, htlc: SimInterceptedHtlc) -> None:
        self.held.setdefault(htlc.node, {})[htlc.circuit_key] = htlc
        for listener in list(self.listeners):
            listener(htlc)

    def held_at(self, node: str) -> list[SimInterceptedHtlc]:
        return sorted(self.held.get(node, {}).values(), key=lambda h: h.htlc_id)

    def release(self, node: str, key: tuple[str, int]) -> SimInterceptedHtlc:
        try:
            return self.held[node].pop(key)
        except KeyError:
            raise InterceptError("unknown_circuit", f"htlc {key[0]}:{key[1]} not found") from None

    def count(self, node: str) -> int:
        return len(self.held.get(node, {}))
