"""Stream copies (``bus_stream_replicas``, ADR 0195): start-up makes every stream with the
configured number of copies, moves an existing stream to it on a cluster, and stops with a
clear error where the server cannot hold that many."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import structlog
from nats.aio.client import Client

from services.bus import subjects
from services.bus.jetstream import ensure_streams, stream_configs
from services.bus.stream_limits import ReplicasRefused
from services.devstack.nats_cluster import NatsCluster
from services.settings import Settings
from tests.conftest import session_registry

STREAMS = [c.name for c in stream_configs(120)]


def test_one_copy_by_default_and_the_setting_reaches_every_stream() -> None:
    assert Settings().bus_stream_replicas == 1
    assert {c.num_replicas for c in stream_configs(120)} == {1}
    assert {c.num_replicas for c in stream_configs(120, replicas=3)} == {3}


@pytest.fixture
async def cluster(tmp_path: Path, identity_home: Path) -> AsyncIterator[NatsCluster]:
    members = NatsCluster(
        tmp_path / "cluster", registry=session_registry(identity_home), sync_interval="2m"
    )
    await asyncio.to_thread(members.start)
    try:
        yield members
    finally:
        await asyncio.to_thread(members.stop)


async def test_a_single_server_refuses_three_copies_and_start_up_says_which_setting(
    nats_url: str,
) -> None:
    nc = await nats.connect(nats_url)
    try:
        with pytest.raises(ReplicasRefused, match="bus_stream_replicas"):
            await ensure_streams(nc.jetstream(), duplicate_window_s=120, replicas=3)
    finally:
        await nc.close()


async def test_on_a_cluster_an_existing_stream_moves_to_the_configured_copies(
    cluster: NatsCluster,
) -> None:
    nc: Client = await nats.connect(servers=cluster.urls)
    try:
        js = nc.jetstream()
        # As an older start-up (or an executor starting first) made them: one copy each.
        await ensure_streams(js, duplicate_window_s=120)
        ack = await js.publish(subjects.intent_event_subject("alice", "IntentReceived"), b"{}")
        with structlog.testing.capture_logs() as logs:
            await ensure_streams(js, duplicate_window_s=120, replicas=3)
        moved = [n for n in STREAMS if n != subjects.CHECKPOINT_STREAM]
        for name in moved:
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3, name
        changed = sorted(e["stream"] for e in logs if e["event"] == "stream_replicas_changed")
        assert changed == sorted(moved)
        # The signed checkpoints' stream refuses the engine's updates (ADR 0067): kept, and
        # the operator is told the one command that moves it.
        checkpoints = await js.stream_info(subjects.CHECKPOINT_STREAM)
        assert checkpoints.config.num_replicas == 1
        [kept] = [e for e in logs if e["event"] == "stream_replicas_kept"]
        assert kept["stream"] == subjects.CHECKPOINT_STREAM and kept["configured"] == 3
        assert "--replicas 3" in kept["detail"]
        # Nothing stored was lost in the move.
        evt = await js.stream_info(subjects.EVT_STREAM)
        assert evt.state.messages == 1 and ack.seq == 1
        # At the next start nothing else changes.
        with structlog.testing.capture_logs() as logs:
            await ensure_streams(js, duplicate_window_s=120, replicas=3)
        assert not [e for e in logs if e["event"] == "stream_replicas_changed"]
        assert [e["stream"] for e in logs if e["event"] == "stream_replicas_kept"] == [
            subjects.CHECKPOINT_STREAM
        ]
    finally:
        await nc.close()
