"""The audit bundle (ADR 0150): exported through the EventStore port (here its in-memory
twin), verified by the pure verifier, which names the line of every kind of tampering."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import events as ev
from schemas.records import EventMetadata
from services.audit.bundle import LINE_BYTES_MAX, Manifest, sealed
from services.audit.export import ExportError, export_bundle
from services.audit.verify import BundleReport, verify_bundle
from services.engine.checkpoints import CHECKPOINT_STREAM_ID, sign_checkpoint
from services.engine.event_codec import to_new_events
from services.eventstore.hashing import canonical_json, chain_hash, event_body
from services.eventstore.memory import InMemoryEventStore
from services.signing.ed25519 import Ed25519Keyring, Ed25519Signer

META = EventMetadata(correlation_id="c", causation_id="k", actor="test")
T0 = 1_790_000_000_000  # ms; one event a second from here
SIGNER = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
KEYRING = Ed25519Keyring([SIGNER.public_key])


async def _log(events: int, *, every: int = 4) -> InMemoryEventStore:
    """``events`` intent events, one a second, with a signed checkpoint after every ``every``
    (recorded in the log as the engine does: after the position it signs)."""
    store = InMemoryEventStore()
    checkpoints = 0
    for i in range(events):
        data = [ev.IntentCancelled(by="tester", reason=f'n{i} é \u2028 "q"')]
        await store.append(to_new_events(f"s{i}", 1, data, META, T0 + i * 1000))
        if (i + 1) % every == 0:
            head = await store.head_position()
            hash_ = await store.hash_at(head)
            assert hash_ is not None
            checkpoint = sign_checkpoint(
                SIGNER, position=head, chain_hash=hash_, signed_at_ms=T0 + i * 1000
            )
            checkpoints += 1
            await store.append(
                to_new_events(CHECKPOINT_STREAM_ID, checkpoints, [checkpoint], META, T0 + i * 1000)
            )
    return store


async def _bundle(tmp_path: Path, store: InMemoryEventStore, **kwargs: Any) -> list[bytes]:
    out = tmp_path / "bundle.jsonl"
    await export_bundle(store, out, now_ms=T0, **kwargs)
    return out.read_bytes().splitlines(keepends=True)


def _codes(report: BundleReport) -> list[tuple[int, str]]:
    return [(p.line, p.problem) for p in report.problems]


def _manifest(lines: list[bytes]) -> Manifest:
    return msgspec.json.decode(lines[0], type=Manifest)


def _with_manifest(lines: list[bytes], **changes: Any) -> list[bytes]:
    manifest = sealed(msgspec.structs.replace(_manifest(lines), **changes))
    return [canonical_json(msgspec.to_builtins(manifest)) + b"\n", *lines[1:]]


def _edit(line: bytes, **payload: Any) -> bytes:
    fields = json.loads(line)
    fields["payload"].update(payload)
    return canonical_json(fields) + b"\n"


@pytest.fixture
async def lines(tmp_path: Path) -> list[bytes]:
    return await _bundle(tmp_path, await _log(10))


# -- an intact bundle -------------------------------------------------------------------


async def test_an_exported_log_verifies_with_and_without_the_key(lines: list[bytes]) -> None:
    manifest = _manifest(lines)
    assert (manifest.from_position, manifest.to_position) == (1, 12)  # 10 events, 2 checkpoints
    assert manifest.event_count == len(lines) - 1 == 12
    assert manifest.prev_hash == "00" * 32
    assert json.loads(lines[-1])["hash"] == manifest.last_hash
    assert manifest.content_sha256 == hashlib.sha256(b"".join(lines[1:])).hexdigest()
    assert [c.position for c in manifest.checkpoints] == [4, 9]

    assert _codes(verify_bundle(lines)) == []
    report = verify_bundle(lines, verifier=KEYRING)
    assert report.ok and report.checkpoints_valid == 2
    assert report.newest_checkpoint_position == 9
    # Positions 10..12: the second checkpoint's own event and two events after it.
    assert report.unsigned_tail == 3
    # Every line is the canonical JSON of its event, as the log holds it.
    assert all(canonical_json(json.loads(line)) + b"\n" == line for line in lines)


def _independent_verifier(text: str) -> bool:
    """What the README tells an auditor, written with the standard library alone."""
    raw_lines = text.split("\n")
    assert raw_lines[-1] == ""
    manifest = json.loads(raw_lines[0])
    event_lines = raw_lines[1:-1]
    digest = hashlib.sha256("".join(f"{line}\n" for line in event_lines).encode()).hexdigest()
    if digest != manifest["content_sha256"]:
        return False
    unsealed = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    canonical = json.dumps(unsealed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if hashlib.sha256(canonical.encode()).hexdigest() != manifest["manifest_sha256"]:
        return False
    prev, position = bytes.fromhex(manifest["prev_hash"]), manifest["from_position"]
    for line in event_lines:
        e = json.loads(line)
        body = json.dumps(
            [e["event_id"], e["stream_id"], e["stream_version"], e["type"],
             e["schema_version"], e["recorded_at_ms"], e["payload"], e["metadata"]],
            sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        ).encode()  # fmt: skip
        expected = hashlib.sha256(prev + position.to_bytes(8, "big", signed=True) + body)
        if e["position"] != position or e["prev_hash"] != prev.hex():
            return False
        if expected.hexdigest() != e["hash"]:
            return False
        prev, position = expected.digest(), position + 1
    return prev.hex() == manifest["last_hash"] and position == manifest["to_position"] + 1


def test_the_readme_formula_verifies_a_bundle_independently(lines: list[bytes]) -> None:
    text = b"".join(lines).decode("utf-8")
    assert _independent_verifier(text)
    edited = b"".join([*lines[:3], _edit(lines[3], reason="forged"), *lines[4:]])
    assert not _independent_verifier(edited.decode("utf-8"))


# -- each kind of tampering names its line -----------------------------------------------


def test_an_edited_field_names_its_line(lines: list[bytes]) -> None:
    tampered = [*lines[:4], _edit(lines[4], reason="forged"), *lines[5:]]
    assert _codes(verify_bundle(tampered)) == [(5, "hash_mismatch")]


def test_an_edit_outside_the_canonical_form_names_its_line(lines: list[bytes]) -> None:
    tampered = [*lines[:6], lines[6].replace(b'"by":', b'"by" :'), *lines[7:]]
    assert _codes(verify_bundle(tampered)) == [(7, "not_canonical")]


def test_a_deleted_line_names_the_line_after_the_hole(lines: list[bytes]) -> None:
    tampered = lines[:5] + lines[6:]
    assert _codes(verify_bundle(tampered)) == [(6, "missing_events")]


def test_an_inserted_line_is_named(lines: list[bytes]) -> None:
    tampered = [*lines[:7], lines[2], *lines[7:]]
    assert _codes(verify_bundle(tampered)) == [(8, "out_of_order")]


def test_swapped_lines_are_both_named(lines: list[bytes]) -> None:
    tampered = [*lines[:3], lines[4], lines[3], *lines[5:]]
    assert _codes(verify_bundle(tampered)) == [(4, "missing_events"), (5, "out_of_order")]


def test_a_truncated_bundle_names_the_first_missing_line(lines: list[bytes]) -> None:
    assert _codes(verify_bundle(lines[:-2])) == [(12, "truncated")]
    cut = [*lines[:-1], lines[-1][:40]]  # cut in the middle of the last line
    assert (13, "truncated") in _codes(verify_bundle(cut))
    assert _codes(verify_bundle(lines[:1])) == [(2, "truncated")]


def test_an_edited_manifest_is_named_as_line_1(lines: list[bytes]) -> None:
    fields = json.loads(lines[0])
    fields["exported_at_ms"] += 1
    tampered = [canonical_json(fields) + b"\n", *lines[1:]]
    assert _codes(verify_bundle(tampered)) == [(1, "manifest_edited")]
    # Resealed, an edited range or hash still disagrees with the lines.
    assert _codes(verify_bundle(_with_manifest(lines, to_position=13, event_count=13))) == [
        (14, "truncated")
    ]
    resealed = _with_manifest(lines, from_position=2, prev_hash="ab" * 32, event_count=11)
    assert _codes(verify_bundle(resealed)) == [(2, "out_of_order"), (3, "chain_broken")]
    assert _codes(verify_bundle(_with_manifest(lines, content_sha256="ab" * 32))) == [
        (1, "content_hash_mismatch")
    ]
    assert _codes(verify_bundle(_with_manifest(lines, last_hash="ab" * 32))) == [
        (1, "last_hash_mismatch")
    ]


def test_a_checkpoint_dropped_from_the_manifest_is_named_where_the_bundle_holds_it(
    lines: list[bytes],
) -> None:
    manifest = _manifest(lines)
    dropped = _with_manifest(lines, checkpoints=manifest.checkpoints[1:])
    assert _codes(verify_bundle(dropped)) == [(6, "checkpoint_not_in_manifest")]


# -- with the engine's public key ----------------------------------------------------------


def test_a_bad_or_foreign_signature_fails_with_the_key(lines: list[bytes]) -> None:
    manifest = _manifest(lines)
    first = manifest.checkpoints[0]
    flipped = first.signature[:-2] + ("AA" if first.signature[-2:] != "AA" else "BA")
    forged = msgspec.structs.replace(first, signature=flipped)
    tampered = _with_manifest(lines, checkpoints=(forged, *manifest.checkpoints[1:]))
    assert _codes(verify_bundle(tampered)) == []  # without the key, nothing to check it with
    report = verify_bundle(tampered, verifier=KEYRING)
    assert _codes(report) == [(1, "checkpoint_signature")]
    assert report.checkpoints_valid == 1

    stranger = Ed25519Keyring([Ed25519Signer(Ed25519PrivateKey.generate()).public_key])
    report = verify_bundle(lines, verifier=stranger)
    assert _codes(report) == [(1, "checkpoint_signature")] * 2
    assert "unknown_key" in report.problems[0].message
    assert report.unsigned_tail == 12  # nothing is signed by a key the auditor trusts


def _rewrite(lines: list[bytes], line_number: int) -> list[bytes]:
    """What whoever holds the bundle can do: edit an event and recompute every hash after
    it, and the manifest. Only the engine's signatures stop it."""
    out = lines[: line_number - 1]
    prev = bytes.fromhex(json.loads(lines[line_number - 2])["hash"])
    for raw in lines[line_number - 1 :]:
        e = json.loads(raw)
        if len(out) == line_number - 1:
            e["payload"]["reason"] = "forged"
        body = event_body(
            event_id=e["event_id"], stream_id=e["stream_id"], stream_version=e["stream_version"],
            type=e["type"], schema_version=e["schema_version"],
            recorded_at_ms=e["recorded_at_ms"], payload=e["payload"], metadata=e["metadata"],
        )  # fmt: skip
        e["prev_hash"] = prev.hex()
        prev = chain_hash(prev, e["position"], body)
        e["hash"] = prev.hex()
        out.append(canonical_json(e) + b"\n")
    return _with_manifest(
        out,
        last_hash=prev.hex(),
        content_sha256=hashlib.sha256(b"".join(out[1:])).hexdigest(),
    )


