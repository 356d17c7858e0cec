"""NATS nkey users: what each role may publish and subscribe to, and their seed files.

NATS does not tell a subscriber who published a message, so identity is the subject's last
token, made trustworthy by these per-credential publish permissions, which nats-server enforces
(ADR 0060). ``ROLE_PERMISSIONS`` is the whole policy, as data; ``render_authorization`` turns a
``Registry`` into the server's ``authorization`` block, and is pure. The rest of the module
issues credentials: an nkey user seed in a file of its own (mode 0600) and its public key in
the registry, under a lock so that two ``corridor creds add`` never lose each other's write.

Placeholders in the patterns: ``{id}`` the credential's id, ``{region}`` and ``{node}`` an
executor's, ``{key}`` the user's public key (each user's request replies arrive under its own
``_INBOX.{key}`` prefix, so that nobody else can subscribe to them).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NamedTuple

import msgspec

from services.bus import subjects
from services.filelock import exclusive
from services.identity import api_keys
from services.identity.registry import (
    AUTH_DIR,
    CallerKind,
    Credential,
    InvalidCredential,
    Registry,
    Role,
    load_registry,
    registry_path,
    save_registry,
)

SEED_SUFFIX: Final = ".nk"
LOCK_NAME: Final = ".credentials.lock"
# One registry write holds the lock for a read, a key generation and a rename; ten seconds of
# waiting means a process is stuck holding it, which is worth an error rather than a hang.
LOCK_WAIT_S: Final = 10.0
# A seed file is one nkey seed (58 characters) and perhaps a newline; anything much larger is
# not a seed file, and is not read whole.
SEED_FILE_BYTES_MAX: Final = 4096
INBOX_PREFIX: Final = "_INBOX"


class Permissions(NamedTuple):
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


class CredentialFileError(ValueError):
    """A seed file that cannot be read as an nkey user seed (a one-line error for a user)."""


def inbox_prefix(public_key: str) -> str:
    """Where a user's request replies and JetStream deliveries arrive: its own subtree."""
    return f"{INBOX_PREFIX}.{public_key}"


