"""Least privilege in PostgreSQL (ADR 0064): what each role may do to the event log, and that
nothing connects without a password."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from schemas import events as ev
from schemas.records import EventMetadata
from services.devstack import DevStack
from services.engine.event_codec import to_new_events
from services.eventstore.migrate import OWNER_URL_ENV, MigrationsPending
from services.eventstore.port import AppendFence, IdempotencyClaim
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import (
    AUDITOR,
    ENGINE,
    OWNER,
    RoleUrls,
    UnusableDatabaseUrl,
    create_database,
    drop_database,
    redact_url,
    role_url,
    scram_verifier,
)
from services.eventstore.roles import connect as connect_db

REPO = Path(__file__).resolve().parents[2]
META = EventMetadata(correlation_id="c", causation_id="k", actor="test")
TABLES = (
    "events", "event_log_head", "idempotency_keys", "checkpoints", "schema_migrations",
    "spend_fences",
)  # fmt: skip
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
APPEND = (
    "append_events(text[], integer[], uuid[], text[], integer[], jsonb[], jsonb[], bigint[],"
    " bytea[], text[], text[], text[], text[], text[], bigint[], text, integer)"
)


def _events(stream_id: str, count: int = 1) -> list[Any]:
    data = [ev.IntentCancelled(by="t", reason=f"n{i}") for i in range(count)]
    return to_new_events(stream_id, 1, data, META, 1_700_000_000_123)


@pytest.fixture
async def engine_conn(database_urls: RoleUrls) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(database_urls.engine)
    yield conn
    await conn.close()


@pytest.fixture
async def auditor_conn(database_urls: RoleUrls) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(database_urls.auditor)
    yield conn
    await conn.close()


@pytest.fixture
async def owner_conn(database_urls: RoleUrls) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn = await asyncpg.connect(database_urls.owner)
    yield conn
    await conn.close()


async def test_tests_and_the_engine_connect_as_the_engine_role(
    database_url: str, store: PostgresEventStore
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == ENGINE
    finally:
        await conn.close()
    async with store.pool.acquire() as pooled:
        assert await pooled.fetchval("SELECT current_user") == ENGINE


async def test_each_role_holds_exactly_its_grants(owner_conn: asyncpg.Connection[Any]) -> None:
    """The whole table, both ways: what a role may do, and everything it may not."""
    expected = {
        ENGINE: {t: {"SELECT"} for t in TABLES} | {"checkpoints": {"SELECT", "INSERT", "UPDATE"}},
        AUDITOR: {t: {"SELECT"} for t in TABLES},
    }
    for role, tables in expected.items():
        for table in TABLES:
            held = {
                p
                for p in PRIVILEGES
                if await owner_conn.fetchval(
                    "SELECT has_table_privilege($1, $2, $3)", role, table, p
                )
            }
            assert held == tables[table], (role, table)
    for table in TABLES:
        owner = await owner_conn.fetchval(
            "SELECT tableowner FROM pg_tables WHERE schemaname = current_schema()"
            " AND tablename = $1",
            table,
        )
        assert owner == OWNER, table

    def may_execute(role: str, function: str) -> Any:
        return owner_conn.fetchval(
            "SELECT has_function_privilege($1, $2, 'EXECUTE')", role, function
        )

    assert await may_execute(ENGINE, APPEND) is True
    assert await may_execute(AUDITOR, APPEND) is False
    assert await may_execute(ENGINE, "refuse_event_change()") is False
    # Pruning old idempotency claims (ADR 0079): the engine's only delete, bounded by age.
    prune = "prune_idempotency_keys(bigint, integer)"
    assert await may_execute(ENGINE, prune) is True
    assert await may_execute(AUDITOR, prune) is False
    # Nobody else either: PUBLIC's default EXECUTE is revoked (grantee 0 is PUBLIC).
    grantees = await owner_conn.fetch(
        "SELECT a.grantee::regrole::text AS role FROM pg_proc, aclexplode(proacl) AS a"
        " WHERE pg_proc.oid = $1::regprocedure AND a.grantee <> 0"
        " UNION ALL SELECT 'PUBLIC' FROM pg_proc, aclexplode(proacl) AS a"
        " WHERE pg_proc.oid = $1::regprocedure AND a.grantee = 0",
        APPEND,
    )
    assert sorted(r["role"] for r in grantees) == [ENGINE, OWNER]
    attributes = await owner_conn.fetch(
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
        " FROM pg_roles WHERE rolname = ANY($1::text[])",
        [OWNER, ENGINE, AUDITOR],
    )
    assert len(attributes) == 3
    assert all(not any(tuple(r)[1:]) for r in attributes), [dict(r) for r in attributes]


async def test_the_engine_cannot_change_or_remove_log_rows(
    store: PostgresEventStore, engine_conn: asyncpg.Connection[Any]
) -> None:
    await store.append(_events("s", 3))
    refused = (
        "UPDATE events SET type = 'x'",
        "DELETE FROM events",
        "TRUNCATE events",
        "TRUNCATE events, event_log_head, idempotency_keys, checkpoints CASCADE",
        "UPDATE event_log_head SET position = 0",
        "DELETE FROM idempotency_keys",
        "DELETE FROM checkpoints",
        "UPDATE schema_migrations SET checksum = 'x'",
        # Writing a row outside append_events would skip the hash chain and the head row.
        "INSERT INTO events SELECT position + 100, gen_random_uuid(), stream_id,"
        " stream_version + 100, type, schema_version, payload, metadata, recorded_at,"
        " prev_hash, hash FROM events WHERE position = 1",
        "INSERT INTO idempotency_keys (caller_id, idempotency_key, intent_id, fingerprint)"
        " VALUES ('a', 'k', 'i', 'f')",
    )
    for sql in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await engine_conn.execute(sql)
    assert [e.position for e in await store.read_all(after_position=0, limit=10)] == [1, 2, 3]
    assert await store.head_position() == 3
    assert (await store.verify_chain()).ok


async def test_the_engine_cannot_disable_or_replace_the_guards(
    engine_conn: asyncpg.Connection[Any],
) -> None:
    refused = (
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER events_no_truncate",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TRIGGER events_append_only ON events",
        "DROP TABLE events",
        "ALTER TABLE events OWNER TO corridor_engine",
        "CREATE OR REPLACE FUNCTION refuse_event_change() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN NEW; END $$",
        "ALTER FUNCTION " + APPEND + " SECURITY INVOKER",
        # Replica mode would skip ordinary triggers for the whole session.
        "SET session_replication_role = replica",
        # No objects of its own: not in the schema, not even temporary ones.
        "CREATE TABLE shadow (v int)",
        "CREATE TEMP TABLE events (v int)",
    )
    for sql in refused:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await engine_conn.execute(sql)
    enabled = await engine_conn.fetch(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'events'::regclass"
        " AND NOT tgisinternal ORDER BY tgname"
    )
    assert [(r["tgname"], r["tgenabled"]) for r in enabled] == [
        ("events_append_only", b"O"),  # "O": fires in origin (normal) sessions
        ("events_no_truncate", b"O"),
    ]


async def test_the_engine_does_what_it_needs_and_nothing_bypasses_the_chain(
    database_url: str, engine_conn: asyncpg.Connection[Any]
) -> None:
    """LISTEN/NOTIFY, advisory locks and the checkpoint upsert: the relay's needs."""
    store = await PostgresEventStore.connect(database_url, pool_max=2)
    try:
        notified: list[str] = []
        await engine_conn.add_listener("corridor_events", lambda *a: notified.append(a[3]))
        assert await engine_conn.fetchval("SELECT pg_try_advisory_lock(42)") is True
        assert await store.append(_events("s", 2)) == 1
        await store.set_checkpoint("relay", 2)
        await store.set_checkpoint("relay", 3)
        assert await store.get_checkpoint("relay") == 3
        # append_events runs as the owner, yet its own rows still obey the chain.
        assert (await store.verify_chain()).ok
        await engine_conn.execute("SELECT 1")  # a round trip delivers the pending NOTIFY
        assert notified == ["2"]
    finally:
        await store.close()


