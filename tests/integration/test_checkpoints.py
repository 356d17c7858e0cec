"""Signed log checkpoints (ADR 0065): the engine signs its chain head, records the checkpoint
in the log and publishes it to a stream nobody may delete from; a log rewritten by whoever can
write the table, even with a recomputed hash chain, fails verification against the engine's
public key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import nats.errors
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import APIError

from schemas import events as ev
from schemas.events import LogCheckpointSigned
from schemas.records import EventMetadata
from services.bootstrap import bootstrap
from services.bus import subjects
from services.bus.jetstream import ensure_streams
from services.bus.nats_adapter import NatsBus
from services.engine.checkpoints import CHECKPOINT_STREAM_ID, Checkpointer
from services.engine.clock import SystemClock
from services.engine.committed import CommittedBatch, Writer
from services.engine.event_codec import to_new_events
from services.eventstore.checkpoint_verify import read_published, verify_checkpoints
from services.eventstore.hashing import chain_hash, event_body
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls
from services.settings import Settings
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer
from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir, read_public_keys
from tests.conftest import wait_for
from tests.nats_creds import connect_as

META = EventMetadata(correlation_id="c", causation_id="k", actor="test")
EVERY = 5


def _events(stream_id: str, count: int) -> list:
    data = [ev.IntentCancelled(by="t", reason=f"n{i}") for i in range(count)]
    return to_new_events(stream_id, 1, data, META, 1_700_000_000_123)


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[Client]:
    connection: Client = await connect_as(nats_url)  # the engine's credential
    yield connection
    await connection.drain()


@pytest.fixture
async def js(client: Client) -> JetStreamContext:
    context = client.jetstream()
    await ensure_streams(context, duplicate_window_s=120)
    return context


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer(Ed25519PrivateKey.generate())


@pytest.fixture
def checkpointer(
    store: PostgresEventStore, client: Client, js: JetStreamContext, signer: Ed25519Signer
) -> Checkpointer:
    bus = NatsBus(client, js)
    return Checkpointer(store, bus, signer, SystemClock(), every_events=EVERY, every_s=3600)


async def _commit(store: PostgresEventStore, checkpointer: Checkpointer, stream: str, n: int):
    """Append as the writer loop does, and publish the batch on the committed channel."""
    events = _events(stream, n)
    first = await store.append(events)
    assert first is not None
    checkpointer._committed.publish(CommittedBatch(Writer.COMMANDS, first, events))


async def test_a_checkpoint_every_n_events_in_the_log_and_the_stream(
    store: PostgresEventStore,
    js: JetStreamContext,
    checkpointer: Checkpointer,
    signer: Ed25519Signer,
) -> None:
    for i in range(3):
        await _commit(store, checkpointer, f"s{i}", EVERY)
        # The hook woke the loop: one checkpoint per EVERY events (driven here by hand).
        assert checkpointer._due.is_set()
        checkpointer._due.clear()
        assert await checkpointer.checkpoint_now() is not None
    # Nothing new since the last checkpoint (only its own event): nothing to sign.
    assert await checkpointer.checkpoint_now() is None

    recorded = await store.read_stream(CHECKPOINT_STREAM_ID)
    assert [e.type for e in recorded] == ["LogCheckpointSigned"] * 3
    positions = [e.payload["position"] for e in recorded]
    # 5 events, checkpoint (6) covers 5; 5 more (7..11), checkpoint covers 11; ...
    assert positions == [5, 11, 17]
    for event in recorded:
        assert event.payload["key_id"] == signer.key_id
        assert bytes.fromhex(event.payload["hash"]) == await store.hash_at(event.position - 1)

    published = await read_published(js, subjects.CHECKPOINT_STREAM)
    assert [c.position for c in published] == positions
    info = await js.stream_info(subjects.CHECKPOINT_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    msg = await js.get_msg(subjects.CHECKPOINT_STREAM, 1)
    assert msg.headers is not None
    assert msg.headers[subjects.HDR_MSG_ID] == published[0].checkpoint_id


async def test_the_server_refuses_to_delete_or_purge_checkpoints(
    store: PostgresEventStore, js: JetStreamContext, checkpointer: Checkpointer
) -> None:
    await _commit(store, checkpointer, "s", 2)
    assert await checkpointer.checkpoint_now() is not None
    # Refused by the stream (deny_delete, deny_purge) and, since ADR 0067, already by the
    # engine's permissions, whose refusal leaves the request unanswered.
    with pytest.raises((APIError, nats.errors.TimeoutError)):
        await js.delete_msg(subjects.CHECKPOINT_STREAM, 1)
    with pytest.raises((APIError, nats.errors.TimeoutError)):
        await js.purge_stream(subjects.CHECKPOINT_STREAM)
    info = await js.stream_info(subjects.CHECKPOINT_STREAM)
    assert info.state.messages == 1


async def test_an_honest_log_verifies_and_reports_its_unsigned_tail(
    store: PostgresEventStore,
    js: JetStreamContext,
    checkpointer: Checkpointer,
    signer: Ed25519Signer,
) -> None:
    keyring = Ed25519Keyring([signer.public_key])
    for i in range(2):
        await _commit(store, checkpointer, f"s{i}", EVERY)
        await checkpointer.checkpoint_now()
    await _commit(store, checkpointer, "tail", 3)  # not signed yet

    published = await read_published(js, subjects.CHECKPOINT_STREAM)
    report = await verify_checkpoints(store, keyring, published=published, gap_max=2 * EVERY)
    assert report.ok, report.problems
    assert report.checkpoints_in_table == report.checkpoints_in_stream == 2
    assert report.newest_checkpoint_position == 11
    assert report.head_position == 15
    # The newest checkpoint's own event and the three events after it.
    assert report.unsigned_tail == 4

    # Another key does not verify these checkpoints.
    stranger = Ed25519Keyring([Ed25519Signer(Ed25519PrivateKey.generate()).public_key])
    report = await verify_checkpoints(store, stranger, published=published, gap_max=2 * EVERY)
    assert not report.ok
    assert all("unknown_key" in p for p in report.problems)


async def _rewrite(store: PostgresEventStore, owner_url: str, position: int) -> None:
    """What whoever holds the owner's password can do: edit a payload and recompute the hash
    chain from there on, so ``verify_chain`` finds nothing wrong."""
    events = await store.read_all(after_position=position - 1, limit=10_000)
    prev = await store.hash_at(position - 1)
    assert prev is not None
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        for event in events:
            payload = dict(event.payload)
            if event.position == position:
                payload["reason"] = "forged"
            body = event_body(
                event_id=event.event_id, stream_id=event.stream_id,
                stream_version=event.stream_version, type=event.type,
                schema_version=event.schema_version, recorded_at_ms=event.recorded_at_ms,
                payload=payload, metadata=event.metadata,
            )  # fmt: skip
            new_hash = chain_hash(prev, event.position, body)
            await conn.execute(
                "UPDATE events SET payload = $1::jsonb, prev_hash = $2, hash = $3"
                " WHERE position = $4",
                json.dumps(payload),
                prev,
                new_hash,
                event.position,
            )
            prev = new_hash
        await conn.execute("UPDATE event_log_head SET hash = $1", prev)
    finally:
        await conn.close()


async def test_a_rewritten_log_with_a_recomputed_chain_fails_against_the_public_key(
    store: PostgresEventStore,
    js: JetStreamContext,
    checkpointer: Checkpointer,
    signer: Ed25519Signer,
    database_urls: RoleUrls,
) -> None:
    keyring = Ed25519Keyring([signer.public_key])
    for i in range(3):
        await _commit(store, checkpointer, f"s{i}", EVERY)
        await checkpointer.checkpoint_now()
    await _rewrite(store, database_urls.owner, 3)

    assert (await store.verify_chain()).ok  # the attacker recomputed the chain
    published = await read_published(js, subjects.CHECKPOINT_STREAM)
    report = await verify_checkpoints(store, keyring, published=published, gap_max=2 * EVERY)
    assert not report.ok
    assert sum("not the signed hash" in p for p in report.problems) == 3

    # Removing the checkpoint rows too does not help: the stream still holds them.
    conn = await asyncpg.connect(database_urls.owner)
    try:
        await conn.execute("DELETE FROM events WHERE stream_id = $1", CHECKPOINT_STREAM_ID)
    finally:
        await conn.close()
    report = await verify_checkpoints(store, keyring, published=published, gap_max=2 * EVERY)
    assert not report.ok
    assert sum("missing from the table" in p for p in report.problems) == 3


async def test_a_missing_checkpoint_is_a_gap(
    store: PostgresEventStore, checkpointer: Checkpointer, signer: Ed25519Signer
) -> None:
    await _commit(store, checkpointer, "a", 3 * EVERY)  # more than the limit, unsigned
    await checkpointer.checkpoint_now()
    report = await verify_checkpoints(store, Ed25519Keyring([signer.public_key]), gap_max=2 * EVERY)
    assert not report.ok
    assert report.problems[0].startswith("missing checkpoint: none between positions 0 and 15")
    assert report.checkpoints_in_stream is None


async def test_the_engine_signs_its_head_on_a_timer_with_its_own_key(
    nats_url: str, database_url: str, tmp_path: Path
) -> None:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=tmp_path),
        nats_url=nats_url,
        database_url=database_url,
        checkpoint_every_s=0.1,
    )
    await engine.start(intake=False)
    try:
        await engine.store.append(_events("quiet", 2))
        recorded = await wait_for(
            lambda: engine.store.read_stream(CHECKPOINT_STREAM_ID), what="a checkpoint"
        )
        checkpoint = msgspec.convert(recorded[0].payload, LogCheckpointSigned)
        assert checkpoint.position == 2
        keyring = read_public_keys(keys_dir(tmp_path) / PUBLIC_KEYS_FILE)
        published = await wait_for(
            lambda: read_published(engine.js, subjects.CHECKPOINT_STREAM), what="the publish"
        )
        report = await verify_checkpoints(engine.store, keyring, published=published)
        assert report.ok, report.problems
        assert report.unsigned_tail == 1  # the checkpoint's own event
    finally:
        await engine.stop()


async def test_replay_verify_exits_3_on_a_rewritten_log(
    store: PostgresEventStore,
    checkpointer: Checkpointer,
    signer: Ed25519Signer,
    database_urls: RoleUrls,
    nats_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    from services.cli import exit_codes
    from services.cli.audit import replay_to
    from services.signing.file_keys import PublicKeyEntry, PublicKeys
    from services.signing.port import b64url

    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("DATABASE_URL", database_urls.engine)
    keys = tmp_path / "engine-signing.pub.json"
    keys.write_bytes(
        msgspec.json.encode(
            PublicKeys(
                keys=(
                    PublicKeyEntry(
                        key_id=signer.key_id,
                        algorithm="ed25519",
                        public_key=b64url(signer.public_key),
                    ),
                )
            )
        )
    )
    for i in range(2):
        await _commit(store, checkpointer, f"s{i}", EVERY)
        await checkpointer.checkpoint_now()

    async def verify() -> int:
        return await replay_to(
            None, from_position=1, stream=None, out=io.StringIO(), verify=True, keys=keys
        )

    assert await verify() == exit_codes.OK
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert report["ok"] and report["chain_ok"]
    assert report["checkpoints"]["checkpoints_in_stream"] == 2  # the stream was read
    assert report["checkpoints"]["unsigned_tail"] == 1
    await _rewrite(store, database_urls.owner, 2)
    assert (await store.verify_chain()).ok
    assert await verify() == exit_codes.VERIFICATION_FAILED
    report = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert report["chain_ok"] and not report["ok"]
    assert report["checkpoints"]["problems_total"] == 2
