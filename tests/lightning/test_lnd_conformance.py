"""The simulated LND node against lnd's published API: swagger shapes and payment semantics.

A raw gRPC client (no adapter) talks to the simulator, the way any lnd client would. Messages
are rendered with the proto3 JSON mapping that lnd's REST gateway uses and validated against
the swagger definitions in shared/conformance/lnd/. Semantics follow
shared/conformance/lnd/payment-semantics.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from jsonschema import Draft4Validator

from services.lightning.lnd_proto import lightning_pb2 as ln
from services.lightning.lnd_proto import lightning_pb2_grpc, router_pb2, router_pb2_grpc
from tests.lightning.lnd_harness import MAX_FEE_MSAT, LndHarness, lnd_harness, wait_until

_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs
# grpcio-tools writes the stub classes without annotations.
_LIGHTNING_STUB: Any = lightning_pb2_grpc.LightningStub
_ROUTER_STUB: Any = router_pb2_grpc.RouterStub
CONFORMANCE_DIR = Path(__file__).parents[2] / ".." / "shared" / "conformance" / "lnd"
needs_swagger = pytest.mark.skipif(
    not (CONFORMANCE_DIR / "router.swagger.json").exists(),
    reason=f"lnd swagger files not found in {CONFORMANCE_DIR.resolve()}",
)


def _closed(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists properties.

    Swagger leaves objects open, which would let a misspelt field pass; closing them makes the
    check two-way: every field we send exists in lnd's API, and has the documented type.
    """
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


def _validator(swagger_file: str, definition: str) -> Draft4Validator:
    swagger = json.loads((CONFORMANCE_DIR / swagger_file).read_text(encoding="utf-8"))
    definitions = {name: _closed(schema) for name, schema in swagger["definitions"].items()}
    return Draft4Validator({"$ref": f"#/definitions/{definition}", "definitions": definitions})


def _json(message: Any) -> dict[str, Any]:
    # The REST gateway's rendering: proto field names, every field present, enums by name.
    rendered: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return rendered


def assert_conforms(swagger_file: str, definition: str, message: Any) -> dict[str, Any]:
    document = _json(message)
    errors = [
        f"{list(error.absolute_path)}: {error.message}"
        for error in _validator(swagger_file, definition).iter_errors(document)
    ]
    assert not errors, errors
    return document


@dataclass
class RawLnd:
    lightning: Any
    router: Any
    harness: LndHarness
    metadata: tuple[tuple[str, str], ...]

    async def send(self, **fields: Any) -> list[Any]:
        request = router_pb2.SendPaymentRequest(
            **{"fee_limit_msat": MAX_FEE_MSAT, "timeout_seconds": 5, **fields}
        )
        return [m async for m in self.router.SendPaymentV2(request, metadata=self.metadata)]

    async def track(self, payment_hash: str, **fields: Any) -> list[Any]:
        request = router_pb2.TrackPaymentRequest(payment_hash=bytes.fromhex(payment_hash), **fields)
        return [m async for m in self.router.TrackPaymentV2(request, metadata=self.metadata)]


@pytest.fixture
async def raw(tmp_path: Path) -> AsyncIterator[RawLnd]:
    async with lnd_harness(tmp_path) as harness:
        credentials = harness.server.credentials
        channel_credentials = grpc.ssl_channel_credentials(credentials.cert_path.read_bytes())
        target = f"{harness.server.host}:{harness.server.port}"
        async with grpc.aio.secure_channel(target, channel_credentials) as channel:
            yield RawLnd(
                lightning=_LIGHTNING_STUB(channel),
                router=_ROUTER_STUB(channel),
                harness=harness,
                metadata=(("macaroon", credentials.macaroon_path.read_bytes().hex()),),
            )


async def _rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        if hasattr(call, "read"):
            while await call.read() is not _EOF:
                pass
        else:
            await call
    return raised.value


