"""Corridor's PostgreSQL roles, and the superuser's step that creates them (ADR 0064).

- ``corridor_owner`` owns the database and every object in it, and runs the migrations.
- ``corridor_engine`` is what the engine connects as: it reads the log, appends to it only
  through ``append_events``, and upserts the relay's checkpoint (the grants are in
  ``migrations/0002_least_privilege.sql``); it prunes old idempotency claims only through
  ``prune_idempotency_keys`` (``0003_prune_idempotency_keys.sql``, ADR 0079). It owns
  nothing, so it cannot alter a table or disable a trigger.
- ``corridor_auditor`` reads, for replay and audit commands.

Creating roles needs CREATEROLE and creating a database CREATEDB: the dev stack and the test
harness do both here as the cluster's superuser; an operator runs the same steps as SQL
(docs/operations/postgres-roles.md). Passwords reach the server only as SCRAM-SHA-256
verifiers, as psql's ``\\password`` sends them: no statement, so no log line, carries one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from services.eventstore.migrate import migrate

OWNER: Final = "corridor_owner"
ENGINE: Final = "corridor_engine"
AUDITOR: Final = "corridor_auditor"
ROLES: Final = (OWNER, ENGINE, AUDITOR)

# PostgreSQL's own default (scram_iterations); a verifier records its count, so raising it
# later only affects passwords set after the change.
SCRAM_ITERATIONS: Final = 4096
SCRAM_SALT_BYTES: Final = 16
# 32 random bytes, URL-safe base64: no character a DSN or a pgpass file would need escaped.
PASSWORD_BYTES: Final = 32

_VERIFIER_RE = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Serialises role changes between harnesses sharing one server.
_ROLES_LOCK_KEY: Final = 0x636F7273  # "cors"

# Attributes every Corridor role has: none of them may bypass the grants or make roles,
# databases or replicas. Only the auditor's sessions start read-only, a second fence.
_COMMON_ATTRIBUTES: Final = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


class UnusableDatabaseUrl(ValueError):
    """A database URL asyncpg cannot parse. The message never repeats the URL: a password with
    an unescaped ``/`` or ``@`` would otherwise appear in part in the error."""


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def scram_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802 section 3,
    RFC 7677; the format of ``pg_authid.rolpassword``), as ``psql``'s ``\\password`` sends it.

    Only ASCII passwords: SASLprep leaves them unchanged, so no normalisation is needed.
    """
    assert password.isascii() and password, "generated passwords are non-empty ASCII"
    salt = salt if salt is not None else secrets.token_bytes(SCRAM_SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def redact_url(url: str) -> str:
    """``url`` without its password or query, for messages. A URL that does not split cleanly
    (an unescaped ``/`` or ``@`` in the password) is not shown at all."""
    try:
        parts = urlsplit(url)
        host, port, user = parts.hostname or "", parts.port, parts.username
    except ValueError:
        return "(an unparsable database URL)"
    if "@" in parts.path or "@" in host:
        return "(an unparsable database URL)"
    userinfo = f"{user}@" if user is not None else ""
    if parts.password is not None:
        userinfo = f"{user}:***@"
    hostport = f"{host}:{port}" if port else host
    return urlunsplit(parts._replace(netloc=userinfo + hostport, query="", fragment=""))


def role_url(base_url: str, role: str, password: str, database: str) -> str:
    """``base_url``'s server with ``role``'s credentials and ``database``."""
    parts = urlsplit(base_url)
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{quote(database, safe='')}"))


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{quote(database, safe='')}"))


@dataclass(frozen=True)
class RoleUrls:
    """One database's URLs, one per role. None is shown in a repr: each holds a password."""

    database: str
    admin: str = field(repr=False)  # the superuser's, for CREATE/DROP DATABASE
    owner: str = field(repr=False)  # migrations only
    engine: str = field(repr=False)
    auditor: str = field(repr=False)

    def for_database(self, database: str) -> RoleUrls:
        """The same roles' URLs for another database of the same server."""
        return replace(
            self,
            database=database,
            **{
                name: with_database(getattr(self, name), database)
                for name in ("owner", "engine", "auditor")
            },
        )

    @classmethod
    def build(cls, admin_url: str, database: str, passwords: Mapping[str, str]) -> RoleUrls:
        return cls(
            database=database,
            admin=admin_url,
            owner=role_url(admin_url, OWNER, passwords[OWNER], database),
            engine=role_url(admin_url, ENGINE, passwords[ENGINE], database),
            auditor=role_url(admin_url, AUDITOR, passwords[AUDITOR], database),
        )


# What asyncpg raises for a URL it cannot parse, sometimes quoting a piece of it.
URL_ERRORS: Final = (ValueError, asyncpg.ClientConfigurationError)


def unusable_url(url: str, exc: BaseException) -> UnusableDatabaseUrl:
    """The error to raise, ``from None``, in place of ``exc`` (one of :data:`URL_ERRORS`)."""
    return UnusableDatabaseUrl(
        f"cannot use the database URL {redact_url(url)} ({type(exc).__name__}); "
        "percent-encode any of : / @ ? # in its password"
    )


async def connect(url: str, **kwargs: Any) -> asyncpg.Connection[Any]:
    """``asyncpg.connect`` whose errors never carry the URL (see :class:`UnusableDatabaseUrl`)."""
    try:
        conn: asyncpg.Connection[Any] = await asyncpg.connect(url, **kwargs)
    except URL_ERRORS as exc:
        raise unusable_url(url, exc) from None
    return conn


def _ident(name: str) -> str:
    """``name`` quoted as an identifier. Only plain lower-case names are ours to make."""
    assert _IDENT_RE.match(name), f"not a plain identifier: {name!r}"
    return f'"{name}"'


async def ensure_roles(admin: asyncpg.Connection[Any], passwords: Mapping[str, str]) -> None:
    """Create Corridor's roles, or reset their attributes and passwords (superuser or
    CREATEROLE). The passwords travel as SCRAM verifiers: a failed statement logged with its
    text shows a verifier, never a password."""
    assert set(passwords) == set(ROLES), f"one password per role: {sorted(passwords)}"
    async with admin.transaction():
        await admin.execute("SELECT pg_advisory_xact_lock($1)", _ROLES_LOCK_KEY)
        existing = {
            r["rolname"]
            for r in await admin.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])", list(ROLES)
            )
        }
        for role in ROLES:
            verifier = scram_verifier(passwords[role])
            assert _VERIFIER_RE.match(verifier)  # safe inside a quoted literal
            verb = "ALTER" if role in existing else "CREATE"
            await admin.execute(
                f"{verb} ROLE {_ident(role)} WITH {_COMMON_ATTRIBUTES} PASSWORD '{verifier}'"
            )
        # Set whether the auditor's role is new or not, so an old one is fenced too.
        await admin.execute(f"ALTER ROLE {_ident(AUDITOR)} SET default_transaction_read_only = on")


