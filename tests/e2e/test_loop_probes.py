"""`corridor projections run` and `corridor recon run --every S`, the deployments' projector
and reconcilers (compose, k8s), serve /healthz and a /readyz that turns ready once their loop
finished a round (ADR 0153): before, neither served a probe, so a wedged loop went unseen."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.test_cli import CORRIDOR, REPO, _env
from tests.e2e.test_first_payment import stack_with_sim  # noqa: F401 (fixture)

READY_DEADLINE_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0  # not listening yet


def _ready_within(proc: subprocess.Popen[str], base: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while _status(f"{base}/readyz") != 200:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "it died"
        assert time.monotonic() < deadline, f"{base}/readyz never turned ready"
        time.sleep(0.1)
    assert _status(f"{base}/healthz") == 200
    assert _status(f"{base}/metrics") == 200


def _serving(*args: str, **extra_env: str) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    env = {**_env(), "CORRIDOR_METRICS_PORT": str(port), **extra_env}
    proc = subprocess.Popen(
        [*CORRIDOR, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_the_projector_and_a_reconciler_serve_probes(
    stack_with_sim: Path,  # noqa: F811
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    # The projector connects as the engine, as in compose and k8s.
    engine_seed = stack_with_sim / "auth" / "engine-engine-1.nk"
    projector, projector_url = _serving("projections", "run", *sd, CORRIDOR_CREDS=str(engine_seed))
    reconciler, reconciler_url = _serving("recon", "run", *sd, "--node", "us-lnd", "--every", "1")
    try:
        _ready_within(projector, projector_url)
        _ready_within(reconciler, reconciler_url)
    finally:
        _stop(projector)
        _stop(reconciler)
