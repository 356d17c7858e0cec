"""`corridor up` runs one reconciliation loop per node (ADR 0163): listed in endpoints.json,
it finds a payment made on our node behind Corridor's back by itself, with no `recon run`, and
the item reaches the exception queue. The loops read the log as the read-only auditor role."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import CORRIDOR, REPO, _env, _wait_for_file, run_cli
from tests.e2e.test_first_payment import _invoice
from tests.e2e.test_recon_cli import NODE, _pay_behind_our_back

# A pass every second here (the default is a minute), so the test waits on the loop, not on
# `recon run`; the deadline is for a loaded machine.
FOUND_DEADLINE_S = 60.0


@pytest.fixture
def stack_with_fast_reconcilers(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "state"
    env = {**_env(), "CORRIDOR_RECONCILIATION_INTERVAL_S": "1"}
    proc = subprocess.Popen(
        [*CORRIDOR, "up", "--state-dir", str(state_dir)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        endpoints = state_dir / "endpoints.json"
        _wait_for_file(endpoints, proc)
        deadline = time.monotonic() + 60
        while "reconcilers" not in json.loads(endpoints.read_text()):
            assert proc.poll() is None, "corridor up died"
            assert time.monotonic() < deadline, "the reconcilers did not start"
            time.sleep(0.05)
        yield state_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_stacks_reconciler_finds_a_payment_behind_our_back_by_itself(
    stack_with_fast_reconcilers: Path,
) -> None:
    state_dir = stack_with_fast_reconcilers
    sd = ["--state-dir", str(state_dir)]
    listed = json.loads((state_dir / "endpoints.json").read_text())["reconcilers"]
    assert NODE in {r["node"] for r in listed}
    assert {r["database_role"] for r in listed} == {"auditor"}

    payment_hash = _pay_behind_our_back(state_dir, _invoice(sd, 8_000))
    key = f"unexpected_payment:{payment_hash}"
    deadline = time.monotonic() + FOUND_DEADLINE_S
    while key not in {i["key"] for i in _json("recon", "list", *sd)["items"]}:
        assert time.monotonic() < deadline, "the stack's reconciler did not find the payment"
        time.sleep(0.2)
    queue = _json("exceptions", "list", *sd)
    assert "reconciliation:unexpected_payment" in {row["kind"] for row in queue}
    shown = _json("exceptions", "show", key, *sd)
    assert [(e["kind"], e["key"]) for e in shown["exceptions"]] == [
        ("reconciliation:unexpected_payment", key)
    ]

    # The operator closes it through the queue, with the credential `corridor up` made.
    closed = _json("exceptions", "resolve", key, *sd, "--reason", "our own test payment",
                   "--evidence", "paid by hand through lncli")  # fmt: skip
    assert closed["ok"] and closed["resolved"] == 1, closed
    assert key not in {i["key"] for i in _json("recon", "list", *sd)["items"]}
    log = run_cli("replay", *sd, "--stream", f"reconciliation-{NODE}")
    assert log.returncode == 0, log.stderr
    [resolved] = [json.loads(line) for line in log.stdout.splitlines()
                  if '"ReconciliationMismatchResolved"' in line]  # fmt: skip
    assert resolved["metadata"]["actor"] == "operator:operator-1"
    assert resolved["data"]["evidence"] == "paid by hand through lncli"
    again = _json("exceptions", "reprocess", key, *sd)
    assert [o["action"] for o in again] == ["none"]
