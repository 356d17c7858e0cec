"""Upcasting (ADR 0078): every reader lifts old versions, refuses newer ones and bad ones.

Issue 13, finding 6: a newer event decoded silently as the older shape, and a version 0 event
raised ``KeyError``. A log holding version 1 settlements must replay into the same state and
gain ``fee_ppm`` (IntentSettled v2).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

from projections.exceptions import build as build_exceptions
from projections.pilot_metrics import build as build_pilot_metrics
from schemas import events as ev
from schemas.upcasting import (
    EVENT_CLASSES,
    UPCASTERS,
    EventVersionInvalid,
    EventVersionTooNew,
    decode,
    upcast,
    upcast_record,
)
from services.domain.intent.evolve import fold
from services.engine.event_codec import to_domain
from services.engine.ids import event_id_for
from services.eventstore.port import StoredEvent
from services.executor.errors import BadWorkOrder, WorkOrderTooNew
from services.executor.work_order import (
    ACCEPTED_ORDER_VERSIONS,
    accepted_order_versions,
    decode_work_order,
)

INTENT = "5f0c6a3e-2f6b-5a4e-9c1d-0e7f4b2a1c3d"
PREIMAGE = "11" * 32
PAYMENT_HASH = hashlib.sha256(bytes.fromhex(PREIMAGE)).hexdigest()


def _history() -> list[ev.EventData]:
    """An intent from submit to settlement, as today's engine writes it."""
    return [
        ev.IntentReceived(
            intent_id=INTENT, caller={"id": "acme", "kind": "service"}, idempotency_key="k-1",
            corridor="us-eu", amount_msat=2_500_000, max_fee_msat=10_000,
            destination="02" + "11" * 32, received_at_ms=1_000, request_fingerprint="f" * 64,
        ),
        ev.IntentPolicyChecked(tier="auto", policy_version=1),
        ev.IntentRouted(attempt=1, region="eu", node="eu-lnd", reason="rank 1"),
        ev.IntentDispatched(
            attempt=1, region="eu", node="eu-lnd", amount_msat=2_500_000, max_fee_msat=10_000,
            destination="02" + "11" * 32, payment_hash=PAYMENT_HASH, pay_timeout_s=60,
            key_id="0123456789abcdef", signature="s" * 86,
        ),
        ev.PaymentSucceeded(attempt=1, payment_hash=PAYMENT_HASH, preimage=PREIMAGE, fee_msat=7),
        ev.IntentSettled(amount_msat=2_500_000, fee_msat=7, total_msat=2_500_007,
                         preimage=PREIMAGE, fee_ppm=2),
    ]  # fmt: skip


def _stored(events: list[ev.EventData], *, versions: dict[str, int]) -> list[StoredEvent]:
    """``events`` as log rows; a type named in ``versions`` is stored at that older version,
    in the shape that version had (the fields it did not have are left out)."""
    dropped = {("IntentSettled", 1): {"fee_ppm"}, ("IntentDispatched", 1): {"key_id", "signature"}}
    rows = []
    for number, event in enumerate(events, start=1):
        kind = type(event).__name__
        version = versions.get(kind, event.VERSION)
        payload = msgspec.to_builtins(event)
        for name in dropped.get((kind, version), set()):
            payload.pop(name, None)
        rows.append(
            StoredEvent(
                position=number, event_id=event_id_for(INTENT, number), stream_id=INTENT,
                stream_version=number, type=kind, schema_version=version, payload=payload,
                metadata={}, recorded_at_ms=1_000 + number, prev_hash=b"", hash=b"",
            )
        )  # fmt: skip
    return rows


def test_a_log_of_version_1_settlements_replays_into_the_same_state_and_the_fee_rate() -> None:
    today = _stored(_history(), versions={})
    old = _stored(_history(), versions={"IntentSettled": 1})
    assert old[-1].schema_version == 1 and "fee_ppm" not in old[-1].payload
    assert fold(to_domain(e) for e in old) == fold(to_domain(e) for e in today)
    settled = to_domain(old[-1])
    assert isinstance(settled, ev.IntentSettled)
    assert settled.fee_ppm == 7 * 1_000_000 // 2_500_000 == 2


def test_the_engine_writes_the_fee_rate() -> None:
    assert ev.IntentSettled.VERSION == 2
    assert ev.fee_ppm_of(500, 1_000_000) == 500
    assert ev.fee_ppm_of(1, 3) == 333_333  # rounded down
    assert ev.fee_ppm_of(0, 0) == 0


