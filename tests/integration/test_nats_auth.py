"""The trust boundary on the bus, against a real nats-server serving the rendered role table
(ADR 0060): who may connect, publish and subscribe, and how fast a revocation bites.

"Never seen" is checked by order, not by waiting: a client's messages reach the server in the
order it sent them, and a subscriber gets one publisher's messages in that order, so once a
message sent *after* the refused one has arrived, the refused one would have arrived first.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.bus import subjects
from services.bus.jetstream import CREDS_ENV, CredentialRefused, connect, ensure_streams
from services.bus.nats_adapter import NatsBus
from services.devstack.nats import NatsServer
from services.executor.consumer import bind_consumer, durable_created_at, ensure_dispatch_stream
from services.executor.limits import ExecutorLimits
from services.identity import nats_auth
from services.identity.registry import load_registry, registry_path
from tests.conftest import wait_for
from tests.nats_creds import connect_as

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("NATS_URL")), reason="starts its own nats-server with its own users"
)

# Every credential of the fixture: name -> (role, kind, region, node).
USERS: dict[str, tuple[str, str | None, str | None, str | None]] = {
    "acme": ("caller", "service", None, None),
    "globex": ("caller", "service", None, None),
    "bot": ("agent", "agent", None, None),
    "op-1": ("operator", None, None, None),
    "aud-1": ("auditor", None, None, None),
    "us-lnd": ("executor", None, "us", "us-lnd"),
    "eu-lnd": ("executor", None, "eu", "eu-lnd"),
}
FORGED_ORDER = json.dumps(
    {"type": "IntentDispatched", "stream_id": "forged", "data": {"region": "us", "node": "us-lnd",
     "attempt": 1, "payment_request": "lnbcrt1forged", "max_fee_msat": 1_000_000}}
).encode()  # fmt: skip


@dataclass
class Bus:
    server: NatsServer
    home: Path
    seeds: dict[str, Path]

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class User:
    """A connection as one credential, with every error the server sent it."""

    nc: Client
    key: str
    errors: list[str] = field(default_factory=list)

    def refused(self, what: str, subject: str) -> bool:
        # nats-py lowercases the server's whole error line, the subject included.
        wanted = f'permissions violation for {what} to "{subject}"'.lower()
        return any(wanted in e.lower() for e in self.errors)

    async def publish_refused(self, subject: str, data: bytes = b"{}") -> None:
        await self.nc.publish(subject, data)
        await self.nc.flush()
        await wait_for(lambda: self.refused("publish", subject), what=f"a refusal of {subject}")


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[Bus]:
    home = tmp_path / "state"
    # The session's engine (CORRIDOR_CREDS) is this server's engine too.
    key = nats_auth.read_public_key(Path(os.environ[CREDS_ENV]))
    nats_auth.register_key(home, role="engine", ident="harness", public_key=key)
    seeds = {
        name: nats_auth.ensure(home, role=role, ident=name, kind=kind, region=region, node=node)  # type: ignore[arg-type]
        for name, (role, kind, region, node) in USERS.items()
    }
    server = NatsServer(
        tmp_path / "nats", registry=load_registry(registry_path(home)), sync_interval="2m"
    )
    server.start()
    try:
        engine = await connect(server.url, name="test-engine")
        await ensure_streams(engine.jetstream(), duplicate_window_s=60)
        await engine.close()
        yield Bus(server=server, home=home, seeds=seeds)
    finally:
        server.stop()


async def user(bus: Bus, name: str, **options: Any) -> User:
    errors: list[str] = []

    async def record(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await connect_as(bus.url, bus.seeds[name], error_cb=record, **options)
    return User(nc=nc, key=nats_auth.read_public_key(bus.seeds[name]), errors=errors)


class Spy:
    """The engine's view: everything published on ``pattern``, in order."""

    def __init__(self) -> None:
        self.subjects: list[str] = []

    async def start(self, bus: Bus, pattern: str = ">") -> Client:
        nc = await connect_as(bus.url)  # the engine credential

        async def seen(msg: Msg) -> None:
            self.subjects.append(msg.subject)

        await nc.subscribe(pattern, cb=seen)
        await nc.flush()
        return nc


