"""A simulated LND node served through lnd's gRPC API, over TLS, behind a macaroon.

One ``grpc.aio`` server per node listens on a free loopback port and registers services
generated from lnd's own protos (``services.lightning.lnd_proto``). Only these calls are
served, with lnd's semantics (each handler module names its source); every other call of these
services, and every other lnd service, answers ``UNIMPLEMENTED``, so an LND client talks to it
as to lnd only as far as it uses these:

- ``lnrpc.Lightning`` (``lnd_lightning.py``, ``lnd_invoices.py``): GetInfo, ChannelBalance,
  ListChannels, ListPayments, DecodePayReq, AddInvoice, LookupInvoice, ListInvoices,
  SubscribeInvoices;
- ``routerrpc.Router`` (``lnd_router.py``): SendPaymentV2, TrackPaymentV2,
  HtlcInterceptor (``lnd_interceptor.py``);
- ``invoicesrpc.Invoices`` (``lnd_invoicesrpc.py``): AddHoldInvoice, SettleInvoice,
  CancelInvoice, LookupInvoiceV2 (by payment hash), SubscribeSingleInvoice.

Every call first passes a gate that mirrors what a client of a real lnd meets:

1. the macaroon header must match ``admin.macaroon``, else ``UNAUTHENTICATED`` (the simulator
   has one admin macaroon and checks no per-call permission);
2. an offline node answers ``UNAVAILABLE``, as a refused connection would;
3. a slow node answers after its added latency.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import grpc
import structlog

from services.lightning.lnd_proto import invoices_pb2_grpc, lightning_pb2_grpc, router_pb2_grpc
from services.sim.lnd_credentials import LndCredentials, write_lnd_credentials
from services.sim.lnd_gate import NodeGate
from services.sim.lnd_invoicesrpc import InvoicesServicer
from services.sim.lnd_lightning import LightningServicer
from services.sim.lnd_router import RouterServicer

log = structlog.get_logger(__name__)

# Seconds a stopping server lets in-flight RPCs finish; streams are cut after this.
STOP_GRACE_S: Final = 0.5
# lnd's default; a simulated node serves few clients at a time.
GRPC_MESSAGE_BYTES_MAX: Final = 200 * 1024 * 1024
# grpcio-tools writes these registration functions without annotations.
_ADD_LIGHTNING_SERVICER: Final[Any] = lightning_pb2_grpc.add_LightningServicer_to_server
_ADD_ROUTER_SERVICER: Final[Any] = router_pb2_grpc.add_RouterServicer_to_server
_ADD_INVOICES_SERVICER: Final[Any] = invoices_pb2_grpc.add_InvoicesServicer_to_server

if TYPE_CHECKING:
    _Handler = grpc.RpcMethodHandler[Any, Any]
    _Context = grpc.aio.ServicerContext[Any, Any]
    _Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[_Handler]]


@dataclass(eq=False)
class LndNodeServer:
    """A running simulated LND node; ``endpoint`` is what ``LndAdapter.from_uri`` takes."""

    node_name: str
    host: str
    port: int
    credentials: LndCredentials
    _server: grpc.aio.Server = field(repr=False)
    _gate: NodeGate = field(repr=False)

    @property
    def endpoint(self) -> str:
        return (
            f"lnd://{self.host}:{self.port}"
            f"?tlscert={self.credentials.cert_path}&macaroon={self.credentials.macaroon_path}"
        )

    async def stop(self) -> None:
        self._gate.close()
        await self._server.stop(STOP_GRACE_S)
        log.info("sim_lnd_server_stopped", node=self.node_name, port=self.port)


async def start_lnd_node_server(
    network: Any, node_name: str, *, host: str = "127.0.0.1", state_dir: Path
) -> LndNodeServer:
    """Serve ``node_name`` of ``network`` on a free port of ``host``.

    Writes ``state_dir/<node>/tls.cert``, ``tls.key`` and ``admin.macaroon`` afresh.
    """
    node = network.node(node_name)
    if node.implementation != "lnd":
        raise ValueError(f"node {node_name!r} is a {node.implementation} node, not lnd")
    credentials = write_lnd_credentials(state_dir / node_name)
    gate = NodeGate(network, node_name)
    server = grpc.aio.server(
        interceptors=[_GateInterceptor(gate, credentials.macaroon_hex)],
        options=[
            ("grpc.max_receive_message_length", GRPC_MESSAGE_BYTES_MAX),
            ("grpc.max_send_message_length", GRPC_MESSAGE_BYTES_MAX),
            # One node per port: never share a port with another process.
            ("grpc.so_reuseport", 0),
        ],
    )
    _ADD_LIGHTNING_SERVICER(LightningServicer(network, gate), server)
    _ADD_ROUTER_SERVICER(RouterServicer(network, gate), server)
    _ADD_INVOICES_SERVICER(InvoicesServicer(network, gate), server)
    server_credentials = grpc.ssl_server_credentials([(credentials.key_pem, credentials.cert_pem)])
    port = server.add_secure_port(f"{host}:0", server_credentials)
    if port == 0:
        gate.close()
        raise OSError(f"could not bind a port on {host} for simulated lnd node {node_name!r}")
    await server.start()
    log.info("sim_lnd_server_started", node=node_name, host=host, port=port)
    return LndNodeServer(
        node_name=node_name,
        host=host,
        port=port,
        credentials=credentials,
        _server=server,
        _gate=gate,
    )


class _GateInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks the macaroon, then the node's faults, before any handler runs."""

    def __init__(self, gate: NodeGate, macaroon_hex: str) -> None:
        self._gate = gate
        self._macaroon = macaroon_hex.encode()

    def __repr__(self) -> str:
        return "_GateInterceptor(<macaroon redacted>)"

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: let gRPC answer UNIMPLEMENTED
            return handler
        refusal = self._refusal(handler_call_details)
        return _wrap(handler, self._gate, refusal)

    def _refusal(self, details: grpc.HandlerCallDetails) -> tuple[grpc.StatusCode, str] | None:
        # lnd's own texts (macaroons/service.go) for a missing or wrong macaroon.
        macaroons = [
            value for key, value in (details.invocation_metadata or ()) if key == "macaroon"
        ]
        if len(macaroons) != 1:
            return grpc.StatusCode.UNAUTHENTICATED, f"expected 1 macaroon, got {len(macaroons)}"
        given = macaroons[0].encode() if isinstance(macaroons[0], str) else macaroons[0]
        if not hmac.compare_digest(given, self._macaroon):
            return (
                grpc.StatusCode.UNAUTHENTICATED,
                "verification failed: signature mismatch after caveat verification",
            )
        return None


