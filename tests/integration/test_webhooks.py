"""Signed webhooks for settlement events over real NATS and PostgreSQL (issue 16, ADR 0175-0179).

A receiver here is an HTTP server on a loopback port that verifies every delivery with
``standardwebhooks.Webhook.verify`` and keeps what it accepted by webhook id. Intents settle
through the engine's own API (submit, then the executor's outcome), so each test makes real
IntentSettled events, which the relay publishes to CORRIDOR_EVT and the dispatcher consumes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from standardwebhooks import Webhook

from services.bootstrap import Engine, bootstrap
from services.metrics.series import WEBHOOK_DELIVERIES
from services.settings import Settings
from services.webhooks import operations
from services.webhooks.dispatcher import WebhookDispatcher
from services.webhooks.history import webhook_history
from services.webhooks.running import running_dispatcher
from tests.conftest import wait_for
from tests.factories import invoice, submit
from tests.integration.test_api import SUBMIT, request

WAIT_S = 30.0


class Receiver:
    """A webhook receiver: verifies each signature, answers ``status``, dedupes by id."""

    def __init__(self, port: int = 0) -> None:
        self.secret: str | None = None
        self.status = 204
        self.accepted: dict[str, dict[str, Any]] = {}  # webhook id -> payload
        self.deliveries = 0  # verified requests, duplicates included
        self.refused = 0  # requests whose signature did not verify
        self.port = port
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    assert receiver.secret is not None
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except Exception:
                    receiver.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                status = receiver.status
                if 200 <= status < 300:
                    receiver.deliveries += 1
                    receiver.accepted.setdefault(self.headers["webhook-id"], payload)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def intents(self) -> set[str]:
        return {p["data"]["intent_id"] for p in self.accepted.values()}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    if r._server is not None:
        r.stop()


def hook_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "relay_poll_s": 0.2, "state_dir": tmp_path, "webhooks_allow_loopback": True,
        "webhooks_retry_period_s": 60.0, "webhooks_backoff_first_s": 0.05,
        "webhooks_backoff_max_s": 0.3, "webhooks_timeout_s": 2.0, "webhooks_poll_s": 0.1,
    }  # fmt: skip
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def hooks(
    nats_url: str, database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Engine, WebhookDispatcher]]:
    overrides = getattr(request, "param", {})
    settings = hook_settings(tmp_path, **overrides)
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start()
    await wait_for(engine.relay.leader.is_set, what="the relay to lead")
    async with running_dispatcher(engine, settings) as dispatcher:
        yield engine, dispatcher
    await engine.stop()


def asker(nc: Client) -> operations.Request:
    async def ask(subject: str, body: dict[str, Any]) -> dict[str, Any]:
        return await request(nc, subject, body)

    return ask


async def settle(nc: Client, caller: str, label: str) -> str:
    bolt11, payment_hash, preimage = invoice(label=label)
    submitted = await request(
        nc, SUBMIT.format(caller=caller),
        submit(key=label, caller_id=caller, payment_request=bolt11, destination=None),
    )  # fmt: skip
    assert submitted["ok"], submitted
    outcome = {
        "type": "RecordPaymentOutcome", "version": 1, "intent_id": submitted["intent_id"],
        "attempt": 1, "outcome": "succeeded", "region": "us", "node": "us-lnd",
        "payment_hash": payment_hash, "preimage": preimage, "fee_msat": 12,
    }  # fmt: skip
    settled = await request(nc, "corridor.api.v1.intents.outcome.us-lnd", outcome)
    assert settled["state"] == "settled", settled
    return str(submitted["intent_id"])


async def add_endpoint(nc: Client, caller: str, receiver: Receiver, **kw: Any) -> str:
    reply = await operations.register(
        asker(nc), caller_id=caller, url=receiver.url,
        event_types=kw.pop("event_types", ["IntentSettled"]), **kw,
    )  # fmt: skip
    assert reply["ok"], reply
    assert reply["secret"].startswith("whsec_")
    receiver.secret = reply["secret"]
    return str(reply["endpoint_id"])


def counted(result: str) -> float:
    return float(WEBHOOK_DELIVERIES.labels(result=result)._value.get())


async def test_registration_is_bound_to_the_callers_identity(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    engine, _ = hooks
    ask = asker(nc)
    endpoint_id = await add_endpoint(nc, "alice", receiver, idempotency_key="k1")
    # The payload's caller must be the subject's: nobody registers for somebody else.
    forged = await request(nc, "corridor.api.v1.webhooks.register.mallory", {
        "type": "RegisterWebhookEndpoint", "version": 1, "caller_id": "alice",
        "idempotency_key": "k2", "url": receiver.url, "event_types": ["IntentSettled"],
    })  # fmt: skip
    assert forged["error"]["code"] == "identity_mismatch"
    # Another caller neither sees nor removes alice's endpoint.
    assert (await operations.list_endpoints(ask, caller_id="bob"))["endpoints"] == []
    refused = await operations.remove(ask, caller_id="bob", endpoint_id=endpoint_id)
    assert refused["error"]["code"] == "not_found"
    mine = await operations.list_endpoints(ask, caller_id="alice")
    assert [e["endpoint_id"] for e in mine["endpoints"]] == [endpoint_id]
    assert "secret" not in json.dumps(mine)
    # The same key again: the same endpoint and secret; a different URL under it: refused.
    again = await operations.register(
        ask, caller_id="alice", url=receiver.url, event_types=["IntentSettled"],
        idempotency_key="k1",
    )  # fmt: skip
    assert again["duplicate"] and again["secret"] == receiver.secret
    changed = await operations.register(
        ask, caller_id="alice", url=receiver.url + "x", event_types=["IntentSettled"],
        idempotency_key="k1",
    )  # fmt: skip
    assert changed["error"]["code"] == "idempotency_mismatch"
    # Bad URLs are refused with the field named.
    for url in ("ftp://example.com/x", "http://user:pw@example.com/", "http:///nohost"):
        bad = await operations.register(
            ask, caller_id="alice", url=url, event_types=["IntentSettled"]
        )
        assert bad["error"]["field"] == "url", (url, bad)
    # The log records the caller as the actor, and no secret anywhere.
    removed = await operations.remove(ask, caller_id="alice", endpoint_id=endpoint_id)
    assert removed["ok"] and not removed["duplicate"]
    stream = await engine.store.read_stream(f"webhook-{endpoint_id}")
    assert [e.type for e in stream] == ["WebhookEndpointRegistered", "WebhookEndpointDisabled"]
    assert {e.metadata["actor"] for e in stream} == {"caller:alice"}
    assert receiver.secret is not None
    assert receiver.secret[6:] not in json.dumps([e.payload for e in stream])


async def test_signed_deliveries_survive_a_receiver_outage(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    await add_endpoint(nc, "alice", receiver)
    first = await settle(nc, "alice", "w-1")
    await settle(nc, "bob", "w-bob")  # another caller's: never sent to alice's endpoint
    await wait_for(lambda: first in receiver.intents(), timeout_s=WAIT_S, what="the first")
    receiver.stop()  # the outage: events keep coming
    during = [await settle(nc, "alice", f"w-{i}") for i in range(2, 5)]
    failed_before = counted("failed")
    await wait_for(lambda: counted("failed") > failed_before, timeout_s=WAIT_S,
                   what="a delivery to fail while the receiver is down")  # fmt: skip
    receiver.start()  # same port
    after = await settle(nc, "alice", "w-5")
    everything = {first, *during, after}
    await wait_for(lambda: receiver.intents() == everything, timeout_s=WAIT_S,
                   what="every settlement delivered after the outage")  # fmt: skip
    assert receiver.refused == 0  # every delivery carried a valid signature
    assert receiver.deliveries >= len(everything)  # at least once; duplicates deduped by id
    assert {p["type"] for p in receiver.accepted.values()} == {"IntentSettled"}


async def test_an_endpoint_that_answers_410_is_disabled(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    engine, dispatcher = hooks
    receiver.status = 410
    endpoint_id = await add_endpoint(nc, "alice", receiver)
    disabled_before = counted("disabled")
    await settle(nc, "alice", "gone-1")

    async def disabled() -> bool:
        stream = await engine.store.read_stream(f"webhook-{endpoint_id}")
        return stream[-1].type == "WebhookEndpointDisabled"

    await wait_for(disabled, timeout_s=WAIT_S, what="the endpoint to be disabled")
    assert counted("disabled") == disabled_before + 1
    stream = await engine.store.read_stream(f"webhook-{endpoint_id}")
    assert stream[-1].payload["reason"] == "gone" and stream[-1].payload["http_status"] == 410
    listed = await operations.list_endpoints(asker(nc), caller_id="alice")
    assert listed["endpoints"][0]["active"] is False
    await wait_for(lambda: endpoint_id in dispatcher._retired, timeout_s=WAIT_S,
                   what="the dispatcher to retire the endpoint")  # fmt: skip


@pytest.mark.parametrize("hooks", [{"webhooks_retry_period_s": 0.5}], indirect=True)
async def test_a_retry_period_ends_in_a_recorded_failure_and_history_catches_up(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    engine, _ = hooks
    receiver.status = 503
    endpoint_id = await add_endpoint(nc, "alice", receiver)
    intent = await settle(nc, "alice", "late-1")

    async def failure_recorded() -> Any:
        stream = await engine.store.read_stream(f"webhook-{endpoint_id}")
        return next((e for e in stream if e.type == "WebhookDeliveryFailed"), None)

    failed = await wait_for(failure_recorded, timeout_s=WAIT_S, what="the failure recorded")
    assert failed.payload["last_error"] == "http_503" and failed.payload["attempts"] >= 2
    assert receiver.accepted == {}
    # The receiver catches up from the history, from the position the failure names: the same
    # webhook id and payload a delivery carries.
    page = await webhook_history(
        nc, role="auditor", ident="webhook-test", owner="alice",
        from_position=failed.payload["position"],
    )  # fmt: skip
    [entry] = page["entries"]
    assert entry["webhook_id"] == failed.payload["webhook_id"]
    assert entry["payload"]["data"]["intent_id"] == intent
    assert entry["payload"]["type"] == "IntentSettled"
    assert page["next_position"] is None
    listed = await operations.list_endpoints(asker(nc), caller_id="alice")
    assert listed["endpoints"][0]["failed_deliveries"] == 1


async def test_a_failing_endpoint_does_not_hold_back_another(
    hooks: tuple[Engine, WebhookDispatcher], nc: Client, receiver: Receiver
) -> None:
    healthy = Receiver()
    healthy.start()
    try:
        receiver.status = 503  # down for the whole test, and retried meanwhile
        await add_endpoint(nc, "alice", receiver)
        await add_endpoint(nc, "alice", healthy, idempotency_key="second")
        failed_before = counted("failed")
        settled = {await settle(nc, "alice", f"iso-{i}") for i in range(3)}
        await wait_for(lambda: healthy.intents() == settled, timeout_s=WAIT_S,
                       what="every settlement at the healthy endpoint")  # fmt: skip
        assert counted("failed") > failed_before  # the other one was being retried
        assert receiver.accepted == {} and healthy.refused == 0
    finally:
        healthy.stop()
