"""Every secret a `corridor up` state dir holds, in every form a leak might take, and a grep.

``collect`` reads the secrets from where the stack keeps them (the only files allowed to hold
them, see ``SecretFile``); ``find_leaks`` searches text and files for any of their forms. A
finding names the secret by category, origin and fingerprint (a short SHA-256 prefix of its
canonical form), never by value, so a failing test does not itself leak what it found.

Where each secret lives (read from the code that writes it):

- nkey seeds: ``DIR/auth/<role>-<id>.nk`` (services/identity/nats_auth.py ``seed_path``).
- HTTP API keys: ``DIR/auth/<role>-<id>.nk.http`` (services/identity/api_keys.py); the
  registry holds only their SHA-256.
- PostgreSQL passwords: ``DIR/servers/postgres/passwords.json``, role -> password
  (services/devstack/postgres.py ``PASSWORDS_FILE``); the engine's is in the database URL
  that ``endpoints.json`` carries (ADR 0064).
- The engine's Ed25519 signing key: ``DIR/keys/engine-signing.key``, PKCS#8 PEM
  (services/signing/file_keys.py).
- Simulated LND nodes: ``DIR/sim/lnd/<node>/admin.macaroon`` (raw bytes; sent hex-encoded in
  the ``macaroon`` gRPC header) and ``tls.key`` (PKCS#8 PEM, ECDSA P-256)
  (services/sim/lnd_credentials.py).
- The webhook master key: ``DIR/keys/webhooks.key``, 32 raw bytes; every endpoint's signing
  secret is derived from it (services/webhooks/secrets.py, ADR 0176).
- The executors' keysend secret: ``DIR/executor-keysend.secret``, hex
  (services/executor/keysend.py ``SECRET_FILE_NAME``).
- CLN runes: none. The simulated CLN nodes serve JSON-RPC on a unix socket, which needs no
  rune (services/lightning/cln.py); any ``*.rune``/``rune`` file found is collected anyway.
- Simulated nodes' secp256k1 private keys: never written, derived from ``--seed``
  (services/sim/keys.py ``node_privkey``); collected so that a log of one is caught too.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# Needles shorter than this could match by chance in megabytes of binary data.
NEEDLE_BYTES_MIN: Final = 16

SEEDS: Final = "nkey seed"
PG_PASSWORD: Final = "postgres password"
SIGNING_KEY: Final = "engine signing key"
MACAROON: Final = "lnd macaroon"
TLS_KEY: Final = "lnd tls private key"
KEYSEND: Final = "keysend secret"
RUNE: Final = "cln rune"
NODE_KEY: Final = "sim node private key"
OTHER_KEY: Final = "other private key"
API_KEY: Final = "http api key"
WEBHOOK_KEY: Final = "webhook master key"
# A seed or key file is a few hundred bytes; the sweep reads no larger file.
SMALL_FILE_BYTES_MAX: Final = 16384
NKEY_SEED_CHARS: Final = 58
# Categories the stack must hold at least one secret of, or the test proves nothing.
REQUIRED: Final = (
    SEEDS, PG_PASSWORD, SIGNING_KEY, MACAROON, TLS_KEY, KEYSEND, NODE_KEY, API_KEY, WEBHOOK_KEY,
)  # fmt: skip


@dataclass(frozen=True)
class Secret:
    category: str
    origin: str  # where it is kept (a path relative to the state dir, or how it is derived)
    canonical: bytes = field(repr=False)
    needles: tuple[bytes, ...] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical).hexdigest()[:12]

    def __str__(self) -> str:
        return f"{self.category} from {self.origin} ({self.fingerprint})"


@dataclass(frozen=True)
class Leak:
    secret: Secret
    where: str  # a file, or a captured output's name
    line: int  # 1-based line number, 0 when the match is in binary data
    form: int  # which of the secret's needles matched (0: its canonical text)

    def __str__(self) -> str:
        place = f"{self.where}:{self.line}" if self.line else self.where
        return f"{self.secret} found in {place} (form #{self.form})"


def _forms(*texts: str | bytes, public: bytes = b"") -> tuple[bytes, ...]:
    """Each form, as bytes, deduplicated, the too-short ones dropped; order kept.

    A form found in ``public`` (the key's public half, its certificate) is dropped: a PEM line
    of a private key file may hold only public-key bytes, which a certificate shows too.
    """
    out: list[bytes] = []
    for t in texts:
        b = t.encode() if isinstance(t, str) else t
        if len(b) >= NEEDLE_BYTES_MIN and b not in out and b not in public:
            out.append(b)
    return tuple(out)


def _public_material(key: Any) -> bytes:
    """The public half of ``key`` in the forms it is published in (PEM, DER, raw, hex)."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return b"\n".join([pem, der, der.hex().encode()])


def _raw_forms(raw: bytes) -> tuple[str | bytes, ...]:
    """Raw key bytes as themselves, hex (both cases), base64 and base64url (padded or not)."""
    b64 = base64.b64encode(raw).decode()
    b64url = base64.urlsafe_b64encode(raw).decode()
    return (raw, raw.hex(), raw.hex().upper(), b64, b64.rstrip("="), b64url, b64url.rstrip("="))


def _pem_forms(pem: bytes) -> tuple[str | bytes, ...]:
    """A PEM's base64 body (joined, and each line), its DER, and the DER as hex."""
    lines = [ln.strip() for ln in pem.decode().splitlines() if ln.strip()]
    body = [ln for ln in lines if not ln.startswith("-----")]
    joined = "".join(body)
    der = base64.b64decode(joined)
    return (pem.decode().strip(), joined, *body, der, der.hex())


def nkey_seed(path: Path, origin: str) -> Secret:
    import nkeys

    text = path.read_text().strip()
    # decode_seed gives the 32-byte Ed25519 private seed under the base32 "SU..." form.
    _, raw = nkeys.decode_seed(bytearray(text.encode()))
    return Secret(SEEDS, origin, text.encode(), _forms(text, *_raw_forms(bytes(raw))))


def api_key(path: Path, origin: str) -> Secret:
    text = path.read_text().strip()
    body = text.removeprefix("ck_")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    return Secret(API_KEY, origin, text.encode(), _forms(text, body, *_raw_forms(raw)))


def pg_password(role: str, password: str, origin: str) -> Secret:
    from urllib.parse import quote

    return Secret(
        PG_PASSWORD, f"{origin}[{role}]", password.encode(), _forms(password, quote(password))
    )


def signing_key(path: Path, origin: str) -> Secret:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_pem_private_key,
    )

    pem = path.read_bytes()
    key = load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = _public_material(key)
    return Secret(
        SIGNING_KEY, origin, raw, _forms(*_pem_forms(pem), *_raw_forms(raw), public=public)
    )