def test_a_rewritten_chain_passes_alone_and_fails_at_the_signed_position_with_the_key(
    lines: list[bytes],
) -> None:
    rewritten = _rewrite(lines, 3)  # position 2, before the checkpoint at 4 (line 5)
    assert _codes(verify_bundle(rewritten)) == []
    report = verify_bundle(rewritten, verifier=KEYRING)
    assert _codes(report) == [(5, "checkpoint_mismatch"), (10, "checkpoint_mismatch")]
    # A rewrite of the unsigned tail is what the tail means: not caught, but reported.
    tail = verify_bundle(_rewrite(lines, 12), verifier=KEYRING)
    assert tail.ok and tail.unsigned_tail == 3


async def test_a_long_run_without_a_checkpoint_is_a_gap(tmp_path: Path) -> None:
    lines = await _bundle(tmp_path, await _log(30, every=10))
    assert verify_bundle(lines, verifier=KEYRING, gap_max=11).ok
    manifest = _manifest(lines)
    thinned = _with_manifest(lines, checkpoints=manifest.checkpoints[1:])
    # The dropped checkpoint's own event (position 11, line 12) is still in the bundle.
    report = verify_bundle(thinned, verifier=KEYRING, gap_max=11)
    assert _codes(report) == [(12, "checkpoint_not_in_manifest"), (22, "checkpoint_gap")]


