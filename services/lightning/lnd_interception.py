"""lnd's ``Router.HtlcInterceptor`` for ``LndAdapter`` (InterceptorPort, ADR 0260).

https://github.com/lightningnetwork/lnd/blob/master/lnrpc/routerrpc/router.proto (copy in
shared/conformance/lnd/protos/routerrpc/router.proto): one bidirectional stream per node; lnd
sends a ``ForwardHtlcInterceptRequest`` per held HTLC (replaying what it still holds on each
connect) and reads ``ForwardHtlcInterceptResponse`` messages on the same stream. A response
lnd refuses (an unknown circuit key) ends the stream with an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc

from services.lightning.interceptor_port import (
    FailHtlc,
    HeldHtlc,
    HtlcResolution,
    SettleHtlc,
    extra_fee_record,
)
from services.lightning.lnd_convert import scid_from_str, scid_to_str
from services.lightning.lnd_proto import lightning_pb2, router_pb2
from services.lightning.port import FailureReason, NodeError

# Resolutions waiting to go out on the stream: one per held HTLC at most, and a node holds
# few at a time; a full queue means the stream is stuck, and the caller sees it.
OUTBOX_MAX: Final = 1024
_DETAIL_CHARS_MAX: Final = 200
_FAILURE_CODES: Final = {
    "unknown_next_peer": lightning_pb2.Failure.UNKNOWN_NEXT_PEER,
    "temporary_channel_failure": lightning_pb2.Failure.TEMPORARY_CHANNEL_FAILURE,
}


def held_of(request: Any) -> HeldHtlc:
    return HeldHtlc(
        incoming_channel_id=scid_to_str(request.incoming_circuit_key.chan_id),
        htlc_id=request.incoming_circuit_key.htlc_id,
        payment_hash=request.payment_hash.hex(),
        incoming_amount_msat=request.incoming_amount_msat,
        outgoing_amount_msat=request.outgoing_amount_msat,
        outgoing_scid=scid_to_str(request.outgoing_requested_chan_id),
        incoming_expiry=request.incoming_expiry,
        outgoing_expiry=request.outgoing_expiry,
        auto_fail_height=request.auto_fail_height,
    )


def response_of(htlc: HeldHtlc, resolution: HtlcResolution) -> Any:
    key = router_pb2.CircuitKey(
        chan_id=scid_from_str(htlc.incoming_channel_id), htlc_id=htlc.htlc_id
    )
    if isinstance(resolution, SettleHtlc):
        return router_pb2.ForwardHtlcInterceptResponse(
            incoming_circuit_key=key,
            action=router_pb2.SETTLE,
            preimage=bytes.fromhex(resolution.preimage),
        )
    if isinstance(resolution, FailHtlc):
        return router_pb2.ForwardHtlcInterceptResponse(
            incoming_circuit_key=key,
            action=router_pb2.FAIL,
            failure_code=_FAILURE_CODES[resolution.failure],
        )
    if resolution.out_amount_msat is None and resolution.extra_fee_msat is None:
        return router_pb2.ForwardHtlcInterceptResponse(
            incoming_circuit_key=key, action=router_pb2.RESUME
        )
    return router_pb2.ForwardHtlcInterceptResponse(
        incoming_circuit_key=key,
        action=router_pb2.RESUME_MODIFIED,
        out_amount_msat=resolution.out_amount_msat or 0,
        out_wire_custom_records=(
            extra_fee_record(resolution.extra_fee_msat) if resolution.extra_fee_msat else {}
        ),
    )


class LndInterceptorStream:
    """The adapter's one interceptor stream; ``resolve`` needs it open."""

    def __init__(self) -> None:
        self._outbox: asyncio.Queue[Any] | None = None
        self._router: Any = None

    async def held(self, router: Any, metadata: Any) -> AsyncIterator[HeldHtlc]:
        if self._outbox is not None:
            raise NodeError(FailureReason.INCORRECT_DETAILS, "lnd interceptor stream already open")
        outbox: asyncio.Queue[Any] = asyncio.Queue(maxsize=OUTBOX_MAX)

        async def responses() -> AsyncIterator[Any]:
            while True:
                yield await outbox.get()

        # No deadline: the stream lives as long as we intercept.
        self._router = router
        call = self._router.HtlcInterceptor(responses(), metadata=metadata)
        self._outbox = outbox
        try:
            async for request in call:
                yield held_of(request)
        except grpc.aio.AioRpcError as exc:
            detail = (exc.details() or "")[:_DETAIL_CHARS_MAX]
            raise NodeError(
                FailureReason.NODE_UNAVAILABLE, f"lnd HtlcInterceptor: {exc.code().name}: {detail}"
            ) from None
        finally:
            self._outbox = None
            call.cancel()
        raise NodeError(FailureReason.NODE_UNAVAILABLE, "lnd HtlcInterceptor: stream ended")

    def resolve(self, htlc: HeldHtlc, resolution: HtlcResolution) -> None:
        if self._outbox is None:
            raise NodeError(FailureReason.NODE_UNAVAILABLE, "lnd interceptor stream is not open")
        try:
            self._outbox.put_nowait(response_of(htlc, resolution))
        except asyncio.QueueFull:
            raise NodeError(
                FailureReason.NODE_UNAVAILABLE, "lnd interceptor stream stuck"
            ) from None
