"""Verifying an audit bundle offline: pure, no I/O (ADR 0150).

``verify_bundle(lines)`` reads the file's lines once, in order (line 1 the manifest), and
names the 1-based file line of every problem it finds:

- each event line must parse, be in the bundle's canonical form, carry the next position,
  chain to the previous line (``prev_hash``), and hash to its own ``hash``
  (``services/eventstore/hashing.py``): an edit, deletion, insertion or reordering breaks one
  of these at the line where it happened;
- the lines must cover the manifest's range exactly, chain from its ``prev_hash`` to its
  ``last_hash``, and match its ``content_sha256`` and its own ``manifest_sha256``;
- with a ``Verifier`` (the engine's public keys), every checkpoint in the manifest must be
  signed by a trusted key and sign the hash the bundle holds at its position; no more than
  ``GAP_EVENTS_MAX`` events may go without one; and the events after the newest valid one
  (the unsigned tail) are reported.

Without the engine's key a bundle proves only that it is self-consistent: whoever wrote it
could have recomputed every hash. The checkpoints are what tie it to the engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from services.audit.bundle import (
    BUNDLE_EVENTS_MAX,
    FORMAT,
    HASH_HEX_CHARS,
    LINE_BYTES_MAX,
    MANIFEST_CHECKPOINTS_MAX,
    POSITION_MAX,
    VERSION,
    BundleCheckpoint,
    EventLine,
    Manifest,
    checkpoint_of,
    encode_line,
    manifest_digest,
)
from services.eventstore.checkpoint_message import checkpoint_message
from services.eventstore.hashing import GENESIS_HASH, chain_hash, event_body
from services.signing.port import SigningError, Verifier, from_b64url

# As ``corridor replay --verify`` allows (services/eventstore/checkpoint_verify.py): the
# engine checkpoints every 1,000 events, and batches committed while it signs overshoot.
GAP_EVENTS_MAX: Final = 2_000
# A message quotes at most this much of a parser's error (which names a path, not values).
MESSAGE_DETAIL_CHARS_MAX: Final = 200
# Problems listed one by one; beyond this only counted (a rewritten bundle would otherwise
# list one per line).
PROBLEMS_LISTED_MAX: Final = 1_000
MANIFEST_LINE: Final = 1
CHECKPOINT_EVENT: Final = "LogCheckpointSigned"


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    line: int  # 1-based line of the file; 1 is the manifest
    problem: str  # a stable code (README, "Audit bundles")
    message: str


class BundleReport(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    events: int  # event lines read
    from_position: int | None
    to_position: int | None
    checkpoints_checked: bool  # False: no public key was given
    checkpoints_valid: int
    newest_checkpoint_position: int | None
    # Events after the newest valid checkpoint, which no signature covers (None: unchecked).
    unsigned_tail: int | None
    problems_total: int
    problems: tuple[Problem, ...]


_any_json = msgspec.json.Decoder()
_event_decoder = msgspec.json.Decoder(EventLine)


def verify_bundle(
    lines: Iterable[bytes], *, verifier: Verifier | None = None, gap_max: int = GAP_EVENTS_MAX
) -> BundleReport:
    """Check a bundle given as its lines (each with its ``\\n``; a line longer than
    ``LINE_BYTES_MAX`` may be given cut, it is refused either way)."""
    state = _Verification(verifier, gap_max)
    for number, raw in enumerate(lines, start=1):
        if number == MANIFEST_LINE:
            state.manifest_line(raw)
        else:
            state.event_line(number, raw)
    return state.finish()


class _Verification:
    def __init__(self, verifier: Verifier | None, gap_max: int) -> None:
        self.verifier = verifier
        self.gap_max = gap_max
        self.problems: list[Problem] = []
        self.problems_total = 0
        self.line_problems = 0  # problems found on event lines (not the manifest)
        self.manifest: Manifest | None = None
        self.lines_read = 0
        self.events = 0
        self.content = hashlib.sha256()
        self.expected: int | None = None  # the position the next line must hold
        self.prev: bytes | None = None  # the hash the next line must chain to
        self.last_line: int = MANIFEST_LINE
        self.last_event: EventLine | None = None
        # Hashes at the checkpoints' positions, and the line each was read on.
        self.wanted: set[int] = set()
        self.seen: dict[int, tuple[bytes, int]] = {}
        self.listed_ids: set[str] = set()
        self.unreadable = 0  # lines holding no readable event since the last one that did

    def report(self, line: int, code: str, message: str) -> None:
        self.problems_total += 1
        if line != MANIFEST_LINE:
            self.line_problems += 1
        if len(self.problems) < PROBLEMS_LISTED_MAX:
            self.problems.append(Problem(line=line, problem=code, message=message))

    # -- line 1 ------------------------------------------------------------------------

    def manifest_line(self, raw: bytes) -> None:
        self.lines_read = 1
        body = self._body(MANIFEST_LINE, raw)
        if body is None:
            return
        try:
            fields = _any_json.decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            self.report(1, "not_json", f"the manifest is not JSON: {_why(exc)}")
            return
        if not isinstance(fields, dict) or fields.get("format") != FORMAT:
            self.report(1, "not_a_bundle", f"line 1 is not a {FORMAT} manifest")
            return
        if fields.get("version") != VERSION:
            self.report(
                1,
                "unsupported_version",
                f"manifest version {str(fields.get('version'))[:20]!r}; this verifier reads "
                f"version {VERSION}",
            )
            return
        try:
            manifest = msgspec.convert(fields, Manifest)
        except msgspec.ValidationError as exc:
            self.report(1, "malformed_manifest", f"the manifest does not parse: {_why(exc)}")
            return
        if manifest_digest(manifest) != manifest.manifest_sha256:
            self.report(1, "manifest_edited", "manifest_sha256 is not the manifest's digest")
        problem = _manifest_problem(manifest)
        if problem:
            self.report(1, "malformed_manifest", problem)
            return
        self.manifest = manifest
        self.expected = manifest.from_position
        self.prev = bytes.fromhex(manifest.prev_hash)
        self.wanted = {c.position for c in manifest.checkpoints}
        self.listed_ids = {c.checkpoint_id for c in manifest.checkpoints}
        self.seen[manifest.from_position - 1] = (self.prev, MANIFEST_LINE)

    # -- lines 2.. ---------------------------------------------------------------------

    def event_line(self, number: int, raw: bytes) -> None:
        self.lines_read = number
        self.last_line = number
        body = self._body(number, raw)
        if body is None:
            self.unreadable += 1
            return
        self.content.update(raw)
        self.events += 1
        try:
            event = _event_decoder.decode(body)
        except msgspec.ValidationError as exc:
            self._unreadable(number, "malformed_event", f"not an event line: {_why(exc)}")
            return
        except (msgspec.DecodeError, RecursionError) as exc:
            self._unreadable(number, "not_json", f"not JSON: {_why(exc)}")
            return
        field_problem = _event_problem(event)
        if field_problem:
            self._unreadable(number, "malformed_event", field_problem)
            return
        try:
            canonical = encode_line(event) == raw
        except (RecursionError, OverflowError, TypeError, ValueError) as exc:
            self._unreadable(number, "malformed_event", f"not an event line: {_why(exc)}")
            return
        if not canonical:
            # Still checked below: the hash covers the values, not their spelling.
            self.report(number, "not_canonical", "the line is not in canonical form (edited)")
        if not self._in_sequence(number, event):
            return
        self._check_hashes(number, event)
        self._check_range(number, event)
        self._note_checkpoint(number, event)
        self.prev = bytes.fromhex(event.hash)
        self.expected = event.position + 1
        self.last_event = event
        if event.position in self.wanted:
            self.seen[event.position] = (self.prev, number)

    def _unreadable(self, number: int, code: str, message: str) -> None:
        """A line with no event in it: a garbled event or an inserted line. The next readable
        line may hold the position expected or one up to the unreadable lines' count beyond,
        and chains to what it says."""
        self.report(number, code, message)
        self.unreadable += 1

    def _body(self, number: int, raw: bytes) -> bytes | None:
        """The line without its newline, or ``None`` (reported) if it cannot be read."""
        if len(raw) > LINE_BYTES_MAX + 1:
            self.report(number, "line_too_long", f"longer than {LINE_BYTES_MAX} bytes")
            return None
        if not raw.endswith(b"\n"):
            self.report(number, "truncated", "the line has no newline: the file was cut")
            return None
        body = raw[:-1]
        if not body.strip():
            self.report(number, "blank_line", "an empty line")
            return None
        return body

    def _in_sequence(self, number: int, event: EventLine) -> bool:
        """Whether this line is the next position; if not, say so and resynchronise."""
        if self.expected is None:  # no manifest to start from: the first line starts
            self.expected = event.position
        skipped, self.unreadable = self.unreadable, 0
        if skipped and self.expected <= event.position <= self.expected + skipped:
            self.expected = event.position
            self.prev = None
        if event.position < self.expected:
            # An inserted, duplicated or moved line: skipped, the chain goes on without it.
            self.report(
                number,
                "out_of_order",
                f"position {event.position} where {self.expected} was expected: a line was "
                "inserted, duplicated or moved here",
            )
            return False
        if event.position > self.expected:
            missing = event.position - self.expected
            self.report(
                number,
                "missing_events",
                f"position {event.position} where {self.expected} was expected: {missing} "
                "event line(s) deleted or moved from before this line",
            )
            # Resynchronise on this line: its own hash is still checked.
            self.prev = None
        return True

    def _check_hashes(self, number: int, event: EventLine) -> None:
        prev_hash = bytes.fromhex(event.prev_hash)
        if self.prev is not None and prev_hash != self.prev:
            where = "the manifest's prev_hash" if self.last_event is None else "the line before"
            self.report(number, "chain_broken", f"prev_hash does not chain to {where}")
            return
        body = event_body(
            event_id=event.event_id,
            stream_id=event.stream_id,
            stream_version=event.stream_version,
            type=event.type,
            schema_version=event.schema_version,
            recorded_at_ms=event.recorded_at_ms,
            payload=event.payload,
            metadata=event.metadata,
        )
        if chain_hash(prev_hash, event.position, body).hex() != event.hash:
            self.report(number, "hash_mismatch", "the event's contents do not match its hash")

    def _check_range(self, number: int, event: EventLine) -> None:
        manifest = self.manifest
        if manifest is None:
            return
        if event.position > manifest.to_position:
            self.report(
                number,
                "outside_range",
                f"position {event.position} is beyond the manifest's to_position "
                f"{manifest.to_position}",
            )
        first = event.position == manifest.from_position
        if first and manifest.from_ms is not None and event.recorded_at_ms < manifest.from_ms:
            self.report(number, "outside_time_range", "recorded before the manifest's from_ms")

    def _note_checkpoint(self, number: int, event: EventLine) -> None:
        """A checkpoint recorded inside the range that signs a position in it must be listed
        in the manifest: a manifest cannot drop one the bundle itself holds."""
        if event.type != CHECKPOINT_EVENT or self.manifest is None:
            return
        try:
            checkpoint = checkpoint_of(event.payload)
        except msgspec.ValidationError as exc:
            self.report(number, "checkpoint_malformed", f"not a checkpoint: {_why(exc)}")
            return
        low, high = self.manifest.from_position - 1, self.manifest.to_position
        if low <= checkpoint.position <= high and checkpoint.checkpoint_id not in self.listed_ids:
            self.report(
                number,
                "checkpoint_not_in_manifest",
                f"checkpoint {checkpoint.checkpoint_id[:80]} is not in the manifest",
            )

    # -- the end -----------------------------------------------------------------------

    def finish(self) -> BundleReport:
        manifest = self.manifest
        if self.lines_read == 0:
            self.report(1, "empty", "the file is empty: no manifest")
        if manifest is not None:
            self._check_end(manifest)
        valid: list[int] = []
        if manifest is not None and self.verifier is not None:
            valid = self._check_checkpoints(manifest, self.verifier)
        newest = max(valid, default=None)
        tail = None
        if manifest is not None and self.verifier is not None:
            tail = manifest.to_position - max(newest or 0, manifest.from_position - 1)
        return BundleReport(
            ok=self.problems_total == 0,
            events=self.events,
            from_position=manifest.from_position if manifest else None,
            to_position=manifest.to_position if manifest else None,
            checkpoints_checked=self.verifier is not None and manifest is not None,
            checkpoints_valid=len(valid),
            newest_checkpoint_position=newest,
            unsigned_tail=tail,
            problems_total=self.problems_total,
            problems=tuple(self.problems),
        )

    def _check_end(self, manifest: Manifest) -> None:
        reached = self.expected if self.last_event is not None else manifest.from_position
        if reached is not None and reached <= manifest.to_position:
            self.report(
                self.last_line + 1,
                "truncated",
                f"the bundle ends before position {reached}; the manifest's range ends at "
                f"{manifest.to_position}: events were cut off",
            )
        last = self.last_event
        if last is not None and manifest.to_ms is not None and last.recorded_at_ms > manifest.to_ms:
            self.report(self.last_line, "outside_time_range", "recorded after the manifest's to_ms")
        if self.line_problems:
            return  # a line is named already; the totals below would only repeat it
        if self.events != manifest.event_count:
            self.report(
                1,
                "count_mismatch",
                f"{self.events} event lines; the manifest says {manifest.event_count}",
            )
        if last is not None and last.hash != manifest.last_hash:
            self.report(1, "last_hash_mismatch", "the last event's hash is not last_hash")
        if self.content.hexdigest() != manifest.content_sha256:
            self.report(1, "content_hash_mismatch", "the event lines do not match content_sha256")

    def _check_checkpoints(self, manifest: Manifest, verifier: Verifier) -> list[int]:
        valid: list[int] = []
        for checkpoint in sorted(manifest.checkpoints, key=lambda c: c.position):
            name = f"checkpoint {checkpoint.checkpoint_id[:80]}"
            problem = _signature_problem(verifier, checkpoint)
            if problem:
                self.report(1, "checkpoint_signature", f"{name}: {problem}")
                continue
            held = self.seen.get(checkpoint.position)
            if held is None:
                self.report(
                    1,
                    "checkpoint_unmatched",
                    f"{name}: the bundle holds no event at position {checkpoint.position}",
                )
                continue
            hash_, line = held
            if hash_.hex() != checkpoint.hash:
                self.report(
                    line,
                    "checkpoint_mismatch",
                    f"{name}: the hash at position {checkpoint.position} is not the signed "
                    "hash (rewritten)",
                )
                continue
            valid.append(checkpoint.position)
        previous = manifest.from_position - 1
        for position in valid:
            if position - previous > self.gap_max:
                line = self.seen[position][1]
                self.report(
                    line,
                    "checkpoint_gap",
                    f"no valid checkpoint between positions {previous} and {position} "
                    f"({position - previous} events, limit {self.gap_max})",
                )
            previous = position
        return valid


def _manifest_problem(manifest: Manifest) -> str | None:
    if not 1 <= manifest.from_position <= manifest.to_position <= POSITION_MAX:
        return "from_position and to_position must satisfy 1 <= from <= to"
    if manifest.event_count != manifest.to_position - manifest.from_position + 1:
        return "event_count is not the size of the position range"
    if manifest.event_count > BUNDLE_EVENTS_MAX:
        return f"more than {BUNDLE_EVENTS_MAX} events"
    if len(manifest.checkpoints) > MANIFEST_CHECKPOINTS_MAX:
        return f"more than {MANIFEST_CHECKPOINTS_MAX} checkpoints"
    for name in ("prev_hash", "last_hash", "content_sha256"):
        if not _is_hash_hex(getattr(manifest, name)):
            return f"{name} is not {HASH_HEX_CHARS} lowercase hex digits"
    if manifest.from_position == 1 and manifest.prev_hash != GENESIS_HASH.hex():
        return "a bundle from position 1 must start from the genesis hash"
    for checkpoint in manifest.checkpoints:
        if not manifest.from_position - 1 <= checkpoint.position <= manifest.to_position:
            return f"checkpoint {checkpoint.checkpoint_id[:80]} signs a position outside the range"
        if not _is_hash_hex(checkpoint.hash):
            return f"checkpoint {checkpoint.checkpoint_id[:80]}: hash is not hex"
    return None


def _event_problem(event: EventLine) -> str | None:
    if not 1 <= event.position <= POSITION_MAX:
        return "position out of range"
    if not (_is_hash_hex(event.prev_hash) and _is_hash_hex(event.hash)):
        return f"prev_hash and hash must be {HASH_HEX_CHARS} lowercase hex digits"
    return None


def _signature_problem(verifier: Verifier, checkpoint: BundleCheckpoint) -> str | None:
    try:
        signature = from_b64url(checkpoint.signature)
        verifier.verify(
            checkpoint.key_id,
            checkpoint_message(checkpoint.key_id, checkpoint.position, checkpoint.hash),
            signature,
        )
    except ValueError:
        return "the signature is not base64url"
    except SigningError as exc:
        return f"{exc.code}: {_why(exc)}"
    return None


def _why(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:MESSAGE_DETAIL_CHARS_MAX]


def _is_hash_hex(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) == HASH_HEX_CHARS
        and all(c in "0123456789abcdef" for c in value)
    )