async def ensure_database(
    admin: asyncpg.Connection[Any], name: str, *, template: str | None = None
) -> None:
    """A database owned by ``corridor_owner`` (so it owns the ``public`` schema, where the
    migrations create the log) that only Corridor's roles may connect to."""
    exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    if not exists:
        like = f" TEMPLATE {_ident(template)}" if template else ""
        await admin.execute(f"CREATE DATABASE {_ident(name)} OWNER {_ident(OWNER)}{like}")
    # A copy of a template does not inherit the template's grants: set them on every database.
    await admin.execute(f"REVOKE ALL ON DATABASE {_ident(name)} FROM PUBLIC")
    await admin.execute(
        f"GRANT CONNECT ON DATABASE {_ident(name)} TO {_ident(ENGINE)}, {_ident(AUDITOR)}"
    )


async def migrate_as_owner(owner_url: str) -> list[int]:
    conn = await connect(owner_url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def provision(admin_url: str, *, database: str, passwords: Mapping[str, str]) -> RoleUrls:
    """As the superuser at ``admin_url``: the roles, then ``database``; then the migrations as
    the owner. Returns each role's URL for ``database``. Safe to repeat."""
    admin = await connect(admin_url)
    try:
        await ensure_roles(admin, passwords)
        await ensure_database(admin, database)
    finally:
        await admin.close()
    urls = RoleUrls.build(admin_url, database, passwords)
    await migrate_as_owner(urls.owner)
    return urls


async def create_database(
    urls: RoleUrls, name: str, *, template: str | None = None, replace_existing: bool = False
) -> RoleUrls:
    """A further database on the server of ``urls`` for the same roles (a benchmark's or a
    test's): migrated as the owner, or a copy of ``template`` as it stands.
    ``replace_existing`` drops one of that name first."""
    admin = await connect(urls.admin)
    try:
        if replace_existing:
            await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        await ensure_database(admin, name, template=template)
    finally:
        await admin.close()
    created = urls.for_database(name)
    if template is None:
        await migrate_as_owner(created.owner)
    return created


async def drop_database(urls: RoleUrls, name: str) -> None:
    admin = await connect(urls.admin)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
    finally:
        await admin.close()