_API = subjects.API_PREFIX
_POLICY = subjects.POLICY_API_PREFIX
_AGENTS = subjects.AGENTS_API_PREFIX
_CMD = subjects.CMD_PREFIX
_INBOX = f"{INBOX_PREFIX}.{{key}}.>"
_EVT = subjects.EVT_STREAM
_DISPATCH = subjects.DISPATCH_STREAM
_EXECUTOR_DURABLE = "executor-{region}-{node}"  # services/executor/consumer.py consumer_name
# Reads name their reader: ``<query>.<role>.<id>`` (the engine decides which intents that
# principal may read, ADR 0061). The bare ``get``/``status`` subjects read everything and are
# the engine's own. The policy in force is no secret: callers need it to set a fee.
_QUERIES = (
    f"{subjects.API_GET}.{{role}}.{{id}}",
    f"{subjects.API_STATUS}.{{role}}.{{id}}",
    subjects.POLICY_SHOW,
    subjects.POLICY_CORRIDORS,
    f"{subjects.AGENTS_LIST}.{{role}}.{{id}}",
)
# A human principal (a caller of kind ``human``) proposes keys for the agents they sponsor,
# and revokes them; an operator approves (ADR 0068). Services and agents change no keys.
HUMAN_EXTRA_PUBLISH: Final = (f"{_AGENTS}.propose.{{id}}", f"{_AGENTS}.revoke.{{id}}")
# Every reader's consumer on CORRIDOR_EVT is named after it (``<role>-<id>``), and only that
# name is granted: a create request may name an existing consumer and change it (checked on
# nats-server 2.15.1), so the plain ``CONSUMER.CREATE.<stream>`` subject, whose body names
# the consumer, is granted to nobody, and nobody can alter or delete another's (ADR 0067).
_EVT_OWN = f"{_EVT}.{{role}}-{{id}}"
_EVT_OWN_CONSUMER = (
    f"$JS.API.CONSUMER.INFO.{_EVT_OWN}",
    f"$JS.API.CONSUMER.DELETE.{_EVT_OWN}",
    f"$JS.API.CONSUMER.MSG.NEXT.{_EVT_OWN}",
    f"$JS.ACK.{_EVT_OWN}.>",
    f"$JS.FC.{_EVT_OWN}.>",
)
# Operators and auditors read the whole stream: live by core subscription, the history through
# their own consumer (any filter) or message gets by sequence.
_EVT_READ = (
    f"$JS.API.STREAM.INFO.{_EVT}",
    f"$JS.API.STREAM.MSG.GET.{_EVT}",
    f"$JS.API.DIRECT.GET.{_EVT}",
    f"$JS.API.DIRECT.GET.{_EVT}.>",
    f"$JS.API.CONSUMER.CREATE.{_EVT_OWN}",
    f"$JS.API.CONSUMER.CREATE.{_EVT_OWN}.>",
    *_EVT_OWN_CONSUMER,
)
_EVT_SUBSCRIBE_ALL = subjects.EVT_WILDCARD
# Callers and agents read their own intents' events only: live on their own subtree, and the
# history through their own consumer, created only on the subject that carries their own
# subtree as the filter (nats-server refuses a body whose filter differs, err 10131, and a
# body with ``filter_subjects``, err 10137). No message get, no stream info, no other filter.
_OWN_EVENTS = subjects.owner_events("{id}")
_EVT_READ_OWN = (f"$JS.API.CONSUMER.CREATE.{_EVT_OWN}.{_OWN_EVENTS}", *_EVT_OWN_CONSUMER)
_CALLER = Permissions(
    publish=(
        f"{_API}.submit.{{id}}",
        f"{_API}.cancel.{{id}}",
        f"{_API}.receive.{{id}}",  # receive intents (ADR 0220)
        f"{_API}.rebalance.{{id}}",  # rebalances; the engine takes service callers' (ADR 0244)
        f"{subjects.LSP_API_PREFIX}.order.{{id}}",  # LSP orders; service callers' (ADR 0252)
        f"{subjects.LSP_GET}.caller.{{id}}",
        f"{subjects.LSP_INFO_PREFIX}.*",
        f"{_CMD}.submit.{{id}}",
        f"{_CMD}.cancel.{{id}}",
        # Their own webhook endpoints (ADR 0175).
        *(
            f"{subjects.WEBHOOKS_API_PREFIX}.{verb}.{{id}}"
            for verb in ("register", "remove", "list")
        ),
        *_QUERIES,
        *_EVT_READ_OWN,
    ),
    subscribe=(_INBOX, _OWN_EVENTS),
)

_ANY = "*"
GATEWAY_PUBLISH: Final = (
    *(
        f"{_API}.{verb}.{_ANY}"
        for verb in ("submit", "cancel", "receive", "approve", "reject", "resolve", "acknowledge")
    ),
    # An operator's channel opens and closes over HTTP (ADR 0238).
    f"{_API}.channel_open.{_ANY}",
    f"{_API}.channel_close.{_ANY}",
    f"{_POLICY}.propose.{_ANY}",
    f"{_POLICY}.approve.{_ANY}",
    f"{subjects.RECON_API_PREFIX}.resolve.{_ANY}",
    # A caller's webhook endpoints over HTTP (ADR 0175): register, remove, list as its key.
    *(f"{subjects.WEBHOOKS_API_PREFIX}.{verb}.{_ANY}" for verb in ("register", "remove", "list")),
    f"{subjects.RECON_API_PREFIX}.clear.{_ANY}",
    *(f"{subjects.DLQ_API_PREFIX}.{verb}.{_ANY}" for verb in ("list", "replay", "drop")),
    # Reads as the roles an API key may have: never as an engine or an executor.
    *(
        f"{query}.{role}.{_ANY}"
        for query in (subjects.API_GET, subjects.API_STATUS)
        for role in ("caller", "agent", "operator", "auditor")
    ),
    subjects.POLICY_SHOW,
    subjects.POLICY_CORRIDORS,
)

