"""The release manifest: what a release holds, and the signature that vouches for it (ADR 0185).

``manifest.json`` is compact JSON:

    {"format": "corridor/release-manifest/v1", "version": "0.1.0", "git_commit": "<40 hex>",
     "created_at": "<RFC 3339, the commit's time>",
     "artefacts": [{"name": "...", "size": N, "sha256": "<64 hex>"}, ...]}

``manifest.json.sig`` is ``{"format": "corridor/release-signature/v1", "key_id", "algorithm":
"ed25519", "signature": "<base64url>"}``: the Ed25519 signature (RFC 8032) of

    b"corridor/release-manifest/v1\\n" + key_id + b"\\n" + <the bytes of manifest.json>

The signature covers the file's bytes as they are, so there is no canonical form to agree on;
the context line keeps a release signature from ever passing for any other thing the key could
sign, and the key id is signed so a signature cannot be relabelled to another key.

Verification checks the signature first and trusts nothing in the manifest before it passes;
then every artefact's size and SHA-256. Each failure is a ``ReleaseProblem`` with a code and the
part it names: the signature, the manifest, or one artefact.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import msgspec
from cryptography.exceptions import InvalidSignature

from services.release.keys import TrustedKey, UtcTime
from services.signing.port import ALGORITHM, SIGNATURE_BYTES, Signer, b64url, from_b64url

MANIFEST_FORMAT: Final = "corridor/release-manifest/v1"
SIGNATURE_FORMAT: Final = "corridor/release-signature/v1"
MANIFEST_FILE: Final = "manifest.json"
SIGNATURE_FILE: Final = "manifest.json.sig"
# A release is a handful of files (wheel, image context, SBOM, keyring); far more is a wrong
# directory, not a release.
ARTEFACTS_MAX: Final = 64
# A manifest of 64 entries is a few KiB; a signature file a few hundred bytes.
MANIFEST_BYTES_MAX: Final = 64 * 1024
SIGNATURE_BYTES_MAX: Final = 4096
# Plain file names only: a name with a slash or a leading dot could point verification (or a
# careless unpacker) outside the release directory.
ARTEFACT_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$"
_ARTEFACT_NAME = re.compile(ARTEFACT_NAME)
_HASH_CHUNK_BYTES: Final = 1 << 20

ArtefactName = Annotated[str, msgspec.Meta(pattern=ARTEFACT_NAME)]
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
GitCommit = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]


class Artefact(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: ArtefactName
    size: Annotated[int, msgspec.Meta(ge=0)]
    sha256: Sha256Hex


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    git_commit: GitCommit
    created_at: UtcTime
    artefacts: Annotated[tuple[Artefact, ...], msgspec.Meta(max_length=ARTEFACTS_MAX)]


class SignatureFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: str
    key_id: Annotated[str, msgspec.Meta(max_length=64)]
    algorithm: str
    signature: Annotated[str, msgspec.Meta(max_length=128)]


class ReleaseProblem(msgspec.Struct, frozen=True, kw_only=True):
    """One reason a release does not verify. ``part`` is ``signature``, ``manifest`` or
    ``artefact``; ``artefact`` names the file when it is one."""

    code: str
    part: str
    message: str
    artefact: str | None = None


class ReleaseInvalid(Exception):
    """A release that does not verify; ``problems`` says every reason found."""

    def __init__(self, problems: list[ReleaseProblem]) -> None:
        assert problems, "an invalid release has at least one problem"
        super().__init__("; ".join(f"{p.code}: {p.message}" for p in problems))
        self.problems = problems


def signing_bytes(key_id: str, manifest_bytes: bytes) -> bytes:
    return MANIFEST_FORMAT.encode() + b"\n" + key_id.encode("ascii") + b"\n" + manifest_bytes


def file_digest(path: Path) -> tuple[int, str]:
    """Size and SHA-256 of ``path``, read in chunks (an image context may be large)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def release_files(directory: Path) -> list[Path]:
    """The artefacts in ``directory``: its regular files but the manifest and its signature."""
    skip = {MANIFEST_FILE, SIGNATURE_FILE}
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name not in skip)
    for path in files:
        if not _ARTEFACT_NAME.fullmatch(path.name):
            raise ValueError(f"{path.name!r} is not a plain artefact name ({ARTEFACT_NAME})")
    if not files:
        raise ValueError(f"{directory} holds no artefact")
    if len(files) > ARTEFACTS_MAX:
        raise ValueError(f"{directory} holds {len(files)} files, limit is {ARTEFACTS_MAX}")
    return files


def build_manifest(
    files: Iterable[Path], *, version: str, git_commit: str, created_at: datetime
) -> bytes:
    artefacts = []
    for path in files:
        size, sha256 = file_digest(path)
        artefacts.append(Artefact(name=path.name, size=size, sha256=sha256))
    manifest = Manifest(
        format=MANIFEST_FORMAT,
        version=version,
        git_commit=git_commit,
        created_at=created_at.astimezone(UTC),
        artefacts=tuple(artefacts),
    )
    # Decoding what we encode holds the builder to the same rules as the verifier.
    data = msgspec.json.encode(manifest)
    msgspec.json.decode(data, type=Manifest)
    return data + b"\n"