def tls_key(path: Path, origin: str) -> Secret:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = path.read_bytes()
    key = load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    # The node's certificate beside the key holds the public half, in PEM.
    cert = path.with_name("tls.cert")
    public = _public_material(key) + (cert.read_bytes() if cert.exists() else b"")
    return Secret(TLS_KEY, origin, raw, _forms(*_pem_forms(pem), *_raw_forms(raw), public=public))


def macaroon(path: Path, origin: str) -> Secret:
    raw = path.read_bytes()
    return Secret(MACAROON, origin, raw, _forms(*_raw_forms(raw)))


def keysend_secret(path: Path, origin: str) -> Secret:
    text = path.read_text().strip()
    raw = binascii.unhexlify(text)
    return Secret(KEYSEND, origin, raw, _forms(text, *_raw_forms(raw)))


def webhook_key(path: Path, origin: str) -> Secret:
    raw = path.read_bytes()
    return Secret(WEBHOOK_KEY, origin, raw, _forms(*_raw_forms(raw)))


def rune(path: Path, origin: str) -> Secret:
    text = path.read_text().strip()
    return Secret(RUNE, origin, text.encode(), _forms(text))


def node_key(seed: int, name: str) -> Secret:
    from services.sim.keys import node_privkey

    raw = node_privkey(seed, name)
    return Secret(NODE_KEY, f"sim seed {seed}, node {name}", raw, _forms(*_raw_forms(raw)))