# The role table: the whole trust boundary on the bus (README "Credentials", ADR 0060).
ROLE_PERMISSIONS: Final[Mapping[Role, Permissions]] = MappingProxyType(
    {
        "caller": _CALLER,
        "agent": _CALLER,
        "operator": Permissions(
            publish=(
                f"{_API}.approve.{{id}}",
                f"{_API}.reject.{{id}}",
                f"{_API}.resolve.{{id}}",
                f"{_API}.acknowledge.{{id}}",
                # Channel opens and closes on our nodes (ADR 0234).
                f"{_API}.channel_open.{{id}}",
                f"{_API}.channel_close.{{id}}",
                # Rebalances over the auto limit (ADR 0244).
                f"{_API}.rebalance_approve.{{id}}",
                # Payees (ADR 0270).
                f"{_API}.payee_onboard.{{id}}",
                f"{_API}.payee_erase.{{id}}",
                # Inbound channels bought from external LSPs (ADR 0252).
                f"{subjects.LSP_API_PREFIX}.order.{{id}}",
                f"{subjects.LSP_GET}.operator.{{id}}",
                f"{subjects.LSP_INFO_PREFIX}.*",
                f"{_POLICY}.propose.{{id}}",
                f"{_POLICY}.approve.{{id}}",
                f"{_AGENTS}.propose.{{id}}",
                f"{_AGENTS}.approve.{{id}}",
                f"{_AGENTS}.revoke.{{id}}",
                f"{subjects.RECON_API_PREFIX}.resolve.{{id}}",
                f"{subjects.RECON_API_PREFIX}.clear.{{id}}",
                # The dead-letter desk, answered by the engine and audited in the log under
                # this id (ADR 0080): no direct access to CORRIDOR_DLQ or the command stream.
                *(
                    f"{subjects.DLQ_API_PREFIX}.{verb}.{{id}}"
                    for verb in ("list", "replay", "drop")
                ),
                *_QUERIES,
                *_EVT_READ,
            ),
            # The channel snapshots, for `corridor liquidity` and the planner (ADR 0240).
            subscribe=(_INBOX, _EVT_SUBSCRIBE_ALL, subjects.LIQUIDITY_WILDCARD),
        ),
        # One node's work orders only: its durable, created with its own filter (the server
        # refuses a create whose body's filter differs from the one in the subject), pulled
        # and acked; no other create form is allowed, since those take any filter.
        "executor": Permissions(
            publish=(
                f"{_API}.outcome.{{node}}",
                f"{_API}.invoice.{{node}}",  # its receives' invoices (ADR 0220)
                f"{_API}.channel_report.{{node}}",  # its channel operations (ADR 0234)
                f"{_API}.jit_sell.{{node}}",  # the JIT channels it sells (ADR 0261)
                f"{_API}.jit_htlc.{{node}}",
                f"{_API}.jit_report.{{node}}",
                f"{subjects.LSP_API_PREFIX}.report.{{node}}",  # its LSP orders (ADR 0252)
                f"{subjects.LSP_GET}.executor.{{node}}",
                f"{subjects.API_STATUS}.executor.{{node}}",
                f"{subjects.HEALTH_PREFIX}.{{region}}.{{node}}",
                f"{subjects.LIQUIDITY_PREFIX}.{{region}}.{{node}}",
                # Orders it refused (unsigned, forged...), recorded for the operator (ADR 0063).
                f"{subjects.DLQ_DISPATCH_PREFIX}.{{region}}.{{node}}",
                f"$JS.API.STREAM.INFO.{_DISPATCH}",
                f"$JS.API.CONSUMER.INFO.{_DISPATCH}.{_EXECUTOR_DURABLE}",
                f"$JS.API.CONSUMER.CREATE.{_DISPATCH}.{_EXECUTOR_DURABLE}."
                f"{subjects.DISPATCH_PREFIX}.{{region}}.{{node}}",
                f"$JS.API.CONSUMER.MSG.NEXT.{_DISPATCH}.{_EXECUTOR_DURABLE}",
                f"$JS.ACK.{_DISPATCH}.{_EXECUTOR_DURABLE}.>",
            ),
            # Its node's LSPS1 options for `corridor lsp info` (ADR 0252).
            subscribe=(_INBOX, f"{subjects.LSP_INFO_PREFIX}.{{node}}"),
        ),
        # One node's reconciler: reports what it found on that node, nothing else (ADR 0151).
        # It reads the log from PostgreSQL and the node through NodePort, not from the bus.
        "reconciler": Permissions(
            publish=(f"{subjects.RECON_API_PREFIX}.report.{{node}}",),
            subscribe=(_INBOX,),
        ),
        # Auditors also read the signed checkpoints, to verify the log against them (ADR 0065).
        "auditor": Permissions(
            publish=(
                *_QUERIES,
                *_EVT_READ,
                f"$JS.API.STREAM.INFO.{subjects.CHECKPOINT_STREAM}",
                f"$JS.API.STREAM.MSG.GET.{subjects.CHECKPOINT_STREAM}",
            ),
            subscribe=(_INBOX, _EVT_SUBSCRIBE_ALL),
        ),
        # The HTTP API (ADR 0172): forwards, under the subject token of the caller or operator
        # whose API key it checked, the request/reply commands and reads those roles may send.
        # Not: outcomes, reconciliation reports, agent keys, the command stream, events.
        # It also hears the executors' node health reports, for the console's nodes page.
        "gateway": Permissions(
            publish=GATEWAY_PUBLISH,
            subscribe=(_INBOX, subjects.HEALTH_WILDCARD, subjects.LIQUIDITY_WILDCARD),
        ),
        # The only writer of CORRIDOR_EVT and CORRIDOR_DISPATCH, and the responder to every
        # request: everything. Another engine process joins with a credential of this role.
        "engine": Permissions(publish=(">",), subscribe=(">",)),
    }
)
# Denied to every role but the engine even if an allowed pattern is ever widened by mistake:
# whoever can publish here can forge the log's copy or a work order.
ENGINE_ONLY: Final = (subjects.EVT_WILDCARD, subjects.DISPATCH_WILDCARD)
# Denied even to the engine: the signed checkpoints outlive whoever holds the database *and*
# the engine's credential (ADR 0065, 0067). The stream's deny_delete/deny_purge stop message
# deletes and purges; these stop deleting the stream, purging it, changing its limits (an
# update may set max_msgs or max_age, which would drop checkpoints; it may not cancel
# deny_delete, checked on 2.15.1) and restoring a snapshot over it. Creating it stays allowed.
_CHECKPOINTS = subjects.CHECKPOINT_STREAM
CHECKPOINTS_PROTECTED: Final = (
    f"$JS.API.STREAM.DELETE.{_CHECKPOINTS}",
    f"$JS.API.STREAM.PURGE.{_CHECKPOINTS}",
    f"$JS.API.STREAM.UPDATE.{_CHECKPOINTS}",
    f"$JS.API.STREAM.MSG.DELETE.{_CHECKPOINTS}",
    f"$JS.API.STREAM.RESTORE.{_CHECKPOINTS}",
)


