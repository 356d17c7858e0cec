"""The relay after nats-server dies with publishes on the wire: the acknowledgements the
restart lost are not waited for (PUBLISH_ACK_TIMEOUT_S, 30 s); the relay notices the
reconnect, gives them up and resumes from the streams (ADR 0096)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from schemas.commands import Caller, SubmitPaymentIntent
from services.bootstrap import bootstrap
from services.devstack.nats import NatsServer
from services.engine.processor import CommandEnvelope
from services.relay.outbox import PUBLISH_ACK_TIMEOUT_S
from services.settings import Settings
from tests.conftest import session_registry, wait_for

# Far below PUBLISH_ACK_TIMEOUT_S: a relay that waits for the lost acks cannot make it.
RESUME_S_MAX = 8.0


@pytest.fixture
async def server(tmp_path: Path, identity_home: Path) -> AsyncIterator[NatsServer]:
    nats = NatsServer(tmp_path / "nats", registry=session_registry(identity_home))
    await asyncio.to_thread(nats.start)
    try:
        yield nats
    finally:
        await asyncio.to_thread(nats.stop)


def _submit(key: str) -> CommandEnvelope:
    return CommandEnvelope(
        command=SubmitPaymentIntent(
            idempotency_key=key, caller=Caller(id="alice", kind="service"), corridor="us-eu",
            amount_msat=50_000, max_fee_msat=1_000, destination="02" + "11" * 32,
        )
    )  # fmt: skip


async def test_the_relay_gives_up_acks_a_nats_restart_lost(
    server: NatsServer, database_url: str
) -> None:
    assert RESUME_S_MAX * 3 < PUBLISH_ACK_TIMEOUT_S
    engine = await bootstrap(
        Settings(relay_poll_s=0.2), nats_url=server.url, database_url=database_url
    )
    await engine.start()
    try:
        assert (await engine.processor.execute(_submit("a"))).ok
        head = await engine.store.head_position()
        await wait_for(lambda: engine.relay.position == head, what="the relay to catch up")
        # Frozen, the server takes what the relay sends into its socket and never answers;
        # killed then, it loses it with the acknowledgements.
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)
        reply = await engine.processor.execute(_submit("b"))
        assert reply.ok
        head = await engine.store.head_position()
        await wait_for(
            lambda: engine.relay.sent_position == head,
            what="the relay to send into the frozen server",
        )
        server.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(server.proc.wait)
        server.proc = None
        await asyncio.to_thread(server.start)
        await wait_for(
            lambda: engine.relay.position == head, timeout_s=RESUME_S_MAX,
            what="the relay to publish again after the restart",
        )  # fmt: skip
        assert engine.relay.acks_given_up > 0
    finally:
        await engine.stop()
