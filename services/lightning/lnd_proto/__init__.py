"""LND's gRPC stubs, generated from LND's own ``.proto`` files and committed (ADR 0113).

``lightning_pb2``/``lightning_pb2_grpc`` (``lnrpc.Lightning``), ``router_pb2``/``router_pb2_grpc``
(``routerrpc.Router``) and ``invoices_pb2``/``invoices_pb2_grpc`` (``invoicesrpc.Invoices``) come
from ``shared/conformance/lnd/protos`` at the lnd commit named in each file's header. Do not
edit them; regenerate with ``python -m services.lightning.lnd_proto.generate``.

This module imports nothing, so that the generator runs without the protobuf runtime.
"""
