"""Interception through the simulator's own API, for ``SimNodeAdapter`` (ADR 0260): the same
held/resolve semantics the simulated lnd serves over ``Router.HtlcInterceptor``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any

from services.lightning.interceptor_port import (
    FailHtlc,
    HeldHtlc,
    HtlcResolution,
    ResumeHtlc,
    SettleHtlc,
    extra_fee_record,
)
from services.lightning.port import FailureReason, NodeError
from services.sim.interception import InterceptError, SimInterceptedHtlc


def held_of(htlc: SimInterceptedHtlc) -> HeldHtlc:
    return HeldHtlc(
        incoming_channel_id=htlc.incoming_channel_id,
        htlc_id=htlc.htlc_id,
        payment_hash=htlc.payment_hash,
        incoming_amount_msat=htlc.incoming_amount_msat,
        outgoing_amount_msat=htlc.outgoing_amount_msat,
        outgoing_scid=htlc.outgoing_requested_scid,
        incoming_expiry=htlc.incoming_expiry,
        outgoing_expiry=htlc.outgoing_expiry,
        auto_fail_height=htlc.auto_fail_height,
    )


async def held_htlcs(
    network: Any,
    node: str,
    offline_signal: Callable[[], AbstractContextManager[asyncio.Event]],
    offline_error: Callable[[], NodeError],
) -> AsyncIterator[HeldHtlc]:
    network.enable_interception(node)
    with network.watch_interceptions(node) as queue, offline_signal() as offline:
        # The watch is registered before the replay is read: nothing held in between is lost.
        for htlc in network.intercepted_htlcs(node):
            yield held_of(htlc)
        while True:
            got = asyncio.ensure_future(queue.get())
            went_offline = asyncio.ensure_future(offline.wait())
            try:
                await asyncio.wait({got, went_offline}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (got, went_offline):
                    task.cancel()
                await asyncio.wait({got, went_offline})
            if got.done() and not got.cancelled():
                yield held_of(got.result())
            elif went_offline.done():
                raise offline_error()


def resolve(network: Any, node: str, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
    key = (htlc.incoming_channel_id, htlc.htlc_id)
    try:
        if isinstance(resolution, SettleHtlc):
            network.resolve_intercepted(node, key, "settle", preimage=resolution.preimage)
        elif isinstance(resolution, FailHtlc):
            network.resolve_intercepted(node, key, "fail")
        elif resolution.out_amount_msat is None and resolution.extra_fee_msat is None:
            network.resolve_intercepted(node, key, "resume")
        else:
            network.resolve_intercepted(
                node,
                key,
                "resume_modified",
                out_amount_msat=resolution.out_amount_msat or 0,
                out_wire_custom_records=(
                    extra_fee_record(resolution.extra_fee_msat)
                    if resolution.extra_fee_msat
                    else None
                ),
            )
    except InterceptError as exc:
        raise NodeError(FailureReason.INCORRECT_DETAILS, f"sim resolve_htlc: {exc}") from None


__all__ = ["FailHtlc", "ResumeHtlc", "held_htlcs", "held_of", "resolve"]