def _wrap(
    handler: _Handler,
    gate: NodeGate,
    refusal: tuple[grpc.StatusCode, str] | None,
) -> _Handler:
    """The same handler, preceded by the refusal (if any) and the node gate."""

    async def before(context: _Context) -> None:
        if refusal is not None:
            await context.abort(*refusal)
        await gate.enter(context)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        inner_unary: Any = handler.unary_unary

        async def unary(request: Any, context: _Context) -> Any:
            await before(context)
            result = inner_unary(request, context)
            # The generated base class answers unsimulated calls synchronously.
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream is not None:
        inner_stream: Any = handler.unary_stream

        async def stream(request: Any, context: _Context) -> Any:
            await before(context)
            async for message in inner_stream(request, context):
                yield message

        return grpc.unary_stream_rpc_method_handler(stream, **kwargs)
    if handler.stream_stream is not None:
        inner_bidi: Any = handler.stream_stream

        async def bidi(requests: Any, context: _Context) -> Any:
            await before(context)
            try:
                messages = inner_bidi(requests, context)
            except NotImplementedError:  # the generated base class: not simulated
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not simulated")
            async for message in messages:
                yield message

        return grpc.stream_stream_rpc_method_handler(bidi, **kwargs)
    # lnd's client-streaming calls are not simulated; refuse them outright.

    async def unsupported(request: Any, context: _Context) -> Any:
        await before(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not simulated")

    return grpc.unary_unary_rpc_method_handler(unsupported, **kwargs)