def _status_json(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """The error as lnd's REST gateway renders it (an ``rpcStatus``)."""
    return {"code": error.code().value[0], "message": error.details(), "details": []}


@needs_swagger
async def test_unary_responses_match_the_swagger(raw: RawLnd) -> None:
    md = raw.metadata
    info = assert_conforms(
        "lightning.swagger.json",
        "lnrpcGetInfoResponse",
        await raw.lightning.GetInfo(ln.GetInfoRequest(), metadata=md),
    )
    assert info["chains"] == [{"chain": "bitcoin", "network": "regtest"}]
    assert info["wallet_synced"] is True
    assert info["graph_cache_status"] == "GRAPH_CACHE_STATUS_LOADED"

    added = await raw.lightning.AddInvoice(ln.Invoice(memo="m", value_msat=12_345), metadata=md)
    assert_conforms("lightning.swagger.json", "lnrpcAddInvoiceResponse", added)
    stored = await raw.lightning.LookupInvoice(ln.PaymentHash(r_hash=added.r_hash), metadata=md)
    invoice = assert_conforms("lightning.swagger.json", "lnrpcInvoice", stored)
    assert (invoice["value_msat"], invoice["state"]) == ("12345", "OPEN")

    decoded = await raw.lightning.DecodePayReq(
        ln.PayReqString(pay_req=added.payment_request), metadata=md
    )
    pay_req = assert_conforms("lightning.swagger.json", "lnrpcPayReq", decoded)
    assert (pay_req["num_msat"], pay_req["num_satoshis"]) == ("12345", "12")

    channels = assert_conforms(
        "lightning.swagger.json",
        "lnrpcListChannelsResponse",
        await raw.lightning.ListChannels(
            ln.ListChannelsRequest(peer_alias_lookup=True), metadata=md
        ),
    )
    (only,) = channels["channels"]
    assert only["peer_alias"] == "hub" and only["active"] is True


@needs_swagger
async def test_payment_stream_matches_the_swagger_and_lnd_order(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    updates = await raw.send(payment_request=invoice.bolt11)
    documents = [assert_conforms("router.swagger.json", "lnrpcPayment", m) for m in updates]
    # lnd registers the payment and subscribes before the first HTLC leaves.
    assert [d["status"] for d in documents] == ["INITIATED", "IN_FLIGHT", "SUCCEEDED"]
    registered, in_flight, final = documents
    assert registered["htlcs"] == [] and registered["value_msat"] == "100000"
    assert in_flight["htlcs"][0]["status"] == "IN_FLIGHT"
    assert final["failure_reason"] == "FAILURE_REASON_NONE"
    assert final["value_msat"] == "100000" and final["payment_hash"] == invoice.payment_hash
    assert final["htlcs"][0]["status"] == "SUCCEEDED"
    route = final["htlcs"][0]["route"]
    assert route["first_hop_amount_msat"] == route["total_amt_msat"]
    for unsettled in (registered, in_flight):
        assert unsettled["payment_preimage"] == "00" * 32  # lnd's zero preimage while unsettled

    (tracked,) = await raw.track(invoice.payment_hash)
    assert _json(tracked) == final
    listed = await raw.lightning.ListPayments(ln.ListPaymentsRequest(), metadata=raw.metadata)
    listing = assert_conforms("lightning.swagger.json", "lnrpcListPaymentsResponse", listed)
    assert [p["payment_hash"] for p in listing["payments"]] == [invoice.payment_hash]


@needs_swagger
async def test_failed_payment_matches_the_swagger(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    updates = await raw.send(payment_request=invoice.bolt11, fee_limit_msat=0)
    documents = [assert_conforms("router.swagger.json", "lnrpcPayment", m) for m in updates]
    registered, failed = documents
    assert registered["status"] == "INITIATED"
    assert (failed["status"], failed["failure_reason"]) == ("FAILED", "FAILURE_REASON_NO_ROUTE")


async def test_no_inflight_updates_sends_only_the_final_state(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    updates = await raw.send(payment_request=invoice.bolt11, no_inflight_updates=True)
    assert [u.status for u in updates] == [ln.Payment.SUCCEEDED]


@needs_swagger
async def test_second_send_of_a_paid_hash_fails_like_lnd(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    await raw.send(payment_request=invoice.bolt11)
    error = await _rpc_error(
        raw.router.SendPaymentV2(
            router_pb2.SendPaymentRequest(
                payment_request=invoice.bolt11, fee_limit_msat=MAX_FEE_MSAT, timeout_seconds=5
            ),
            metadata=raw.metadata,
        )
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "invoice is already paid",
    )
    status = _status_json(error)
    assert status["code"] == 6
    Draft4Validator(
        {"$ref": "#/definitions/rpcStatus", **_swagger_definitions("router.swagger.json")}
    ).validate(status)
    assert len(raw.harness.attempts(invoice.payment_hash)) == 1


def _swagger_definitions(swagger_file: str) -> dict[str, Any]:
    swagger = json.loads((CONFORMANCE_DIR / swagger_file).read_text(encoding="utf-8"))
    return {"definitions": swagger["definitions"]}


async def test_second_send_of_an_in_flight_hash_fails_like_lnd(raw: RawLnd) -> None:
    raw.harness.network.faults.drop_resolution(node="bob")
    invoice = raw.harness.invoice()
    first = raw.router.SendPaymentV2(
        router_pb2.SendPaymentRequest(
            payment_request=invoice.bolt11, fee_limit_msat=MAX_FEE_MSAT, timeout_seconds=5
        ),
        metadata=raw.metadata,
    )
    assert (await first.read()).status == ln.Payment.INITIATED
    assert (await first.read()).status == ln.Payment.IN_FLIGHT
    error = await _rpc_error(
        raw.router.SendPaymentV2(
            router_pb2.SendPaymentRequest(
                payment_request=invoice.bolt11, fee_limit_msat=MAX_FEE_MSAT, timeout_seconds=5
            ),
            metadata=raw.metadata,
        )
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "payment is in transition",
    )
    raw.harness.network.faults.release_dropped()
    assert (await first.read()).status == ln.Payment.SUCCEEDED
    assert len(raw.harness.attempts(invoice.payment_hash)) == 1


async def test_a_failed_hash_may_be_sent_again(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    failed = (await raw.send(payment_request=invoice.bolt11, fee_limit_msat=0))[-1]
    assert failed.status == ln.Payment.FAILED
    retried = await raw.send(payment_request=invoice.bolt11)
    assert retried[-1].status == ln.Payment.SUCCEEDED
    assert [a.status for a in raw.harness.attempts(invoice.payment_hash)] == [
        "failed",
        "succeeded",
    ]
    # TrackPaymentV2 reports the latest attempt.
    assert (await raw.track(invoice.payment_hash))[-1].status == ln.Payment.SUCCEEDED


async def test_tracking_an_unknown_hash_is_not_found(raw: RawLnd) -> None:
    error = await _rpc_error(
        raw.router.TrackPaymentV2(
            router_pb2.TrackPaymentRequest(payment_hash=b"\x01" * 32), metadata=raw.metadata
        )
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "payment isn't initiated")


async def test_track_follows_an_in_flight_payment(raw: RawLnd) -> None:
    raw.harness.network.faults.drop_resolution(node="bob")
    invoice = raw.harness.invoice()
    sending = raw.router.SendPaymentV2(
        router_pb2.SendPaymentRequest(
            payment_request=invoice.bolt11, fee_limit_msat=MAX_FEE_MSAT, timeout_seconds=5
        ),
        metadata=raw.metadata,
    )
    await sending.read()
    tracking = raw.router.TrackPaymentV2(
        router_pb2.TrackPaymentRequest(payment_hash=bytes.fromhex(invoice.payment_hash)),
        metadata=raw.metadata,
    )
    assert (await tracking.read()).status == ln.Payment.IN_FLIGHT
    raw.harness.network.faults.release_dropped()
    assert (await tracking.read()).status == ln.Payment.SUCCEEDED
    assert await tracking.read() is _EOF
    sending.cancel()


async def test_amount_for_a_fixed_amount_invoice_is_refused(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    error = await _rpc_error(
        raw.router.SendPaymentV2(
            router_pb2.SendPaymentRequest(
                payment_request=invoice.bolt11, amt_msat=1, timeout_seconds=5
            ),
            metadata=raw.metadata,
        )
    )
    assert error.code() is grpc.StatusCode.UNKNOWN
    assert (error.details() or "").startswith("amount must not be specified")
    assert raw.harness.attempts(invoice.payment_hash) == []


def _metadata_cases(valid: str) -> Iterator[tuple[tuple[tuple[str, str], ...], str]]:
    yield (), "expected 1 macaroon, got 0"
    yield (("macaroon", "00" * 64),), "verification failed"
    yield (("macaroon", valid), ("macaroon", valid)), "expected 1 macaroon, got 2"


async def test_every_call_needs_the_macaroon(raw: RawLnd) -> None:
    valid = raw.metadata[0][1]
    for metadata, text in _metadata_cases(valid):
        for call in (
            raw.lightning.GetInfo(ln.GetInfoRequest(), metadata=metadata),
            raw.lightning.WalletBalance(ln.WalletBalanceRequest(), metadata=metadata),
            raw.router.TrackPaymentV2(
                router_pb2.TrackPaymentRequest(payment_hash=b"\x01" * 32), metadata=metadata
            ),
        ):
            error = await _rpc_error(call)
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
            assert (error.details() or "").startswith(text)
    # With the macaroon, calls the simulator does not model say so plainly.
    unmodelled = await _rpc_error(
        raw.lightning.ListPeers(ln.ListPeersRequest(), metadata=raw.metadata)
    )
    assert unmodelled.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_offline_node_refuses_and_breaks_open_streams(raw: RawLnd) -> None:
    network = raw.harness.network
    network.faults.drop_resolution(node="bob")
    invoice = raw.harness.invoice()
    sending = raw.router.SendPaymentV2(
        router_pb2.SendPaymentRequest(
            payment_request=invoice.bolt11, fee_limit_msat=MAX_FEE_MSAT, timeout_seconds=5
        ),
        metadata=raw.metadata,
    )
    assert (await sending.read()).status == ln.Payment.INITIATED
    assert (await sending.read()).status == ln.Payment.IN_FLIGHT
    network.faults.set_offline("alice")
    assert (await _rpc_error(sending)).code() is grpc.StatusCode.UNAVAILABLE
    refused = await _rpc_error(raw.lightning.GetInfo(ln.GetInfoRequest(), metadata=raw.metadata))
    assert refused.code() is grpc.StatusCode.UNAVAILABLE

    network.faults.set_offline("alice", offline=False)
    network.faults.release_dropped()
    await wait_until(lambda: raw.harness.attempts(invoice.payment_hash)[0].is_final)
    assert (await raw.track(invoice.payment_hash))[-1].status == ln.Payment.SUCCEEDED


async def test_list_payments_filters_and_pages_like_lnd(raw: RawLnd) -> None:
    paid = [raw.harness.invoice(amount) for amount in (1_000, 2_000)]
    for invoice in paid:
        await raw.send(payment_request=invoice.bolt11)
    unpaid = raw.harness.invoice(3_000)
    await raw.send(payment_request=unpaid.bolt11, fee_limit_msat=0)

    async def hashes(**fields: Any) -> list[str]:
        listed = await raw.lightning.ListPayments(
            ln.ListPaymentsRequest(**fields), metadata=raw.metadata
        )
        return [p.payment_hash for p in listed.payments]

    settled = [invoice.payment_hash for invoice in paid]
    assert await hashes() == settled
    assert await hashes(include_incomplete=True) == [*settled, unpaid.payment_hash]
    assert await hashes(max_payments=1) == settled[:1]
    assert await hashes(max_payments=1, reversed=True) == settled[1:]


@needs_swagger
async def test_list_payments_can_omit_hops(raw: RawLnd) -> None:
    invoice = raw.harness.invoice()
    await raw.send(payment_request=invoice.bolt11)

    async def route(**fields: Any) -> dict[str, Any]:
        listed = await raw.lightning.ListPayments(
            ln.ListPaymentsRequest(**fields), metadata=raw.metadata
        )
        document = assert_conforms("lightning.swagger.json", "lnrpcListPaymentsResponse", listed)
        (payment,) = document["payments"]
        (htlc,) = payment["htlcs"]
        found: dict[str, Any] = htlc["route"]
        return found

    full, bare = await route(), await route(omit_hops=True)
    assert len(full["hops"]) == 2 and bare["hops"] == []
    # The route's own totals stay.
    assert {k: v for k, v in full.items() if k != "hops"} == {
        k: v for k, v in bare.items() if k != "hops"
    }
