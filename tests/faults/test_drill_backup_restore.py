"""``corridor drill backup-restore`` against the drills' stack: a live backup under load,
restored into a fresh PostgreSQL and proven; and the same drill failing when the restored
copy differs from what was backed up."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from services.cli import exit_codes
from services.drills import backup_restore
from services.drills.target import find_target
from services.eventstore.roles import RoleUrls, connect
from tests.faults.drill import OBSERVED
from tests.faults.harness import CALLER, CORRIDOR, REPO, Harness

# A small load: the drill proves the backup under load, it is not a benchmark.
INTENTS = 24
BACKUP_AFTER = 8


def drill_args(harness: Harness, work: Path) -> list[str]:
    return [
        "--state-dir", str(harness.engine_dir), "--sim-state-dir", str(harness.sim_dir),
        "--creds", str(harness.caller_creds), "--caller-id", CALLER, "--corridor", CORRIDOR,
        "--intents", str(INTENTS), "--backup-after", str(BACKUP_AFTER), "--work-dir", str(work),
    ]  # fmt: skip


async def test_backup_restore_drill_passes(harness: Harness, tmp_path: Path) -> None:
    await harness.start()
    argv = [sys.executable, "-m", "services.cli.main", "drill", "backup-restore",
            *drill_args(harness, tmp_path / "work"), "--json", "--tag", "br-pass"]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, env=harness._env(), cwd=REPO,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == exit_codes.OK, done.stdout + done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    OBSERVED.append({"drill": "corridor drill backup-restore", **_figures(report)})
    assert report["passed"] and all(report["checks"].values()), report
    assert report["events_held"] == report["last_position"] > 0
    digests = report["export_sha256"]
    assert digests["source"] == digests["restored"]
    assert report["chain"]["problems"] == 0 and report["chain"]["checkpoints_checked"]
    assert report["republish"]["published_through"] == report["last_position"]
    assert report["load"]["accepted"] == INTENTS
    assert report["ledger"]["holds"] and report["ledger"]["double_payments"] == 0
    # The backup holds the whole log: nobody else may read it.
    assert (tmp_path / "work" / "backup.dump").stat().st_mode & 0o777 == 0o600


async def test_backup_restore_drill_fails_on_a_corrupted_restore(
    harness: Harness, tmp_path: Path
) -> None:
    await harness.start()

    async def corrupt(urls: RoleUrls) -> None:
        # As the restored server's superuser, past the log's refusal trigger: an operator's
        # restore that went wrong, or a tampered backup.
        conn = await connect(urls.admin.rsplit("/", 1)[0] + "/" + urls.database)
        try:
            await conn.execute("SET session_replication_role = replica")
            changed = await conn.execute(
                "UPDATE events SET payload = payload || '{\"tampered\": true}'::jsonb "
                "WHERE position = 3"
            )
            assert changed == "UPDATE 1"
        finally:
            await conn.close()

    target = find_target(
        harness.engine_dir, harness.sim_dir, creds=harness.caller_creds,
        caller_id=CALLER, corridor=CORRIDOR,
    )  # fmt: skip
    options = backup_restore.Options(
        intents=INTENTS, backup_after=BACKUP_AFTER, work_dir=tmp_path / "work",
        tag="br-corrupt", after_restore=corrupt,
    )  # fmt: skip
    report = await backup_restore.run(target, options)
    checks = report.checks
    assert not report.passed and report.exit_code() == exit_codes.VERIFICATION_FAILED
    assert not checks["audit export of the restored log equals the source's"], report.figures
    assert not checks["hash chain verifies on the restored copy"], report.figures
    # The rest of the drill still ran and held: only the tampered copy is blamed.
    assert checks["ledger holds (no double payment, no lost intent)"], report.figures
    assert checks["restored log is gapless (events held = last position)"]


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    keys = ("restore_ms", "fresh_server_start_ms", "events_held", "last_position", "backup",
            "republish", "load")  # fmt: skip
    return {k: report.get(k) for k in keys} | {"passed": report.get("passed")}
