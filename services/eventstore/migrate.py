"""Versioned migrations: ``migrations/NNNN_name.sql`` applied once each, in order.

They run as the owner role (``corridor_owner``, ADR 0064): the dev stack and the test harness
do so when they create a database, an operator with ``python -m services.eventstore.migrate``.
Every process that opens the store calls :func:`migrate` too; with nothing pending it only
reads ``schema_migrations``, so the engine's and the auditor's roles, which may not change the
schema, start as long as the owner has migrated first.

A transaction-scoped advisory lock lets several processes migrate at once; a checksum per
applied file refuses a migration that was edited after it ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import asyncpg
from asyncpg.pool import PoolConnectionProxy

_NAME_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x636F7272  # "corr"
# Where ``python -m services.eventstore.migrate`` finds the owner's URL: in the environment,
# because a command line is visible to every user of the machine (``ps``).
OWNER_URL_ENV: Final = "DATABASE_OWNER_URL"

if TYPE_CHECKING:
    Connection = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


class MigrationDrift(RuntimeError):
    pass


class MigrationsPending(RuntimeError):
    """Migrations are pending and this connection's role may not apply them."""


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("services.eventstore.migrations").iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    assert versions == list(range(1, len(found) + 1)), f"migration numbers have gaps: {versions}"
    return found


def _pending(applied: dict[int, str]) -> list[Migration]:
    """The migrations not applied yet; refuses one whose file changed after it was applied."""
    pending = []
    for migration in available_migrations():
        if migration.version not in applied:
            pending.append(migration)
        elif applied[migration.version] != migration.checksum:
            raise MigrationDrift(
                f"migration {migration.label} changed after it was applied; "
                "add a new migration instead"
            )
    return pending


async def _applied(conn: Connection) -> dict[int, str] | None:
    """Version -> checksum of the applied migrations; None if this role may not read them."""
    try:
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return {}
    except asyncpg.InsufficientPrivilegeError:
        # Before 0002 nobody but the table's owner reads it: 0002 at least is pending.
        return None
    return {r["version"]: r["checksum"] for r in rows}


async def migrate(conn: Connection) -> list[int]:
    """Apply pending migrations; return the versions applied now.

    With nothing pending this only reads, so any role that may read ``schema_migrations``
    passes. A role that may not apply what is pending gets :class:`MigrationsPending`.
    """
    applied = await _applied(conn)
    if applied is not None and not _pending(applied):
        return []
    try:
        return await _apply(conn)
    except asyncpg.InsufficientPrivilegeError:
        role = await conn.fetchval("SELECT current_user")
        raise MigrationsPending(
            f"the event log's schema has migrations pending and role {role} may not apply "
            f"them: run them as the owner role ({OWNER_URL_ENV}=... python -m "
            "services.eventstore.migrate; see docs/operations/postgres-roles.md)"
        ) from None


async def _apply(conn: Connection) -> list[int]:
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        for migration in _pending({r["version"]: r["checksum"] for r in rows}):
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.version)
    return applied_now


async def _main() -> int:
    from services.eventstore.roles import UnusableDatabaseUrl, connect

    url = os.environ.get(OWNER_URL_ENV, "")
    if not url:
        print(f"set {OWNER_URL_ENV} to the owner role's URL (corridor_owner)", file=sys.stderr)
        return 2
    try:
        conn = await connect(url)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
    except (UnusableDatabaseUrl, MigrationDrift, MigrationsPending) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        # Server messages name roles and objects, never the password; the URL is not repeated.
        print(f"migrate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    names = {m.version: m.label for m in available_migrations()}
    print("applied: " + (", ".join(names[v] for v in applied) if applied else "nothing pending"))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
