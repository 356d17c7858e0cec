"""The runbooks' runnable blocks (```` ```sh runbook-run ````) run against `corridor up` with the
simulated network, as an on-call engineer would paste them: from a directory whose `.corridor/`
is the stack, with nothing set but PATH. Each must end with exit 0, or the `exit=N` its tag
gives (runbooks/README.md). The parse check of every block is tests/unit/test_runbook_commands.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cli import _env, run_cli
from tests.e2e.test_first_payment import _invoice, stack_with_sim  # noqa: F401 (fixture)
from tests.runbook_blocks import blocks

BLOCK_TIMEOUT_S = 60


def _shell_env() -> dict[str, str]:
    env = _env()
    # `corridor` and `python` are the ones of this checkout, as on an operator's host.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_every_runnable_runbook_block_runs_against_the_local_stack(
    stack_with_sim: Path,  # noqa: F811
) -> None:
    workdir = stack_with_sim.parent
    assert stack_with_sim.name == "state"
    (workdir / ".corridor").symlink_to(stack_with_sim)
    sd = ["--state-dir", str(stack_with_sim)]
    # One settled payment, so the log, the exports and the read models have something in them.
    paid = run_cli("submit", *sd, "--idempotency-key", "runbooks-1", "--amount-msat", "21000",
                   "--payment-request", _invoice(sd, 21_000), "--json")  # fmt: skip
    assert paid.returncode == 0 and json.loads(paid.stdout)["ok"], paid.stderr

    runnable = [b for b in blocks() if b.runnable]
    assert len(runnable) >= 8
    failures = []
    for block in runnable:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.script],
            cwd=workdir, env=_shell_env(), capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT_S,
        )  # fmt: skip
        if done.returncode != block.expected_exit:
            failures.append(
                f"{block.name}: exit {done.returncode}, expected {block.expected_exit}\n"
                f"{block.script}stdout: {done.stdout[-1500:]}\nstderr: {done.stderr[-1500:]}"
            )
    assert not failures, "\n\n".join(failures)
    # What the blocks wrote is there: the evidence an engineer hands over.
    assert (workdir / "evidence" / "startup-corridors.json").stat().st_size > 0
    assert (workdir / "backup-drill" / "before.jsonl").stat().st_size > 0
