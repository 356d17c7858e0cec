"""End to end through the `corridor` command, as an operator would use it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CORRIDOR = [sys.executable, "-m", "services.cli.main"]
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env["CORRIDOR_LOG_LEVEL"] = "warning"
    return env


def _run(
    *args: str, stdin: str | None = None, timeout_s: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRIDOR, *args], capture_output=True, text=True, input=stdin, timeout=timeout_s,
        cwd=REPO, env=_env(),
    )  # fmt: skip


def _wait_for_file(path: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "corridor up died"
        assert time.monotonic() < deadline, "corridor up did not become ready"
        time.sleep(0.05)


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((parts.hostname or "127.0.0.1", parts.port or 0)) == 0


def _wait_closed(urls: list[str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_port_open(u) for u in urls):
        assert time.monotonic() < deadline, f"servers still listening: {urls}"
        time.sleep(0.05)


def _start_engine(state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CORRIDOR, "up", "--no-sim", "--state-dir", str(state_dir)],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path):
    state_dir = tmp_path / "state"
    proc = _start_engine(state_dir)
    try:
        _wait_for_file(state_dir / "endpoints.json", proc)
        yield state_dir, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_up_submit_watch_replay_and_clean_stop(stack) -> None:
    state_dir, proc = stack
    endpoints = json.loads((state_dir / "endpoints.json").read_text())
    assert {"nats_url", "database_url"} <= set(endpoints)
    sd = ["--state-dir", str(state_dir)]
    submitted = _run(
        "submit", *sd, "--caller-id", "ops", "--idempotency-key", "e2e-1",
        "--amount-msat", "21000", "--destination", "02" + "22" * 32, "--max-fee-msat", "50",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    reply = json.loads(submitted.stdout)
    assert reply["ok"] and reply["state"] == "dispatched"

    raw = json.dumps({"type": "SubmitPaymentIntent", "version": 7, "caller": {"id": "ops"}})
    refused = _run("submit", *sd, "--json", "-", stdin=raw)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["code"] == "unknown_version"

    watched = _run("watch", *sd, "--all", "--from-start", "--count", "4")
    assert watched.returncode == 0, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [e["position"] for e in lines] == [1, 2, 3, 4]

    out = state_dir / "audit.jsonl"
    replayed = _run("replay", *sd, "--verify", "--out", str(out))
    assert replayed.returncode == 0, replayed.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events][:2] == ["IntentReceived", "IntentPolicyChecked"]
    assert json.loads(replayed.stderr.strip().splitlines()[-1])["ok"] is True

    got = _run("get", *sd, reply["intent_id"])
    assert json.loads(got.stdout)["stream_version"] == 4

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not (state_dir / "endpoints.json").exists()
    _wait_closed([endpoints["nats_url"], endpoints["database_url"]])


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    missing = _run("submit", "--state-dir", str(tmp_path), "--caller-id", "x")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.startswith("corridor: error:")
    no_stack = _run("get", "--state-dir", str(tmp_path / "nowhere"), "abc")
    assert no_stack.returncode == 2
    assert "no running stack" in no_stack.stderr and "Traceback" not in no_stack.stderr


def test_killed_up_leaves_no_orphan_servers(stack) -> None:
    state_dir, proc = stack
    endpoints = json.loads((state_dir / "endpoints.json").read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # The kernel delivers each server its parent-death signal.
    _wait_closed([endpoints["nats_url"], endpoints["database_url"]])

    # As root, PostgreSQL's data may sit in a private temp dir the killed stack could not
    # remove; the next stack on the same state dir does.
    notes = list(state_dir.rglob("postgres-private-dir"))
    if not notes:
        return  # not root: the data is inside the state dir
    stale = Path(notes[0].read_text().strip())
    assert stale.exists()
    (state_dir / "endpoints.json").unlink()  # the killed stack's, left behind too
    again = _start_engine(state_dir)
    try:
        _wait_for_file(state_dir / "endpoints.json", again)
        assert not stale.exists()
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


def test_corridors_in_force_are_listed(tmp_path: Path) -> None:
    listed = _run("corridors", "--json")
    assert listed.returncode == 0, listed.stderr
    corridors = {row["corridor"]: row["candidates"] for row in json.loads(listed.stdout)}
    assert set(corridors) == {"us-eu", "eu-asia", "us-asia"}
    assert [c["region"] for c in corridors["us-eu"]] == ["us", "eu", "us"]
    assert corridors["us-eu"][2] == {"rank": 3, "region": "us", "node": "us-cln", "keysend": False}