def user_permissions(credential: Credential) -> Permissions:
    """``credential``'s role patterns with its own id, region, node and key filled in."""
    table = ROLE_PERMISSIONS[credential.role]
    values = {
        "id": credential.id,
        "role": credential.role,
        "key": credential.public_key,
        "region": credential.region or "",
        "node": credential.node or "",
    }
    publish = table.publish
    if credential.role == "caller" and credential.kind == "human":
        publish = (*publish, *HUMAN_EXTRA_PUBLISH)
    return Permissions(
        publish=tuple(p.format(**values) for p in publish),
        subscribe=tuple(s.format(**values) for s in table.subscribe),
    )


def render_authorization(registry: Registry) -> dict[str, Any]:
    """The server's ``authorization`` block: one nkey user per live credential. Pure.

    Raises ``InvalidCredential`` for a registry with no live credential: nats-server given an
    empty users list would accept anonymous connections, which Corridor never does.
    """
    # Expired credentials leave the users list at the next reload (the engine and the HTTP API
    # refuse them from the moment they expire).
    live = registry.live(now_ms=time.time_ns() // 1_000_000)
    if not live:
        raise InvalidCredential("no live credential: the server would admit anonymous users")
    users = []
    for credential in sorted(live, key=lambda c: (c.role, c.id)):
        credential.check()
        permissions = user_permissions(credential)
        publish: dict[str, list[str]] = {"allow": list(permissions.publish)}
        publish["deny"] = list(
            CHECKPOINTS_PROTECTED if credential.role == "engine" else ENGINE_ONLY
        )
        rendered: dict[str, Any] = {
            "publish": publish,
            "subscribe": {"allow": list(permissions.subscribe)},
        }
        if credential.role == "executor":
            # It answers `corridor lsp info` for its node (ADR 0252): one reply per request it
            # received, to that request's inbox only.
            rendered["allow_responses"] = {"max": 1, "expires": "1m"}
        users.append({"nkey": credential.public_key, "permissions": rendered})
    keys = [u["nkey"] for u in users]
    if len(set(keys)) != len(keys):
        raise InvalidCredential("one public key is registered twice")
    return {"users": users}


def authorization_conf(registry: Registry) -> str:
    """``render_authorization`` as nats-server config text (JSON is valid config syntax)."""
    return "authorization: " + json.dumps(render_authorization(registry), indent=2) + "\n"


# -- seed files --------------------------------------------------------------------------------


def seed_path(state_dir: Path, role: Role, ident: str) -> Path:
    """Where ``corridor up`` keeps the seeds it makes: ``<state_dir>/auth/<role>-<id>.nk``."""
    return state_dir / AUTH_DIR / f"{role}-{ident}{SEED_SUFFIX}"


def new_seed() -> bytes:
    """A fresh nkey user seed (``SU...``), from the operating system's randomness."""
    import nacl.signing
    import nkeys

    private = bytes(nacl.signing.SigningKey.generate())
    seed: bytes = nkeys.encode_seed(private, nkeys.PREFIX_BYTE_USER)
    return seed


def public_key_of(seed: bytes) -> str:
    import nkeys

    try:
        key_pair = nkeys.from_seed(bytearray(seed.strip()))
    except Exception as exc:  # nkeys raises its own error classes, and binascii's
        raise CredentialFileError(f"not an nkey seed ({type(exc).__name__})") from None
    public: str = key_pair.public_key.decode()
    key_pair.wipe()
    if not public.startswith("U"):
        raise CredentialFileError("not an nkey *user* seed (its public key must start with U)")
    return public


def read_public_key(path: Path) -> str:
    """The public key of the seed in ``path`` (never the seed itself: it is not kept)."""
    try:
        with path.open("rb") as f:
            data = f.read(SEED_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise CredentialFileError(f"cannot read credential {path}: {exc.strerror}") from None
    if len(data) > SEED_FILE_BYTES_MAX:
        raise CredentialFileError(f"{path} is not an nkey seed file (too large)")
    try:
        return public_key_of(data)
    except CredentialFileError as exc:
        raise CredentialFileError(f"{path}: {exc}") from None


def write_seed(path: Path, seed: bytes) -> None:
    """Create ``path`` holding ``seed``, mode 0600, atomically; never overwrite a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".seed-")  # created 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(seed + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)  # fails if path exists: a seed is never replaced in place
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- issuing and revoking ----------------------------------------------------------------------


@contextlib.contextmanager
def registry_locked(state_dir: Path) -> Iterator[Path]:
    """Hold the registry's lock; yields the registry's path."""
    auth = state_dir / AUTH_DIR
    auth.mkdir(parents=True, exist_ok=True)
    with exclusive(auth / LOCK_NAME, wait_s=LOCK_WAIT_S):
        yield registry_path(state_dir)


def _credential(
    role: Role, ident: str, public_key: str, *, kind: CallerKind | None,
    region: str | None, node: str | None,
) -> Credential:  # fmt: skip
    credential = Credential(
        id=ident, role=role, public_key=public_key, kind=kind, region=region, node=node,
        created_at_ms=time.time_ns() // 1_000_000,
    )  # fmt: skip
    credential.check()
    return credential


def _add(registry: Registry, credential: Credential) -> Registry:
    if registry.by_public_key(credential.public_key) is not None:
        raise InvalidCredential("that public key is registered already")
    return registry.with_added(credential)


def issue(
    state_dir: Path, *, role: Role, ident: str, out: Path, kind: CallerKind | None = None,
    region: str | None = None, node: str | None = None, api_key: bool = False,
    expires_at_ms: int | None = None,
) -> Credential:  # fmt: skip
    """A new credential: its seed written to ``out`` (which must not exist), its public key
    registered. With ``api_key``, its HTTP bearer token goes to ``out.http`` (ADR 0171).
    Raises ``InvalidCredential`` if a live one of that role and id exists."""
    token_out = api_keys.http_path(out)
    for path in (out, token_out) if api_key else (out,):
        if path.exists():
            raise InvalidCredential(f"{path} exists; a secret file is never overwritten")
    seed = new_seed()
    credential = _credential(role, ident, public_key_of(seed), kind=kind, region=region, node=node)
    if expires_at_ms is not None:
        credential = msgspec.structs.replace(credential, expires_at_ms=expires_at_ms)
    token = api_keys.new_token() if api_key else None
    if token is not None:
        credential = msgspec.structs.replace(credential, api_key_sha256=api_keys.token_hash(token))
    with registry_locked(state_dir) as path:
        registry = _add(load_registry(path), credential)
        write_seed(out, seed)
        if token is not None:
            api_keys.write_token(token_out, token)
        save_registry(path, registry)
    return credential


def ensure(
    state_dir: Path, *, role: Role, ident: str, kind: CallerKind | None = None,
    region: str | None = None, node: str | None = None, api_key: bool = False,
) -> Path:  # fmt: skip
    """The seed file of ``role``/``ident`` in ``state_dir`` (``seed_path``), made if missing.

    Idempotent: an existing live credential whose seed file is there and whose kind, region
    and node are the ones asked for is kept. Otherwise the old one is revoked and a new one
    issued, so a lost seed never leaves a credential nobody can use but nobody revoked.
    """
    target = seed_path(state_dir, role, ident)
    with registry_locked(state_dir) as path:
        registry = load_registry(path)
        current = registry.find(role, ident)
        token_file = api_keys.http_path(target)
        if (
            current is not None
            and _matches(current, target, kind, region, node)
            and (not api_key or _has_api_key(current, token_file))
        ):
            return target
        if current is not None:
            registry = registry.with_revoked(role, ident)
        seed = new_seed()
        credential = _credential(
            role, ident, public_key_of(seed), kind=kind, region=region, node=node
        )
        token = api_keys.new_token() if api_key else None
        if token is not None:
            digest = api_keys.token_hash(token)
            credential = msgspec.structs.replace(credential, api_key_sha256=digest)
        registry = _add(registry, credential)
        target.unlink(missing_ok=True)  # a stale seed of a revoked (or never saved) key
        token_file.unlink(missing_ok=True)
        write_seed(target, seed)
        if token is not None:
            api_keys.write_token(token_file, token)
        save_registry(path, registry)
    return target


def _has_api_key(current: Credential, token_file: Path) -> bool:
    if current.api_key_sha256 is None:
        return False
    try:
        token = api_keys.read_token(token_file)
    except OSError:
        return False
    return api_keys.same_hash(api_keys.token_hash(token), current.api_key_sha256)


def _matches(
    current: Credential, seed_file: Path, kind: str | None, region: str | None, node: str | None
) -> bool:
    if (current.kind, current.region, current.node) != (kind, region, node):
        return False
    try:
        return read_public_key(seed_file) == current.public_key
    except CredentialFileError:
        return False


def register_key(state_dir: Path, *, role: Role, ident: str, public_key: str) -> Credential:
    """Register a key whose seed is kept elsewhere (a key brought by its holder)."""
    credential = _credential(role, ident, public_key, kind=None, region=None, node=None)
    with registry_locked(state_dir) as path:
        save_registry(path, _add(load_registry(path), credential))
    return credential


def revoke(state_dir: Path, *, role: Role, ident: str) -> Registry:
    """Mark ``role``/``ident`` revoked; the registry after. Its seed file, if here, goes too."""
    with registry_locked(state_dir) as path:
        registry = load_registry(path).with_revoked(role, ident)
        save_registry(path, registry)
    seed_path(state_dir, role, ident).unlink(missing_ok=True)
    api_keys.http_path(seed_path(state_dir, role, ident)).unlink(missing_ok=True)
    return registry


def public_view(credential: Credential) -> dict[str, Any]:
    """A credential as ``corridor creds list --json`` prints it (the registry holds no seed);
    whether it has an API key, not the key's hash."""
    view: dict[str, Any] = msgspec.to_builtins(credential)
    view["api_key"] = view.pop("api_key_sha256") is not None
    return view
