"""End to end through the `corridor` command, as an operator would use it."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from services.endpoints import add_entries

CORRIDOR = [sys.executable, "-m", "services.cli.main"]
REPO = Path(__file__).resolve().parents[2]
DESTINATION = "02" + "22" * 32


def _env() -> dict[str, str]:
    # Without CORRIDOR_CREDS the commands use the credentials `corridor up` made (ADR 0060).
    unset = ("NATS_URL", "DATABASE_URL", "CORRIDOR_CREDS")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["CORRIDOR_LOG_LEVEL"] = "warning"
    return env


def run_cli(
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


def _wait_until(condition: Callable[[], bool], *, what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
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


@contextlib.contextmanager
def running_stack(state_dir: Path) -> Iterator[Path]:
    """`corridor up --no-sim` on ``state_dir`` until the block ends (then SIGTERM)."""
    proc = _start_engine(state_dir)
    try:
        _wait_for_file(state_dir / "endpoints.json", proc)
        yield state_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


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

    # No --max-fee-msat: the CLI asks the engine what the policy in force allows, and says so.
    # No --caller-id: the caller is the credential's, `local`.
    submitted = run_cli(
        "submit", *sd, "--idempotency-key", "e2e-1",
        "--amount-msat", "21000", "--destination", DESTINATION, "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    reply = json.loads(submitted.stdout)
    assert reply["ok"] and reply["state"] == "dispatched"
    (said,) = submitted.stderr.splitlines()
    assert "10000 msat" in said and "21000 msat" in said and "policy version 1" in said

    readable = run_cli(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "e2e-1",
        "--amount-msat", "21000", "--destination", DESTINATION, "--max-fee-msat", "10000",
    )  # fmt: skip
    assert readable.returncode == 0 and readable.stderr == ""
    assert f"intent id  {reply['intent_id']}" in readable.stdout
    assert "duplicate" in readable.stdout

    raw = json.dumps({"type": "SubmitPaymentIntent", "version": 7, "caller": {"id": "local"}})
    refused = run_cli("submit", *sd, "--file", "-", "--json", stdin=raw)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["code"] == "unknown_version"
    refused = run_cli("submit", *sd, "--file", "-", stdin=raw)
    assert refused.returncode == 1
    assert refused.stderr.startswith("corridor: refused: unknown_version:")

    watched = run_cli("watch", *sd, "--all", "--from-start", "--count", "4")
    assert watched.returncode == 0, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [e["position"] for e in lines] == [1, 2, 3, 4]

    out = state_dir / "audit.jsonl"
    replayed = run_cli("replay", *sd, "--verify", "--out", str(out))
    assert replayed.returncode == 0, replayed.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["type"] for e in events][:2] == ["IntentReceived", "IntentPolicyChecked"]
    # Not a terminal: no progress line, only the verification report.
    assert "\r" not in replayed.stderr
    verified = json.loads(replayed.stderr.strip().splitlines()[-1])
    assert verified["ok"] is True
    # The CLI's auditor credential may read the signed checkpoints' stream (ADR 0065).
    assert verified["checkpoints"]["stream_unchecked"] is None, verified

    # On a terminal, a progress line (carriage returns on stderr, erased at the end).
    terminal, screen = pty.openpty()
    try:
        shown = subprocess.run(
            [*CORRIDOR, "replay", *sd, "--out", str(out)], stderr=screen, text=True,
            timeout=30, cwd=REPO, env=_env(),
        )  # fmt: skip
        assert shown.returncode == 0
        progress = os.read(terminal, 4096).decode()
    finally:
        os.close(terminal)
        os.close(screen)
    assert progress.startswith("\rreplay: 0/") and progress.endswith("\r")

    got = run_cli("get", *sd, reply["intent_id"], "--json")
    assert json.loads(got.stdout)["stream_version"] == 4
    got = run_cli("get", *sd, reply["intent_id"])
    assert got.returncode == 0 and "POSITION" in got.stdout and "IntentDispatched" in got.stdout

    # `corridor up` keeps the read models at the log's head by itself (`status` only reads).
    def projections_at_head() -> bool:
        rows = json.loads(run_cli("projections", "status", *sd, "--json").stdout)
        return {r["projection"] for r in rows} == {"intents", "reconciliation"} and all(
            r["behind"] == 0 for r in rows
        )

    _wait_until(projections_at_head, what="the projections to reach the log's head")
    timeline = json.loads(run_cli("audit", "timeline", *sd, reply["intent_id"], "--json").stdout)
    assert (timeline["caller_id"], timeline["caller_kind"], timeline["state"]) == (
        "local", "service", "dispatched",
    )  # fmt: skip
    assert [e["type"] for e in timeline["timeline"]] == [
        "IntentReceived", "IntentPolicyChecked", "IntentRouted", "IntentDispatched",
    ]  # fmt: skip
    shown = run_cli("audit", "timeline", *sd, reply["intent_id"])
    assert shown.returncode == 0 and "policy     v1, tier auto" in shown.stdout, shown.stdout
    by_caller = json.loads(run_cli("audit", "timeline", *sd, "--caller", "local", "--json").stdout)
    assert [d["intent_id"] for d in by_caller] == [reply["intent_id"]]
    checked = run_cli("projections", "rebuild", *sd, "--check")
    assert checked.returncode == 0 and "intents: rebuild equals live" in checked.stdout, checked

    empty = run_cli("exceptions", *sd)
    assert empty.returncode == 0 and empty.stdout.startswith("no exceptions")
    assert json.loads(run_cli("exceptions", *sd, "--json").stdout) == []

    # Another process's entries (a simulator's) outlive this stack's graceful stop.
    foreign = {"nodes": [{"name": "us-lnd"}], "sim_control": str(state_dir / "control.sock")}
    add_entries(state_dir, foreign)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert json.loads((state_dir / "endpoints.json").read_text()) == foreign
    _wait_closed([endpoints["nats_url"], endpoints["database_url"]])


def test_policy_and_corridors_come_from_the_running_engine(stack) -> None:
    state_dir, _ = stack
    sd = ["--state-dir", str(state_dir)]
    listed = run_cli("corridors", *sd, "--json")
    assert listed.returncode == 0, listed.stderr
    view = json.loads(listed.stdout)
    corridors = {row["corridor"]: row["candidates"] for row in view["corridors"]}
    assert set(corridors) == {"us-eu", "eu-asia", "us-asia"}
    assert [c["region"] for c in corridors["us-eu"]] == ["us", "eu", "us"]
    assert corridors["us-eu"][2] == {"rank": 3, "region": "us", "node": "us-cln", "keysend": False}
    table = run_cli("corridors", *sd).stdout.splitlines()
    assert table[0].split() == ["CORRIDOR", "RANK", "REGION", "NODE", "KEYSEND"]
    assert ["us-eu", "3", "us", "us-cln", "no"] in [row.split() for row in table]

    shown = run_cli("policy", "show", *sd)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("policy version 1 in force")
    assert "no pending proposals" in shown.stdout

    # The document in force, edited, proposed by one operator and approved by another.
    document = run_cli("policy", "show", *sd, "--document", "--json")
    next_version = json.loads(document.stdout)
    next_version["version"] = 2
    next_version["fees"]["floor_msat"] = 20_000
    proposal = state_dir / "policy-v2.json"
    proposal.write_text(json.dumps(next_version))
    proposed = run_cli("policy", "propose", str(proposal), *sd, "--operator-id", "operator-1")
    assert proposed.returncode == 0, proposed.stderr
    assert "corridor policy approve 2" in proposed.stdout
    pending = json.loads(run_cli("policy", "show", *sd, "--json").stdout)["pending"]
    assert [(p["policy_version"], p["proposed_by"]) for p in pending] == [(2, "operator-1")]

    same = run_cli("policy", "approve", "2", *sd, "--operator-id", "operator-1")
    assert same.returncode == 1 and "two_person_rule" in same.stderr
    approved = run_cli("policy", "approve", "2", *sd, "--operator-id", "operator-2")
    assert approved.returncode == 0, approved.stderr
    assert "policy version 2 is in force" in approved.stdout

    # The default fee follows the policy now in force.
    submitted = run_cli(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "after-v2",
        "--amount-msat", "21000", "--destination", DESTINATION, "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    assert "20000 msat" in submitted.stderr and "policy version 2" in submitted.stderr


def test_user_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    missing = run_cli("submit", "--state-dir", str(tmp_path), "--caller-id", "x")
    assert missing.returncode == 2
    assert "Traceback" not in missing.stderr
    assert missing.stderr.startswith("corridor: error:")
    for command in (["get", "abc"], ["corridors"], ["policy", "show"], ["watch"], ["replay"]):
        no_stack = run_cli(*command, "--state-dir", str(tmp_path / "nowhere"))
        assert no_stack.returncode == 2, command
        assert "no running stack" in no_stack.stderr and "Traceback" not in no_stack.stderr
    # A stack that is named but not there: one line, exit 2, quickly.
    (tmp_path / "endpoints.json").write_text(json.dumps({"nats_url": "nats://127.0.0.1:1"}))
    gone = run_cli("corridors", "--state-dir", str(tmp_path))
    assert gone.returncode == 2 and gone.stderr.startswith("corridor: error: cannot reach NATS")


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