async def _stream_messages(bus: Bus, stream: str) -> int:
    nc = await connect_as(bus.url)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages)
    finally:
        await nc.close()


async def test_a_connection_without_a_known_key_is_refused(bus: Bus, tmp_path: Path) -> None:
    async def quiet(_: Exception) -> None:
        return None

    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await nats.connect(bus.url, nkeys_seed=None, allow_reconnect=False, error_cb=quiet)
    stranger = tmp_path / "stranger.nk"
    nats_auth.write_seed(stranger, nats_auth.new_seed())
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await connect_as(bus.url, stranger, allow_reconnect=False, error_cb=quiet)
    # The services' long-lived connect says so too, instead of retrying a refused key forever.
    with pytest.raises(CredentialRefused, match=r"stranger\.nk"):
        await connect(bus.url, name="test-stranger", creds=stranger)


async def test_a_caller_cannot_submit_as_another(bus: Bus) -> None:
    spy = Spy()
    engine = await spy.start(bus, "corridor.>")
    acme = await user(bus, "acme")
    try:
        for forged in ("corridor.api.v1.intents.submit.globex",
                       "corridor.cmd.v1.intents.submit.globex",
                       "corridor.api.v1.intents.cancel.globex"):  # fmt: skip
            await acme.publish_refused(forged)
        await acme.nc.publish("corridor.api.v1.intents.submit.acme", b"{}")
        await wait_for(lambda: spy.subjects, what="acme's own submit")
        assert spy.subjects == ["corridor.api.v1.intents.submit.acme"]
    finally:
        await acme.nc.close()
        await engine.close()


async def test_a_caller_cannot_read_events_nor_use_jetstream(bus: Bus) -> None:
    acme = await user(bus, "acme")
    engine = await connect_as(bus.url)
    try:
        received: list[str] = []

        async def got(msg: Msg) -> None:
            received.append(msg.subject)

        await acme.nc.subscribe("corridor.evt.>", cb=got)
        await acme.nc.flush()
        await wait_for(lambda: acme.refused("subscription", "corridor.evt.>"), what="refusal")
        for api in ("$JS.API.CONSUMER.CREATE.CORRIDOR_EVT",
                    "$JS.API.CONSUMER.CREATE.CORRIDOR_EVT.mine.corridor.evt.v1.>",
                    "$JS.API.DIRECT.GET.CORRIDOR_EVT", "$JS.API.STREAM.MSG.GET.CORRIDOR_EVT",
                    "$JS.API.STREAM.INFO.CORRIDOR_EVT", "$JS.API.INFO"):  # fmt: skip
            await acme.publish_refused(api, b'{"stream_name": "CORRIDOR_EVT", "config": {}}')
        assert (await engine.jetstream().stream_info(subjects.EVT_STREAM)).state.consumer_count == 0
        # An event, then a probe to acme's own inbox: the probe arriving first proves the
        # event was not delivered.
        probes: list[str] = []

        async def probe(msg: Msg) -> None:
            probes.append(msg.subject)

        await acme.nc.subscribe(f"_INBOX.{acme.key}.probe", cb=probe)
        await acme.nc.flush()
        await engine.publish("corridor.evt.v1.intent.IntentSettled", b"{}")
        await engine.publish(f"_INBOX.{acme.key}.probe", b"")
        await wait_for(lambda: probes, what="the probe")
        assert received == []
    finally:
        await acme.nc.close()
        await engine.close()