@dataclass
class Inventory:
    state_dir: Path
    secrets: list[Secret] = field(default_factory=list)
    # (path relative to the state dir, fingerprint): that file may hold that secret.
    allowed: set[tuple[str, str]] = field(default_factory=set)

    def add(self, secret: Secret, *kept_in: str) -> None:
        if all(s.fingerprint != secret.fingerprint for s in self.secrets):
            self.secrets.append(secret)
        for rel in kept_in:
            self.allowed.add((rel, secret.fingerprint))

    def by_category(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.secrets:
            counts[s.category] = counts.get(s.category, 0) + 1
        return counts


def collect(state_dir: Path, *, sim_seed: int = 1) -> Inventory:
    """Every secret under ``state_dir``, with the one file allowed to hold each.

    The allow-list, and why each entry may hold its secret:
    - ``auth/<role>-<id>.nk``: the seed itself, the credential's holder reads it to connect.
    - ``auth/<role>-<id>.nk.http``: the HTTP API key, sent as a bearer token (ADR 0171).
    - ``servers/postgres/passwords.json``: the passwords, kept 0600 for the stack to
      connect with; the service user running PostgreSQL cannot read it (ADR 0064).
    - ``endpoints.json``: the engine role's password only, inside the database URL, which is
      how the stack's own commands reach the database (0600; ADR 0064). Not the superuser's
      nor the other roles'.
    - ``keys/engine-signing.key``: the engine's private key (0600), signing work orders.
    - ``keys/webhooks.key``: the webhook master key (0600), read by the engine and the
      dispatcher to derive each endpoint's secret (ADR 0176).
    - ``sim/lnd/<node>/admin.macaroon`` and ``tls.key``: what lnd itself writes, where
      lnd's clients (the adapters) expect them.
    - ``executor-keysend.secret``: the secret every worker of a node shares (ADR 0202).
    """
    inv = Inventory(state_dir)
    for path in sorted((state_dir / "auth").glob("*.nk")):
        rel = _rel(path, state_dir)
        inv.add(nkey_seed(path, rel), rel)
    for path in sorted((state_dir / "auth").glob("*.nk.http")):
        rel = _rel(path, state_dir)
        inv.add(api_key(path, rel), rel)

    passwords_path = state_dir / "servers" / "postgres" / "passwords.json"
    if passwords_path.exists():
        rel = _rel(passwords_path, state_dir)
        engine_url = _engine_database_url(state_dir)
        for role, password in sorted(json.loads(passwords_path.read_text()).items()):
            kept = [rel]
            if engine_url and f":{password}@" in engine_url:
                kept.append("endpoints.json")
            inv.add(pg_password(role, password, rel), *kept)

    key_path = state_dir / "keys" / "engine-signing.key"
    if key_path.exists():
        rel = _rel(key_path, state_dir)
        inv.add(signing_key(key_path, rel), rel)

    hooks_path = state_dir / "keys" / "webhooks.key"
    if hooks_path.exists():
        rel = _rel(hooks_path, state_dir)
        inv.add(webhook_key(hooks_path, rel), rel)

    for node_dir in sorted((state_dir / "sim" / "lnd").glob("*")):
        if (node_dir / "admin.macaroon").exists():
            rel = _rel(node_dir / "admin.macaroon", state_dir)
            inv.add(macaroon(node_dir / "admin.macaroon", rel), rel)
        if (node_dir / "tls.key").exists():
            rel = _rel(node_dir / "tls.key", state_dir)
            inv.add(tls_key(node_dir / "tls.key", rel), rel)

    for path in sorted(state_dir.rglob("executor-keysend.secret")):
        rel = _rel(path, state_dir)
        inv.add(keysend_secret(path, rel), rel)

    for path in sorted([*state_dir.rglob("*.rune"), *state_dir.rglob("rune")]):
        if path.is_file():
            rel = _rel(path, state_dir)
            inv.add(rune(path, rel), rel)

    for name in _sim_node_names(state_dir):
        inv.add(node_key(sim_seed, name))
    _sweep(inv, state_dir)
    return inv


def _sweep(inv: Inventory, state_dir: Path) -> None:
    """Secrets kept where no code above looks (a seed or a private key someone put in the
    state dir, a kind of key added later): any small file holding an nkey seed or a PEM private
    key, the servers' data aside, is collected, and allowed to hold it."""
    servers = state_dir / "servers"
    for path in files_under(state_dir):
        if servers in path.parents or path.stat().st_size > SMALL_FILE_BYTES_MAX:
            continue
        rel = _rel(path, state_dir)
        if any(a_rel == rel for a_rel, _ in inv.allowed):
            continue
        data = path.read_bytes()
        found: Secret | None = None
        if b"PRIVATE KEY-----" in data:
            found = _other_private_key(path, rel)
        elif data.strip().startswith(b"S") and len(data.strip()) == NKEY_SEED_CHARS:
            with contextlib.suppress(Exception):  # not a seed after all
                found = nkey_seed(path, rel)
        known = {s.fingerprint for s in inv.secrets}
        if found is not None and found.fingerprint not in known:
            # A new secret, allowed where it is. A copy of a known one is not: it is a leak.
            inv.add(found, rel)


def _other_private_key(path: Path, origin: str) -> Secret:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    pem = path.read_bytes()
    key = load_pem_private_key(pem, password=None)
    public = _public_material(key)
    try:  # keyed like the signing key (raw bytes), so a copy of that one is known
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        canonical = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    except ValueError:  # not a raw-encodable key (EC, RSA): the PEM is the canonical form
        canonical = pem
    if isinstance(key, ec.EllipticCurvePrivateKey):
        canonical = key.private_numbers().private_value.to_bytes(32, "big")
    return Secret(OTHER_KEY, origin, canonical, _forms(*_pem_forms(pem), public=public))


def _rel(path: Path, state_dir: Path) -> str:
    return str(path.relative_to(state_dir))


def _engine_database_url(state_dir: Path) -> str:
    try:
        return str(json.loads((state_dir / "endpoints.json").read_text()).get("database_url", ""))
    except (OSError, ValueError):
        return ""


def _sim_node_names(state_dir: Path) -> list[str]:
    """The simulated network's node names (the default topology's, as `corridor up` runs)."""
    from services.sim.topology import default_topology

    del state_dir  # the nodes are the built-in map's; a --topology run would pass its own
    return sorted(node.name for node in default_topology().nodes)


def search_text(inv: Inventory, where: str, text: str | bytes) -> Iterator[Leak]:
    """Leaks in captured output (a reply, a CLI's stdout/stderr, a log): by line."""
    data = text.encode() if isinstance(text, str) else text
    yield from _search(inv, where, data, allowed_rel=None)


def search_file(inv: Inventory, path: Path, *, label: str | None = None) -> Iterator[Leak]:
    rel = _relative_or_none(path, inv.state_dir)
    try:
        data = path.read_bytes()
    except OSError:
        return
    yield from _search(inv, label or str(path), data, allowed_rel=rel)


def search_snapshot(inv: Inventory, rel: str, data: bytes) -> Iterator[Leak]:
    """Leaks in a copy of the state dir's file ``rel`` taken earlier (``endpoints.json`` is
    removed at a graceful stop): the file's own allow-list applies."""
    yield from _search(inv, f"{rel} (as it was while running)", data, allowed_rel=rel)


def _relative_or_none(path: Path, state_dir: Path) -> str | None:
    try:
        return str(path.relative_to(state_dir))
    except ValueError:
        return None


def _search(inv: Inventory, where: str, data: bytes, *, allowed_rel: str | None) -> Iterator[Leak]:
    for secret in inv.secrets:
        if allowed_rel is not None and (allowed_rel, secret.fingerprint) in inv.allowed:
            continue
        for form, needle in enumerate(secret.needles):
            at = data.find(needle)
            if at < 0:
                continue
            # A line number for text; 0 for binary data (where lines mean nothing).
            line = data.count(b"\n", 0, at) + 1 if b"\0" not in data[:8192] else 0
            yield Leak(secret, where, line, form)
            break  # one finding per secret per place is enough to name it


def files_under(*roots: Path) -> Iterable[Path]:
    for root in roots:
        if root.is_file():
            yield root
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                yield path
