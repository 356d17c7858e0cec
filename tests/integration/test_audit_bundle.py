"""The audit bundle over the real stack (ADR 0150): a log written by the engine (intents
submitted over NATS, checkpoints signed with the engine's key) is exported by
``corridor audit export`` from PostgreSQL, and verified by ``corridor audit verify`` in a
process that has no database and no NATS to reach."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.engine.checkpoints import CHECKPOINT_STREAM_ID
from services.settings import Settings
from services.signing.file_keys import PUBLIC_KEYS_FILE, keys_dir
from tests.conftest import wait_for
from tests.factories import submit

REPO = Path(__file__).resolve().parents[2]
INTENTS = 8
# Where the offline verifier is told the stack is: nothing listens on port 1.
NOWHERE = {
    "DATABASE_URL": "postgresql://corridor@127.0.0.1:1/none",
    "NATS_URL": "nats://127.0.0.1:1",
}
# Printed by the verifying process: the client libraries it imported (none, for an offline
# check), then the command's exit code.
_PROBE = """
import json, sys
from services.cli.main import main
code = main(sys.argv[1:])
loaded = sorted({m.split('.')[0] for m in sys.modules} & {'nats', 'asyncpg', 'psycopg'})
print(json.dumps({'code': code, 'clients': loaded}))
"""


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = await bootstrap(
        Settings(relay_poll_s=0.2, state_dir=tmp_path),
        nats_url=nats_url,
        database_url=database_url,
        checkpoint_every_events=6,
        checkpoint_every_s=0.2,
    )
    await engine.start()
    yield engine
    await engine.stop()


async def _workload(engine: Engine, nc: Client) -> tuple[int, int]:
    """Submit intents over NATS; once every intent's events are in and the engine has
    signed since, the head (a checkpoint's event) and the position that checkpoint signs.
    Events committed while it was signed stay unsigned until the log grows again."""

    async def send(key: str, amount_msat: int) -> None:
        body = submit(key=key, caller_id="alice", amount_msat=amount_msat)
        reply = await nc.request(
            "corridor.api.v1.intents.submit.alice", json.dumps(body).encode(), timeout=10
        )
        assert json.loads(reply.data).get("intent_id"), reply.data

    for i in range(INTENTS):
        await send(f"audit-{i}", 10_000 + i)

    async def signed_and_quiet() -> tuple[int, int, int] | None:
        head = await engine.store.head_position()
        checkpoints = await engine.store.read_stream(CHECKPOINT_STREAM_ID)
        # Nothing but checkpoints is written once the replies are in (no executors here).
        if checkpoints and checkpoints[-1].position == head:
            return head, int(checkpoints[-1].payload["position"]), len(checkpoints)
        return None

    head, signed, count = await wait_for(signed_and_quiet, timeout_s=20, what="a signed log")
    # A loaded machine may commit every intent before the checkpointer's first turn, which
    # then signs once: one more intent gives the log a second checkpoint.
    extra = 0
    while count < 2:
        await send(f"audit-extra-{extra}", 20_000 + extra)
        extra += 1
        head, signed, count = await wait_for(
            signed_and_quiet, timeout_s=20, what="a signed, quiet log"
        )
    return head, signed


async def _corridor(*argv: str, env: dict[str, str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PROBE, *argv, cwd=REPO, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    lines = out.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    result["out"] = "\n".join(lines[:-1])
    result["err"] = err.decode()
    assert "Traceback" not in result["err"], result["err"]
    return result


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def test_a_real_log_exports_and_verifies_offline_and_an_edit_names_its_line(
    engine: Engine, nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    head, signed = await _workload(engine, nc)
    stack = {"DATABASE_URL": database_url, "NATS_URL": nats_url}
    bundle = tmp_path / "audit.jsonl"
    exported = await _corridor("audit", "export", "--out", str(bundle), "--json", env=stack)
    assert exported["code"] == 0, exported
    manifest = json.loads(exported["out"])
    assert (manifest["from_position"], manifest["to_position"]) == (1, head)
    assert len(manifest["checkpoints"]) >= 2

    keys = str(keys_dir(tmp_path) / PUBLIC_KEYS_FILE)
    verified = await _corridor("audit", "verify", str(bundle), "--public-key", keys, env=NOWHERE)
    assert verified["code"] == 0, verified
    assert verified["clients"] == []  # no database or NATS client was even imported
    # At least the last checkpoint's own event.
    assert f"unsigned tail: {head - signed} events" in verified["out"]

    lines = bundle.read_bytes().splitlines(keepends=True)
    fields = json.loads(lines[3])
    fields["recorded_at_ms"] += 1
    lines[3] = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    bundle.write_bytes(b"".join(lines))
    broken = await _corridor("audit", "verify", str(bundle), "--json", env=NOWHERE)
    assert broken["code"] == 3
    assert [(p["line"], p["problem"]) for p in json.loads(broken["out"])] == [(4, "hash_mismatch")]


async def test_position_and_time_ranges_export_and_verify(
    engine: Engine, nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    head, _ = await _workload(engine, nc)
    stack = {"DATABASE_URL": database_url, "NATS_URL": nats_url}
    keys = str(keys_dir(tmp_path) / PUBLIC_KEYS_FILE)

    part = tmp_path / "part.jsonl"
    argv = ["--from-position", "3", "--to-position", str(head - 2), "--out", str(part)]
    assert (await _corridor("audit", "export", *argv, env=stack))["code"] == 0
    lines = part.read_bytes().splitlines()
    manifest = json.loads(lines[0])
    assert (manifest["from_position"], manifest["to_position"]) == (3, head - 2)
    assert [json.loads(line)["position"] for line in lines[1:]] == list(range(3, head - 1))
    assert manifest["prev_hash"] == (await engine.store.hash_at(2) or b"").hex()
    verified = await _corridor("audit", "verify", str(part), "--public-key", keys, env=NOWHERE)
    assert verified["code"] == 0, verified

    # A time range: from the first event recorded at or after FROM, up to the first recorded
    # after TO (ADR 0150), computed here from the log itself.
    events = await engine.store.read_all(after_position=0, limit=head)
    from_ms, to_ms = events[2].recorded_at_ms, events[-3].recorded_at_ms
    first = next(e.position for e in events if e.recorded_at_ms >= from_ms)
    after = next((e.position for e in events[first:] if e.recorded_at_ms > to_ms), head + 1)
    window = tmp_path / "window.jsonl"
    argv = ["--from", _iso(from_ms), "--to", _iso(to_ms), "--out", str(window)]
    assert (await _corridor("audit", "export", *argv, env=stack))["code"] == 0
    lines = window.read_bytes().splitlines()
    manifest = json.loads(lines[0])
    assert (manifest["from_ms"], manifest["to_ms"]) == (from_ms, to_ms)
    assert [json.loads(line)["position"] for line in lines[1:]] == list(range(first, after))
    verified = await _corridor("audit", "verify", str(window), "--public-key", keys, env=NOWHERE)
    assert verified["code"] == 0, verified

    # A range with no events is refused, as a usage mistake, and writes nothing.
    argv = ["--from", "2001-01-01T00:00:00Z", "--to", "2001-01-02T00:00:00Z", "--out"]
    empty = await _corridor("audit", "export", *argv, str(tmp_path / "none"), env=stack)
    assert empty["code"] == 2 and "no events" in empty["err"]
    assert not (tmp_path / "none").exists()