async def test_replies_to_one_caller_cannot_be_read_by_another(bus: Bus) -> None:
    acme = await user(bus, "acme")
    globex = await user(bus, "globex")
    try:
        await globex.nc.subscribe(f"_INBOX.{acme.key}.>")
        await globex.nc.flush()
        await wait_for(
            lambda: globex.refused("subscription", f"_INBOX.{acme.key}.>"), what="refusal"
        )
        await globex.nc.subscribe("_INBOX.>")
        await globex.nc.flush()
        await wait_for(lambda: globex.refused("subscription", "_INBOX.>"), what="refusal")
    finally:
        await acme.nc.close()
        await globex.nc.close()


async def test_an_executor_takes_and_reports_for_its_own_node_only(bus: Bus) -> None:
    limits = ExecutorLimits()
    eu = await user(bus, "eu-lnd")
    us = await user(bus, "us-lnd")
    engine = await connect_as(bus.url)
    try:
        # What the worker calls at start, as the executor credential of each node.
        for executor, region, node in ((eu, "eu", "eu-lnd"), (us, "us", "us-lnd")):
            js = executor.nc.jetstream()
            await ensure_dispatch_stream(NatsBus(executor.nc, js), duplicate_window_s=60)
            await bind_consumer(NatsBus(executor.nc, js), region, node, limits)
            await durable_created_at(js, region, node)
        ejs = engine.jetstream()
        await ejs.publish(subjects.dispatch_subject("us", "us-lnd"), b'{"for": "us"}')
        await ejs.publish(subjects.dispatch_subject("eu", "eu-lnd"), b'{"for": "eu"}')
        eu_sub = await eu.nc.jetstream().pull_subscribe_bind(
            durable="executor-eu-eu-lnd", stream=subjects.DISPATCH_STREAM
        )
        (order,) = await eu_sub.fetch(1, timeout=5)
        assert json.loads(order.data) == {"for": "eu"}
        await order.ack_sync()

        us_durable = "executor-us-us-lnd"
        us_filter = subjects.dispatch_subject("us", "us-lnd")
        for forbidden in (
            f"$JS.API.CONSUMER.MSG.NEXT.{subjects.DISPATCH_STREAM}.{us_durable}",
            f"$JS.API.CONSUMER.CREATE.{subjects.DISPATCH_STREAM}.{us_durable}.{us_filter}",
            f"$JS.API.CONSUMER.CREATE.{subjects.DISPATCH_STREAM}.executor-eu-eu-lnd",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{subjects.DISPATCH_STREAM}.executor-eu-eu-lnd",
            f"$JS.API.CONSUMER.DELETE.{subjects.DISPATCH_STREAM}.{us_durable}",
            f"$JS.API.STREAM.CREATE.{subjects.DISPATCH_STREAM}",
            "corridor.api.v1.intents.outcome.us-lnd",
            "corridor.health.v1.us.us-lnd",
            "corridor.api.v1.intents.submit.eu-lnd",
            f"{subjects.API_STATUS}.executor.us-lnd",
            subjects.API_STATUS,
        ):
            await eu.publish_refused(forbidden)
        # Its own create subject with a wider filter inside: the server compares the two.
        own = f"{subjects.DISPATCH_STREAM}.executor-eu-eu-lnd"
        widened = {"stream_name": subjects.DISPATCH_STREAM, "config": {
            "name": "executor-eu-eu-lnd", "durable_name": "executor-eu-eu-lnd",
            "filter_subject": "corridor.dispatch.v1.>", "ack_policy": "explicit"}}  # fmt: skip
        reply = await eu.nc.request(
            f"$JS.API.CONSUMER.CREATE.{own}.{subjects.dispatch_subject('eu', 'eu-lnd')}",
            json.dumps(widened).encode(), timeout=5,
        )  # fmt: skip
        assert json.loads(reply.data)["error"]["err_code"] == 10131
        info = await ejs.consumer_info(subjects.DISPATCH_STREAM, "executor-eu-eu-lnd")
        assert info.config.filter_subject == subjects.dispatch_subject("eu", "eu-lnd")
        assert info.num_pending == 0  # the us order never reached eu's durable
    finally:
        for nc in (eu.nc, us.nc, engine):
            await nc.close()