def test_a_version_newer_than_the_reader_knows_is_refused_never_decoded() -> None:
    newer = _stored(_history(), versions={"IntentSettled": ev.IntentSettled.VERSION + 1})
    with pytest.raises(EventVersionTooNew, match=r"IntentSettled v3 is newer .*position 6"):
        to_domain(newer[-1])
    dispatched = _stored(_history(), versions={"IntentDispatched": 3})[3]
    with pytest.raises(EventVersionTooNew):
        to_domain(dispatched)


@pytest.mark.parametrize("version", [0, -1, True, "2", None])
def test_a_version_that_is_not_one_is_a_clear_error_not_a_key_error(version: object) -> None:
    payload = msgspec.to_builtins(_history()[-1])
    with pytest.raises(EventVersionInvalid, match="not a schema version"):
        upcast("IntentSettled", version, payload)
    row = _stored(_history(), versions={})[-1]
    with pytest.raises(EventVersionInvalid):
        to_domain(msgspec.structs.replace(row, schema_version=0))


def test_every_versioned_event_has_the_whole_upcaster_chain() -> None:
    for name, cls in EVENT_CLASSES.items():
        for version in range(1, cls.VERSION):
            assert (name, version) in UPCASTERS, f"{name} v{version} has no upcaster"
    assert all(version < EVENT_CLASSES[name].VERSION for name, version in UPCASTERS)


def test_projections_read_old_versions_in_todays_shape_and_refuse_newer_ones() -> None:
    def records(versions: dict[str, int]) -> list[dict[str, Any]]:
        return [
            {"type": e.type, "version": e.schema_version, "stream_id": e.stream_id,
             "recorded_at_ms": e.recorded_at_ms, "data": e.payload}
            for e in _stored(_history(), versions=versions)
        ]  # fmt: skip

    old, today = records({"IntentSettled": 1}), records({})
    assert upcast_record(old[-1])["data"]["fee_ppm"] == 2
    assert upcast_record(old[-1])["version"] == 2
    assert build_pilot_metrics(old) == build_pilot_metrics(today)
    assert build_exceptions(old, now_ms=0, stuck_after_ms=1) == []
    with pytest.raises(EventVersionTooNew):
        build_pilot_metrics(records({"IntentSettled": 3}))
    with pytest.raises(EventVersionInvalid):
        build_exceptions([{**today[0], "version": 0}], now_ms=0, stuck_after_ms=1)
    with pytest.raises(EventVersionInvalid):  # a missing version is never assumed to be 1
        upcast_record({k: v for k, v in today[0].items() if k != "version"})


def _order_record(version: int, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": "IntentDispatched", "version": version, "event_id": event_id_for(INTENT, 4),
         "stream_id": INTENT, "stream_version": 4, "position": 4, "recorded_at_ms": 1,
         "hash": "", "prev_hash": "",
         "metadata": {"correlation_id": "c", "causation_id": "c", "actor": "engine"},
         "data": data}
    ).encode()  # fmt: skip


def test_executors_take_the_current_and_previous_signed_versions_only() -> None:
    assert ev.IntentDispatched.VERSION == 2
    assert frozenset({2}) == ACCEPTED_ORDER_VERSIONS  # v1 orders were never signed (ADR 0063)
    assert accepted_order_versions(3, first_signed=2) == {2, 3}
    assert accepted_order_versions(5, first_signed=2) == {4, 5}
    data = msgspec.to_builtins(_history()[3])
    order = decode_work_order(_order_record(2, data), bytes_max=65_536)
    assert order.dispatched.signature == "s" * 86
    unsigned = {k: v for k, v in data.items() if k not in ("key_id", "signature")}
    with pytest.raises(BadWorkOrder, match="v1 is not accepted") as refused:
        decode_work_order(_order_record(1, unsigned), bytes_max=65_536)
    assert not isinstance(refused.value, WorkOrderTooNew)  # refused for good, never paid
    with pytest.raises(BadWorkOrder, match="v0 is not accepted"):
        decode_work_order(_order_record(0, data), bytes_max=65_536)
    # Newer than this executor: left for an upgraded one (the worker naks, never terms).
    with pytest.raises(WorkOrderTooNew, match="v3 is newer"):
        decode_work_order(_order_record(3, {**data, "future_field": 1}), bytes_max=65_536)


def test_a_v1_payload_missing_its_amounts_is_a_schema_error_not_a_key_error() -> None:
    with pytest.raises(msgspec.ValidationError, match="fee_msat"):
        decode("IntentSettled", 1, {"amount_msat": 1, "total_msat": 1, "preimage": "00"})