async def test_append_events_resolves_names_in_the_log_schema_only(
    store: PostgresEventStore, owner_conn: asyncpg.Connection[Any]
) -> None:
    """A SECURITY DEFINER function with the caller's search_path could be pointed at another
    ``events`` table; it is pinned to the log's schema, then pg_temp last."""
    config = await owner_conn.fetchval(
        "SELECT proconfig::text FROM pg_proc WHERE oid = $1::regprocedure", APPEND
    )
    assert config == '{"search_path=pg_catalog, public, pg_temp"}'
    assert await owner_conn.fetchval(
        "SELECT prosecdef FROM pg_proc WHERE oid = $1::regprocedure", APPEND
    )
    assert await store.append(_events("s")) == 1


async def test_the_auditor_only_reads(
    store: PostgresEventStore, database_urls: RoleUrls, auditor_conn: asyncpg.Connection[Any]
) -> None:
    claim = IdempotencyClaim(caller_id="a", idempotency_key="k", intent_id="s", fingerprint="f")
    await store.append(_events("s", 2), [claim], AppendFence(callers=("a",), known_positions=(0,)))
    await store.set_checkpoint("relay", 2)
    for table in TABLES:
        assert await auditor_conn.fetchval(f"SELECT count(*) FROM {table}") >= 1, table
    refused = (
        "INSERT INTO checkpoints (name, position) VALUES ('x', 1)",
        "UPDATE checkpoints SET position = 0",
        "DELETE FROM events",
        "TRUNCATE checkpoints",
        "SELECT append_events('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',"
        " '{}', '{}', '{}', '{}', '{}', '{}', NULL, NULL)",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "CREATE TABLE shadow (v int)",
    )
    for sql in refused:
        # Its sessions also start read-only: a second fence, so either refusal will do.
        with pytest.raises(
            (asyncpg.InsufficientPrivilegeError, asyncpg.ReadOnlySQLTransactionError)
        ):
            await auditor_conn.execute(sql)
    assert await auditor_conn.fetchval("SHOW default_transaction_read_only") == "on"
    # Replay and audit commands open the store as the auditor.
    reader = await PostgresEventStore.connect(database_urls.auditor, pool_max=1)
    try:
        assert (await reader.verify_chain()).checked == 2
        assert [e.stream_version for e in await reader.read_stream("s")] == [1, 2]
    finally:
        await reader.close()