# -- malformed input: structured problems, never a traceback --------------------------------


@pytest.mark.parametrize(
    ("first_line", "code"),
    [
        (b"not json\n", "not_json"),
        (b"[1, 2]\n", "not_a_bundle"),
        (b'{"format": "corridor-audit-bundle", "version": 2}\n', "unsupported_version"),
        (b'{"format": "corridor-audit-bundle", "version": 1}\n', "malformed_manifest"),
        (b"\n", "blank_line"),
        (b"\xff\xfe{}\n", "not_json"),
    ],
)
def test_a_malformed_manifest_is_a_problem_on_line_1(
    lines: list[bytes], first_line: bytes, code: str
) -> None:
    report = verify_bundle([first_line, *lines[1:]])
    assert not report.ok
    assert _codes(report)[0] == (1, code)


def test_malformed_event_lines_are_named(lines: list[bytes]) -> None:
    huge = b'{"a":"' + b"x" * (LINE_BYTES_MAX + 10) + b'"}\n'
    cases = {3: b"garbage\n", 5: b'{"position": 4}\n', 7: b"\n", 9: huge}
    tampered = [cases.get(n, line) for n, line in enumerate(lines, start=1)]
    found = _codes(verify_bundle(tampered))
    assert found[:4] == [(3, "not_json"), (5, "malformed_event"), (7, "blank_line"),
                         (9, "line_too_long")]  # fmt: skip
    assert _codes(verify_bundle([])) == [(1, "empty")]


