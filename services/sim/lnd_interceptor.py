"""The simulated node's ``routerrpc.Router.HtlcInterceptor``: a bidirectional stream.

Semantics follow ``router.proto`` (shared/conformance/lnd/protos/routerrpc/router.proto) and
lnd's ``htlcswitch/interceptable_switch.go``:

- one interceptor per node at a time; a second gets ``AlreadyExists`` ("interceptor already
  exists", lnd's ``ErrInterceptorAlreadyExists`` text);
- on connect, every HTLC the node already holds is sent again (replay: clients must treat a
  circuit key idempotently), then each new one as it is held;
- a response names the circuit key and an action (SETTLE, FAIL, RESUME, RESUME_MODIFIED);
  ``out_amount_msat`` and ``out_wire_custom_records`` count with RESUME_MODIFIED only; a
  FAIL with both ``failure_code`` and ``failure_message`` is refused;
- a response for an unknown circuit ends the stream with an error, as lnd's does;
- the node holds its HTLCs across a disconnect (``requireinterceptor``: the simulated node
  switches interception on with the first stream, and it stays on).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import grpc

from services.lightning.lnd_convert import scid_from_str, scid_to_str
from services.lightning.lnd_proto import router_pb2
from services.sim.interception import InterceptAction, InterceptError, SimInterceptedHtlc
from services.sim.lnd_gate import NodeGate

if TYPE_CHECKING:
    _Context = grpc.aio.ServicerContext[Any, Any]

_ACTIONS: Final[dict[int, InterceptAction]] = {
    router_pb2.SETTLE: "settle",
    router_pb2.FAIL: "fail",
    router_pb2.RESUME: "resume",
    router_pb2.RESUME_MODIFIED: "resume_modified",
}
ALREADY_EXISTS_TEXT: Final = "interceptor already exists"


def intercept_request(htlc: SimInterceptedHtlc) -> Any:
    return router_pb2.ForwardHtlcInterceptRequest(
        incoming_circuit_key=router_pb2.CircuitKey(
            chan_id=scid_from_str(htlc.incoming_channel_id), htlc_id=htlc.htlc_id
        ),
        incoming_amount_msat=htlc.incoming_amount_msat,
        incoming_expiry=htlc.incoming_expiry,
        payment_hash=bytes.fromhex(htlc.payment_hash),
        outgoing_requested_chan_id=scid_from_str(htlc.outgoing_requested_scid),
        outgoing_amount_msat=htlc.outgoing_amount_msat,
        outgoing_expiry=htlc.outgoing_expiry,
        auto_fail_height=htlc.auto_fail_height,
        # The simulator carries no onion; a real one is 1366 bytes the client passes through.
        onion_blob=b"",
    )


class HtlcInterceptorHandler:
    """One node's interceptor stream (at most one open at a time)."""

    def __init__(self, network: Any, gate: NodeGate) -> None:
        self._network = network
        self._gate = gate
        self._node = gate.node_name
        self._open = False

    async def serve(self, requests: AsyncIterator[Any], context: _Context) -> AsyncIterator[Any]:
        if self._open:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, ALREADY_EXISTS_TEXT)
        self._open = True
        self._network.enable_interception(self._node)
        failure: list[str] = []
        try:
            with (
                self._network.watch_interceptions(self._node) as queue,
                self._gate.offline_signal() as offline,
            ):
                # Registered before the replay is read, so nothing held in between is missed.
                for htlc in self._network.intercepted_htlcs(self._node):
                    yield intercept_request(htlc)
                reader = asyncio.ensure_future(self._read(requests, failure))
                try:
                    while True:
                        got = asyncio.ensure_future(queue.get())
                        went_offline = asyncio.ensure_future(offline.wait())
                        waits = {got, reader, went_offline}
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                        for task in (got, went_offline):
                            task.cancel()
                        await asyncio.wait({got, went_offline})
                        if got.done() and not got.cancelled():
                            yield intercept_request(got.result())
                        if failure:
                            await context.abort(grpc.StatusCode.UNKNOWN, failure[0])
                        if reader.done():
                            return  # the client closed its side
                        if went_offline.done() and not went_offline.cancelled():
                            await self._gate.abort_offline(context)
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reader
        finally:
            self._open = False

    async def _read(self, requests: AsyncIterator[Any], failure: list[str]) -> None:
        async for response in requests:
            error = self._apply(response)
            if error is not None:
                failure.append(error)
                return

    def _apply(self, response: Any) -> str | None:
        action = _ACTIONS.get(response.action)
        if action is None:
            return f"unsupported action {response.action}"
        if action == "fail" and response.failure_code and response.failure_message:
            return "failure message and failure code are mutually exclusive"
        key = (
            scid_to_str(response.incoming_circuit_key.chan_id),
            response.incoming_circuit_key.htlc_id,
        )
        try:
            self._network.resolve_intercepted(
                self._node,
                key,
                action,
                preimage=response.preimage.hex() if action == "settle" else None,
                out_amount_msat=response.out_amount_msat,
                out_wire_custom_records=dict(response.out_wire_custom_records),
            )
        except InterceptError as exc:
            return str(exc)
        return None