async def test_an_auditor_reads_events_and_publishes_nothing_but_queries(bus: Bus) -> None:
    auditor = await user(bus, "aud-1")
    spy = Spy()
    engine = await spy.start(bus, "corridor.api.>")
    try:
        seen: list[bytes] = []

        async def got(msg: Msg) -> None:
            seen.append(msg.data)

        # Live, every caller's events (ADR 0067); the history is test_event_scope.py's.
        await auditor.nc.subscribe(subjects.EVT_WILDCARD, cb=got)
        await auditor.nc.flush()
        await engine.jetstream().publish("corridor.evt.v2.intent.acme.IntentSettled", b'{"n": 1}')
        await wait_for(lambda: seen == [b'{"n": 1}'], what="the event, live")
        for forbidden in ("corridor.api.v1.intents.submit.aud-1",
                          "corridor.cmd.v1.intents.submit.aud-1",
                          "corridor.api.v1.intents.approve.aud-1",
                          "corridor.api.v1.policy.propose.aud-1",
                          "corridor.health.v1.us.us-lnd",
                          f"$JS.API.CONSUMER.CREATE.{subjects.DISPATCH_STREAM}",
                          f"$JS.API.CONSUMER.CREATE.{subjects.EVT_STREAM}",
                          f"$JS.API.STREAM.DELETE.{subjects.EVT_STREAM}",
                          f"$JS.API.STREAM.PURGE.{subjects.EVT_STREAM}",
                          # The bare read is the engine's; a reader names itself.
                          subjects.API_GET, f"{subjects.API_GET}.auditor.aud-2"):  # fmt: skip
            await auditor.publish_refused(forbidden)
        await auditor.nc.publish(f"{subjects.API_GET}.auditor.aud-1", b"{}")
        await wait_for(lambda: spy.subjects, what="the auditor's query")
        assert spy.subjects == [f"{subjects.API_GET}.auditor.aud-1"]
    finally:
        await auditor.nc.close()
        await engine.close()


async def test_an_operator_decides_under_its_own_id_only(bus: Bus) -> None:
    operator = await user(bus, "op-1")
    spy = Spy()
    engine = await spy.start(bus, "corridor.api.>")
    try:
        for forbidden in ("corridor.api.v1.intents.approve.op-2",
                          "corridor.api.v1.policy.approve.op-2",
                          "corridor.api.v1.intents.submit.op-1"):  # fmt: skip
            await operator.publish_refused(forbidden)
        await operator.nc.publish("corridor.api.v1.intents.approve.op-1", b"{}")
        await wait_for(lambda: spy.subjects, what="the operator's own approval")
        assert spy.subjects == ["corridor.api.v1.intents.approve.op-1"]
    finally:
        await operator.nc.close()
        await engine.close()


@pytest.mark.parametrize("name", ["acme", "bot", "op-1", "aud-1", "us-lnd"])
async def test_nobody_but_the_engine_writes_events_or_work_orders(bus: Bus, name: str) -> None:
    """The forged work order: a hand-made IntentDispatched for us-lnd never reaches the
    dispatch stream (nor a copy the event stream), whoever sends it."""
    forger = await user(bus, name)
    try:
        await forger.publish_refused(subjects.dispatch_subject("us", "us-lnd"), FORGED_ORDER)
        await forger.publish_refused("corridor.evt.v1.intent.IntentDispatched", FORGED_ORDER)
        await forger.publish_refused("corridor.evt.v2.intent.acme.IntentDispatched", FORGED_ORDER)
        assert await _stream_messages(bus, subjects.DISPATCH_STREAM) == 0
        assert await _stream_messages(bus, subjects.EVT_STREAM) == 0
    finally:
        await forger.nc.close()