def sign_release(
    directory: Path, signer: Signer, *, version: str, git_commit: str, created_at: datetime
) -> Manifest:
    """Write ``manifest.json`` and ``manifest.json.sig`` for the files in ``directory``."""
    data = build_manifest(
        release_files(directory), version=version, git_commit=git_commit, created_at=created_at
    )
    signature = signer.sign(signing_bytes(signer.key_id, data))
    envelope = SignatureFile(
        format=SIGNATURE_FORMAT,
        key_id=signer.key_id,
        algorithm=ALGORITHM,
        signature=b64url(signature),
    )
    (directory / MANIFEST_FILE).write_bytes(data)
    (directory / SIGNATURE_FILE).write_bytes(msgspec.json.encode(envelope) + b"\n")
    return msgspec.json.decode(data, type=Manifest)


def verify_release(directory: Path, trusted: dict[str, TrustedKey]) -> Manifest:
    """The manifest of the release in ``directory`` if it is signed by a trusted key valid
    when it was made and every artefact matches it; else raises ``ReleaseInvalid``."""
    manifest_bytes = _read(directory / MANIFEST_FILE, MANIFEST_BYTES_MAX, part="manifest")
    envelope_bytes = _read(directory / SIGNATURE_FILE, SIGNATURE_BYTES_MAX, part="signature")
    key = _check_signature(manifest_bytes, envelope_bytes, trusted)
    try:
        manifest = msgspec.json.decode(manifest_bytes, type=Manifest)
    except ValueError as exc:
        # Signed, yet not a manifest this verifier reads: a newer format, or a signing bug.
        raise _invalid("manifest_invalid", "manifest", f"signed but not readable: {exc}") from None
    if manifest.format != MANIFEST_FORMAT:
        raise _invalid("manifest_invalid", "manifest", f"format {manifest.format[:64]!r}")
    if not key.valid_at(manifest.created_at):
        raise _invalid(
            "key_not_valid",
            "signature",
            f"key {key.key_id} is not valid for a release made at "
            f"{manifest.created_at.isoformat()} (see the keyring's valid_from/valid_until)",
        )
    problems = [p for a in manifest.artefacts if (p := _check_artefact(directory, a))]
    if problems:
        raise ReleaseInvalid(problems)
    return manifest


def _check_signature(
    manifest_bytes: bytes, envelope_bytes: bytes, trusted: dict[str, TrustedKey]
) -> TrustedKey:
    try:
        envelope = msgspec.json.decode(envelope_bytes, type=SignatureFile)
        signature = from_b64url(envelope.signature)
    except ValueError as exc:
        raise _invalid("signature_invalid", "signature", f"not a signature file: {exc}") from None
    if envelope.format != SIGNATURE_FORMAT or envelope.algorithm != ALGORITHM:
        raise _invalid(
            "signature_invalid",
            "signature",
            f"format {envelope.format[:64]!r}, algorithm {envelope.algorithm[:16]!r}",
        )
    key = trusted.get(envelope.key_id)
    if key is None:
        raise _invalid(
            "unknown_key",
            "signature",
            f"signed by key {envelope.key_id!r}, which the keyring does not trust "
            f"(trusted: {', '.join(sorted(trusted))})",
        )
    if len(signature) != SIGNATURE_BYTES:
        raise _invalid("bad_signature", "signature", f"a signature is {SIGNATURE_BYTES} bytes")
    try:
        key.public_key.verify(signature, signing_bytes(key.key_id, manifest_bytes))
    except InvalidSignature:
        raise _invalid(
            "bad_signature",
            "signature",
            f"the signature does not verify under key {key.key_id}: "
            f"{MANIFEST_FILE} was changed after signing, or the signature was",
        ) from None
    return key


def _check_artefact(directory: Path, artefact: Artefact) -> ReleaseProblem | None:
    path = directory / artefact.name
    if not path.is_file():
        return ReleaseProblem(
            code="artefact_missing",
            part="artefact",
            artefact=artefact.name,
            message=f"{artefact.name} is listed in the manifest but not in {directory}",
        )
    size, sha256 = file_digest(path)
    if (size, sha256) != (artefact.size, artefact.sha256):
        return ReleaseProblem(
            code="digest_mismatch",
            part="artefact",
            artefact=artefact.name,
            message=f"{artefact.name}: {size} bytes, sha256 {sha256}; the manifest says "
            f"{artefact.size} bytes, sha256 {artefact.sha256}",
        )
    return None


def _read(path: Path, bytes_max: int, *, part: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(bytes_max + 1)
    except FileNotFoundError:
        raise _invalid(f"{part}_missing", part, f"{path} does not exist") from None
    if len(data) > bytes_max:
        raise _invalid(f"{part}_invalid", part, f"{path} is larger than {bytes_max} bytes")
    return data


def _invalid(code: str, part: str, message: str) -> ReleaseInvalid:
    return ReleaseInvalid([ReleaseProblem(code=code, part=part, message=message)])