def test_hostile_json_is_a_problem_not_a_crash(lines: list[bytes]) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000 + b"\n"
    nested_payload = lines[4].replace(b'"payload":{', b'"payload":{"x":' + nested[:-1] + b",")
    tampered = [nested, *lines[1:4], nested_payload, b'{"a":1e999}\n', *lines[6:]]
    assert _codes(verify_bundle(tampered)) == [
        (1, "not_json"),
        (5, "not_json"),
        (6, "malformed_event"),
    ]
    assert "nested too deeply" in verify_bundle(tampered).problems[0].message


def test_without_a_manifest_the_lines_are_still_checked(lines: list[bytes]) -> None:
    tampered = [b"not json\n", *lines[1:4], _edit(lines[4], reason="forged"), *lines[5:]]
    assert _codes(verify_bundle(tampered)) == [(1, "not_json"), (5, "hash_mismatch")]


async def test_a_line_appended_beyond_the_range_is_named(tmp_path: Path) -> None:
    store = await _log(10)
    longer = await _bundle(tmp_path, store)
    lines = await _bundle(tmp_path, store, to_position=11)
    assert _codes(verify_bundle([*lines, longer[12]])) == [(13, "outside_range")]


def test_the_manifest_must_agree_with_itself() -> None:
    manifest = Manifest(
        format="corridor-audit-bundle", version=1, exported_at_ms=0, from_position=1,
        to_position=1, from_ms=None, to_ms=None, event_count=5, prev_hash="00" * 32,
        last_hash="00" * 32, content_sha256="00" * 32, checkpoints=(),
    )  # fmt: skip
    report = verify_bundle([canonical_json(msgspec.to_builtins(sealed(manifest))) + b"\n"])
    assert _codes(report) == [(1, "malformed_manifest")]


# -- export ranges --------------------------------------------------------------------------


async def test_a_position_range_starts_from_the_previous_hash(tmp_path: Path) -> None:
    store = await _log(10)
    lines = await _bundle(tmp_path, store, from_position=3, to_position=7, page=2)
    manifest = _manifest(lines)
    assert (manifest.from_position, manifest.to_position, manifest.event_count) == (3, 7, 5)
    assert manifest.prev_hash == (await store.hash_at(2) or b"").hex()
    assert manifest.last_hash == (await store.hash_at(7) or b"").hex()
    # The checkpoint at 4 is in the range; the one at 9 signs beyond it.
    assert [c.position for c in manifest.checkpoints] == [4]
    report = verify_bundle(lines, verifier=KEYRING)
    assert report.ok and report.unsigned_tail == 3

    # A range ending at a signed position carries the checkpoint recorded after it.
    # One signing position 4, the event before the range, vouches for its prev_hash.
    lines = await _bundle(tmp_path, store, from_position=5, to_position=9)
    assert [c.position for c in _manifest(lines).checkpoints] == [4, 9]
    assert verify_bundle(lines, verifier=KEYRING).unsigned_tail == 0


async def test_a_time_range_exports_the_events_recorded_in_it(tmp_path: Path) -> None:
    store = await _log(10)
    # Events i=2..5 were recorded at T0+2s..T0+5s; i=3 is followed by a checkpoint.
    lines = await _bundle(tmp_path, store, from_ms=T0 + 2000, to_ms=T0 + 5000)
    positions = [json.loads(line)["position"] for line in lines[1:]]
    times = [json.loads(line)["recorded_at_ms"] for line in lines[1:]]
    assert positions == [3, 4, 5, 6, 7]
    assert min(times) == T0 + 2000 and max(times) == T0 + 5000
    manifest = _manifest(lines)
    assert (manifest.from_ms, manifest.to_ms) == (T0 + 2000, T0 + 5000)
    assert verify_bundle(lines, verifier=KEYRING).ok
    with pytest.raises(ExportError):
        await export_bundle(store, tmp_path / "none", now_ms=T0, from_ms=T0 + 10**9)
    assert not (tmp_path / "none").exists()


# -- the README's claim: canonical JSON is what Python's json module prints -----------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_canonical_json_is_what_the_readme_says(value: Any) -> None:
    readme = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == readme.encode("utf-8")