async def test_a_revoked_credential_is_cut_off_within_seconds(bus: Bus, tmp_path: Path) -> None:
    acme = await user(bus, "acme", max_reconnect_attempts=2, reconnect_time_wait=0.1)
    globex = await user(bus, "globex")
    spy = Spy()
    engine = await spy.start(bus, "corridor.api.>")
    kept = tmp_path / "acme-copy.nk"  # revoking deletes the state dir's copy of the seed
    kept.write_bytes(bus.seeds["acme"].read_bytes())
    try:
        registry = nats_auth.revoke(bus.home, role="caller", ident="acme")
        await wait_for(lambda: acme.nc.is_connected, what="acme connected before")
        bus.server.reload(registry)
        await wait_for(lambda: not acme.nc.is_connected, timeout_s=5, what="acme cut off")
        with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
            await connect_as(bus.url, kept, allow_reconnect=False)
        # Everybody else stays connected.
        assert globex.nc.is_connected
        await globex.nc.publish("corridor.api.v1.intents.submit.globex", b"{}")
        await wait_for(lambda: spy.subjects, what="globex's submit after the reload")
    finally:
        for nc in (acme.nc, globex.nc, engine):
            await nc.close()


async def test_receives_are_published_under_ones_own_id_only(bus: Bus) -> None:
    """ADR 0220: a caller creates receives as itself, an executor reports invoices for its
    own node; neither can do the other's, nor act for another."""
    spy = Spy()
    engine = await spy.start(bus, "corridor.api.>")
    acme = await user(bus, "acme")
    eu = await user(bus, "eu-lnd")
    try:
        for forged in ("corridor.api.v1.intents.receive.globex",
                       "corridor.api.v1.intents.invoice.us-lnd",
                       "corridor.cmd.v1.intents.receive.acme"):  # fmt: skip
            await acme.publish_refused(forged)
        for forged in ("corridor.api.v1.intents.invoice.us-lnd",
                       "corridor.api.v1.intents.receive.eu-lnd"):  # fmt: skip
            await eu.publish_refused(forged)
        await acme.nc.publish("corridor.api.v1.intents.receive.acme", b"{}")
        await eu.nc.publish("corridor.api.v1.intents.invoice.eu-lnd", b"{}")
        await wait_for(lambda: len(spy.subjects) == 2, what="the two own publishes")
        assert sorted(spy.subjects) == [
            "corridor.api.v1.intents.invoice.eu-lnd", "corridor.api.v1.intents.receive.acme",
        ]  # fmt: skip
    finally:
        for nc in (acme.nc, eu.nc, engine):
            await nc.close()


async def test_an_lsp_order_report_comes_only_from_the_orders_own_executor(bus: Bus) -> None:
    """ADR 0252: ``lsp.report.<node>`` is the executor of that node's alone, like outcomes;
    an order is placed under the sender's own id only."""
    spy = Spy()
    engine = await spy.start(bus, "corridor.api.v1.lsp.>")
    eu = await user(bus, "eu-lnd")
    acme = await user(bus, "acme")
    try:
        forged = f"{subjects.LSP_API_PREFIX}.report.us-lnd"
        await eu.publish_refused(forged)
        await acme.publish_refused(forged)
        await acme.publish_refused(f"{subjects.LSP_API_PREFIX}.order.globex")
        await eu.publish_refused(f"{subjects.LSP_API_PREFIX}.order.eu-lnd")
        await eu.nc.publish(f"{subjects.LSP_API_PREFIX}.report.eu-lnd", b"{}")
        await eu.nc.flush()
        await wait_for(lambda: spy.subjects, what="eu-lnd's own report")
        assert spy.subjects == [f"{subjects.LSP_API_PREFIX}.report.eu-lnd"]
    finally:
        await eu.nc.close()
        await acme.nc.close()
        await engine.close()
