"""``corridor drill backup-restore``: a live backup under load, restored and proven (ADR 0190).

1. A steady load runs; once ``backup_after`` intents are accepted, ``pg_dump`` takes the
   backup while they keep coming.
2. The backup is restored into a fresh PostgreSQL (a new data dir on a free loopback port).
3. Against the restored log: its positions are gapless (events held = last position); the
   audit export of the restored log equals, byte for byte, the export of the live log taken
   through the same last position (the same ``exported_at_ms`` in both), and the restored
   export's hash chain verifies (with the engine's public key when the state dir holds it);
   the restored read models equal a fold of the restored log, and still do after a full
   rebuild; the relay republishes the restored log into a fresh JetStream.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

from projections import runner
from projections.catalog import ALL
from services.audit.bundle import LINE_BYTES_MAX
from services.audit.export import export_bundle
from services.audit.verify import verify_bundle
from services.bus.jetstream import connect as nats_connect
from services.drills import ledger
from services.drills.backup import RestoredCopy, dump, restore_fresh
from services.drills.load import SteadyLoad
from services.drills.report import DrillReport
from services.drills.republish import republish
from services.drills.target import Target
from services.eventstore.port import EventStore, StoredEvent
from services.eventstore.postgres import PostgresEventStore
from services.eventstore.roles import RoleUrls, connect

NAME: Final = "backup-restore"
# Deadlines for "it happened", never performance targets.
ACCEPT_DEADLINE_S: Final = 120.0
REPUBLISH_DEADLINE_S: Final = 120.0
REST_DEADLINE_S: Final = 120.0


@dataclass(frozen=True)
class Options:
    intents: int = 30
    backup_after: int = 10
    # Faster than the failover drill's load: more intents in motion when the snapshot is taken.
    rate_per_s: float = 20.0
    work_dir: Path | None = None  # None: a temporary directory, removed afterwards
    tag: str = ""  # the load's idempotency-key prefix (default: from the time)
    # Run against the restored copy before it is checked: a test's way to prove a check fails.
    after_restore: Callable[[RoleUrls], Awaitable[None]] | None = None


class _AsOf:
    """The live log as of position ``last``: what the export reads of it (head, pages and
    checkpoints) ends there, so a checkpoint appended after the backup that signs an earlier
    position is not in this export either, as it cannot be in the backup."""

    def __init__(self, store: PostgresEventStore, last: int) -> None:
        self._store, self._last = store, last

    async def head_position(self) -> int:
        return min(self._last, await self._store.head_position())

    async def read_all(self, *, after_position: int, limit: int) -> list[StoredEvent]:
        batch = await self._store.read_all(after_position=after_position, limit=limit)
        return [e for e in batch if e.position <= self._last]

    async def read_from(
        self, *, after_position: int, through_position: int, types: Sequence[str], limit: int
    ) -> list[StoredEvent]:
        return await self._store.read_from(
            after_position=after_position, through_position=min(through_position, self._last),
            types=types, limit=limit,
        )  # fmt: skip


async def run(target: Target, options: Options) -> DrillReport:
    report = DrillReport(drill=NAME)
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="corridor-drill-backup-"))
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # PostgreSQL's service user traverses it when we are root
    copy: RestoredCopy | None = None
    try:
        accepted = await _backup_under_load(target, options, work, report)
        copy = await restore_fresh(work / "backup.dump", work / "restored")
        report.figures["restore_ms"] = copy.restore_ms
        report.figures["fresh_server_start_ms"] = copy.server_start_ms
        if options.after_restore is not None:
            await options.after_restore(copy.urls)
        await _check_restored(target, copy, work, report)
        rest = await ledger.wait_for_rest(
            target.database_url, target.sim_control, accepted, timeout_s=REST_DEADLINE_S
        )
        report.figures["ledger"] = rest.summary()
        report.checks["ledger holds (no double payment, no lost intent)"] = rest.holds
    finally:
        if copy is not None:
            copy.stop()
        if options.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return report


async def _backup_under_load(
    target: Target, options: Options, work: Path, report: DrillReport
) -> list[str]:
    tag = options.tag or f"drill-backup-{time.time_ns() // 1_000_000}"
    nc = await nats_connect(target.nats_url, name="corridor-drill-load", creds=target.caller_creds)
    load = SteadyLoad(target, tag, options.intents, nc, rate_per_s=options.rate_per_s)
    try:
        await load.start()
        began = await load.wait_accepted(options.backup_after, timeout_s=ACCEPT_DEADLINE_S)
        report.checks["load flowing before the backup"] = began
        before = len(load.accepted)
        # Intents accepted and not yet at rest: the backup meets them mid-flight.
        moving = await ledger.check(target.database_url, target.sim_control, load.accepted)
        backup = await dump(target.database_url, work / "backup.dump")
        during = len(load.accepted) - before
        await load.done()
    finally:
        await load.cancel()
        await nc.close()
    report.figures["load"] = {
        "submitted": options.intents,
        "accepted": len(load.accepted),
        "accepted_before_backup": before,
        "in_motion_at_backup": moving.not_at_rest,
        "accepted_during_backup": during,
        "accepted_after_backup": len(load.accepted) - before - during,
        "refused": load.refused,
    }
    report.figures["backup"] = {"bytes": backup.bytes, "dump_ms": backup.dump_ms}
    return load.accepted


async def _check_restored(
    target: Target, copy: RestoredCopy, work: Path, report: DrillReport
) -> None:
    conn = await connect(copy.urls.auditor)
    try:
        last = int(await conn.fetchval("SELECT position FROM event_log_head"))
        held = int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()
    report.figures["events_held"] = held
    report.figures["last_position"] = last
    report.checks["restored log is gapless (events held = last position)"] = held == last > 0
    await _compare_exports(target, copy, work, last, report)
    await _projections(copy, report)
    published = await republish(
        copy.urls.engine, work / "relay", head=last, timeout_s=REPUBLISH_DEADLINE_S
    )
    report.figures["republish"] = {
        "published_through": published.published_through,
        "evt_stream_messages": published.evt_messages,
        "republish_ms": published.republish_ms,
    }
    report.checks["relay republished the restored log"] = published.published_through == last


async def _compare_exports(
    target: Target, copy: RestoredCopy, work: Path, last: int, report: DrillReport
) -> None:
    from services.audit.export import ExportError

    try:
        await _export_both(target, copy, work, last, report)
    except ExportError as exc:  # beyond the bundle's limits: said, not a traceback
        report.problems.append(f"audit export: {exc}")
        report.checks["audit export of the restored log equals the source's"] = False


async def _export_both(
    target: Target, copy: RestoredCopy, work: Path, last: int, report: DrillReport
) -> None:
    now_ms = time.time_ns() // 1_000_000  # one export time for both: the bytes can be equal
    source = await PostgresEventStore.connect(target.database_url, pool_max=2)
    try:
        live_head = await source.head_position()
        await export_bundle(
            cast(EventStore, _AsOf(source, last)), (work / "source.bundle").resolve(),
            to_position=last, now_ms=now_ms,
        )  # fmt: skip
    finally:
        await source.close()
    restored = await PostgresEventStore.connect(copy.urls.auditor, pool_max=2)
    try:
        manifest = await export_bundle(
            restored, (work / "restored.bundle").resolve(), to_position=last, now_ms=now_ms
        )
    finally:
        await restored.close()
    report.figures["live_head_when_compared"] = live_head
    report.checks["the live log went on past the backup"] = live_head > last
    digests = {name: _sha256(work / f"{name}.bundle") for name in ("source", "restored")}
    report.figures["export_sha256"] = digests
    report.figures["export_events"] = manifest.event_count
    report.checks["audit export of the restored log equals the source's"] = (
        digests["source"] == digests["restored"]
    )
    verdict = _verify(work / "restored.bundle", target.state_dir)
    report.figures["chain"] = {
        "problems": verdict.problems_total,
        "checkpoints_checked": verdict.checkpoints_checked,
        "checkpoints_valid": verdict.checkpoints_valid,
    }
    report.problems += [p.message for p in verdict.problems[:10]]
    report.checks["hash chain verifies on the restored copy"] = verdict.ok


def _verify(bundle: Path, state_dir: Path) -> Any:
    from services.audit.cli import bounded_lines
    from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir, read_public_keys

    keyring = keys_dir(state_dir) / PUBLIC_KEYS_FILE
    verifier = read_public_keys(keyring) if keyring.exists() else None
    with bundle.open("rb") as handle:
        return verify_bundle(bounded_lines(handle, LINE_BYTES_MAX), verifier=verifier)


async def _projections(copy: RestoredCopy, report: DrillReport) -> None:
    store = await PostgresEventStore.connect(copy.urls.engine, pool_max=2)
    try:
        as_restored = [await runner.check(store.pool, p) for p in ALL]
        rebuilt = [await runner.rebuild(store.pool, p) for p in ALL]
        after = [await runner.check(store.pool, p) for p in ALL]
    finally:
        await store.close()
    report.figures["projections"] = {
        c.projection: {"rows": c.rows, "rebuilt_rows": r.rows, "differences": c.differences}
        for c, r in zip(after, rebuilt, strict=True)
    }
    report.checks["restored read models equal a fold of the restored log"] = all(
        c.equal for c in as_restored
    )
    report.checks["read models rebuilt from the restored log"] = all(c.equal for c in after)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
