"""`corridor http` serves the HTTP API alone in front of a running stack (ADR 0174)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import httpx

from tests.e2e.test_cli import CORRIDOR, REPO, _env, _wait_until, running_stack


def test_corridor_http_serves_writes_its_url_and_removes_it_when_stopped(tmp_path: Path) -> None:
    with running_stack(tmp_path / "state") as state_dir:
        endpoints = state_dir / "endpoints.json"
        up_url = json.loads(endpoints.read_text())["http_url"]
        proc = subprocess.Popen(
            [*CORRIDOR, "http", "--state-dir", str(state_dir)],
            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("corridor HTTP API on http://127.0.0.1:"), line + (
                proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            )
            url = line.split()[4]
            assert url != up_url
            assert json.loads(endpoints.read_text())["http_url"] == url
            token = (state_dir / "auth" / "operator-operator-1.nk.http").read_text().strip()
            policy = httpx.get(f"{url}/v1/policy", headers={"Authorization": f"Bearer {token}"})
            assert policy.status_code == 200 and policy.json()["policy_version"] == 1, policy.text
            assert httpx.get(f"{url}/readyz").status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        # Its own entry goes with it; the stack's other entries stay.
        _wait_until(
            lambda: "http_url" not in json.loads(endpoints.read_text()), what="http_url removed"
        )
        assert "nats_url" in json.loads(endpoints.read_text())