async def test_even_the_owner_meets_the_append_only_triggers(
    store: PostgresEventStore, owner_conn: asyncpg.Connection[Any]
) -> None:
    await store.append(_events("s"))
    for sql in ("UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await owner_conn.execute(sql)


async def test_the_engine_cannot_apply_pending_migrations(cluster_urls: RoleUrls) -> None:
    name = f"corridor_bare_{uuid.uuid4().hex[:8]}"
    # A database owned by the owner role that nobody has migrated yet.
    urls = await create_database(cluster_urls, name, template="template0")
    try:
        with pytest.raises(MigrationsPending) as pending:
            await PostgresEventStore.connect(urls.engine, pool_max=1)
        message = str(pending.value)
        assert "corridor_engine" in message and "services.eventstore.migrate" in message
        assert urls.engine.split(":")[2].split("@")[0] not in message  # no password
        # The owner applies them; then the engine starts.
        store = await PostgresEventStore.connect(urls.owner, pool_max=1)
        await store.close()
        store = await PostgresEventStore.connect(urls.engine, pool_max=1)
        await store.close()
    finally:
        await drop_database(cluster_urls, name)


async def test_no_connection_without_the_right_password(
    servers: DevStack, database_urls: RoleUrls
) -> None:
    if servers.database_urls is None:
        pytest.skip("DATABASE_URL names the server: its authentication is not ours to check")
    admin = await connect_db(database_urls.admin)
    try:
        rules = await admin.fetch(
            "SELECT type, database, user_name, address, auth_method, error"
            " FROM pg_hba_file_rules ORDER BY rule_number"
        )
    finally:
        await admin.close()
    assert {r["auth_method"] for r in rules} == {"scram-sha-256"}
    assert {(r["type"], r["address"]) for r in rules} == {
        ("local", None),
        ("host", "127.0.0.1"),
        ("host", "::1"),
    }
    assert all(r["error"] is None for r in rules)
    for role in ("postgres", OWNER, ENGINE, AUDITOR):
        for password in ("", "wrong-password"):
            url = role_url(database_urls.engine, role, password, database_urls.database)
            url = url.replace(f"{role}:@", f"{role}@")  # no password at all
            with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication"):
                await asyncpg.connect(url)


async def test_our_scram_verifier_is_the_one_postgresql_computes(cluster_urls: RoleUrls) -> None:
    """Passwords reach the server only as verifiers; ours must match the server's own."""
    role = f"corridor_probe_{uuid.uuid4().hex[:8]}"
    admin = await connect_db(cluster_urls.admin)
    try:
        await admin.execute("SET password_encryption = 'scram-sha-256'")
        await admin.execute(f"CREATE ROLE {role} PASSWORD 'correct horse battery staple'")
        stored = await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
        await admin.execute(f"DROP ROLE {role}")
    finally:
        await admin.close()
    iterations, salt = stored.split("$")[1].split(":")
    ours = scram_verifier(
        "correct horse battery staple", salt=base64.b64decode(salt), iterations=int(iterations)
    )
    assert ours == stored


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://corridor_engine:s3cret@127.0.0.1:5432/corridor?sslmode=require",
         "postgresql://corridor_engine:***@127.0.0.1:5432/corridor"),
        ("postgresql://u@db/x", "postgresql://u@db/x"),
        ("postgresql://u:p@ss@db:5432/x", "postgresql://u:***@db:5432/x"),
        # A '/' left unescaped in a password splits it into the path: nothing is shown.
        ("postgresql://u:pa/ss@db/x", "(an unparsable database URL)"),
    ],
)  # fmt: skip
def test_urls_in_messages_never_show_a_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_a_malformed_url_is_refused_without_repeating_it() -> None:
    # asyncpg reads "s3cr3t" as the port here, and its ValueError quotes it.
    url = "postgresql://corridor_engine:s3cr3t/tail@127.0.0.1:5432/corridor"
    with pytest.raises(UnusableDatabaseUrl) as refused:
        await PostgresEventStore.connect(url)
    assert "s3cr3t" not in str(refused.value) and "tail" not in str(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


async def test_the_migrate_command_runs_as_the_owner_and_never_prints_a_url(
    cluster_urls: RoleUrls,
) -> None:
    name = f"corridor_cmd_{uuid.uuid4().hex[:8]}"
    urls = await create_database(cluster_urls, name, template="template0")
    try:

        def run(url: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, OWNER_URL_ENV: url}
            return subprocess.run(
                [sys.executable, "-m", "services.eventstore.migrate"],
                cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip

        as_engine = await asyncio.to_thread(run, urls.engine)
        malformed = await asyncio.to_thread(run, urls.engine.replace("@", "/x@", 1))
        as_owner = await asyncio.to_thread(run, urls.owner)
        again = await asyncio.to_thread(run, urls.owner)
    finally:
        await drop_database(cluster_urls, name)
    assert as_engine.returncode == 1 and "role corridor_engine may not" in as_engine.stderr
    assert malformed.returncode == 1 and "UnusableDatabaseUrl" not in malformed.stderr
    assert "cannot use the database URL" in malformed.stderr
    assert as_owner.returncode == 0, as_owner.stderr
    assert as_owner.stdout.strip() == (
        "applied: 0001_event_log, 0002_least_privilege, 0003_prune_idempotency_keys,"
        " 0004_spend_fences, 0005_projections, 0006_payee_personal_data"
    )
    assert again.stdout.strip() == "applied: nothing pending"
    for url in (urls.engine, urls.owner):
        password = urlsplit(url).password
        assert password
        for out in (as_engine, malformed, as_owner, again):
            assert password not in out.stdout + out.stderr
