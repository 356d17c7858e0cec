"""A new user's first hour, end to end through `corridor` against `corridor up` with the simulator.

The path the README gives: start the stack, ask a simulated merchant for an invoice, submit it
with no fee flag, watch it settle. And the first mistake such a user makes: a fee budget above
the policy's cap, refused with the rule and its numbers in the submit reply itself.
"""

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

SETTLE_DEADLINE_S = 60.0
AMOUNT_MSAT = 150_000


@pytest.fixture
def stack_with_sim(tmp_path: Path) -> Iterator[Path]:
    state_dir = tmp_path / "state"
    proc = subprocess.Popen(
        [*CORRIDOR, "up", "--state-dir", str(state_dir)],
        cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        endpoints = state_dir / "endpoints.json"
        _wait_for_file(endpoints, proc)
        deadline = time.monotonic() + 60
        # The simulator's nodes are added to endpoints.json once the network is up.
        while "nodes" not in json.loads(endpoints.read_text()):
            assert proc.poll() is None, "corridor up died"
            assert time.monotonic() < deadline, "the simulated network did not come up"
            time.sleep(0.05)
        yield state_dir
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def _cli_json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _invoice(sd: list[str], amount_msat: int) -> str:
    nodes = _cli_json("sim", "nodes", *sd)
    merchant = next(n["name"] for n in nodes if n["role"] == "merchant" and n["region"] == "eu")
    invoice = _cli_json(
        "sim", "invoice", *sd, "--node", merchant, "--amount-msat", str(amount_msat)
    )
    return str(invoice["payment_request"])


def test_the_first_payment_settles_with_no_fee_flag(stack_with_sim: Path) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    payment_request = _invoice(sd, AMOUNT_MSAT)
    submitted = run_cli(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "first-1",
        "--amount-msat", str(AMOUNT_MSAT), "--payment-request", payment_request, "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    reply = json.loads(submitted.stdout)
    assert reply["ok"] and reply["state"] == "dispatched", reply
    # The CLI chose the fee budget from the policy in force, and said so.
    assert "the most policy version 1 allows" in submitted.stderr

    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        view = _cli_json("get", *sd, reply["intent_id"])
        if view["state"] in ("settled", "failed"):
            break
        assert time.monotonic() < deadline, f"still {view['state']} after {SETTLE_DEADLINE_S} s"
        time.sleep(0.1)
    assert view["state"] == "settled", view
    _read_over_http(stack_with_sim, reply["intent_id"])


def _read_over_http(state_dir: Path, intent_id: str) -> None:
    """`corridor up` serves the HTTP API at endpoints.json's http_url; the caller's API key
    is beside its seed (ADR 0171, 0174)."""
    import httpx

    url = json.loads((state_dir / "endpoints.json").read_text())["http_url"]
    token = (state_dir / "auth" / "caller-local.nk.http").read_text().strip()
    read = httpx.get(f"{url}/v1/intents/{intent_id}", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200 and read.json()["state"] == "settled", read.text
    assert httpx.get(f"{url}/v1/intents/{intent_id}").status_code == 401


def test_a_fee_budget_over_the_cap_is_refused_with_the_rule_and_numbers(
    stack_with_sim: Path,
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    policy = _cli_json("policy", "show", *sd)
    fees = policy["document"]["fees"]
    allowed_msat = min(
        fees["cap_msat"], max(fees["floor_msat"], AMOUNT_MSAT * fees["cap_ppm"] // 1_000_000)
    )
    payment_request = _invoice(sd, AMOUNT_MSAT)
    args = [
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "over-cap",
        "--amount-msat", str(AMOUNT_MSAT), "--payment-request", payment_request,
        "--max-fee-msat", str(allowed_msat + 1),
    ]  # fmt: skip
    reply = json.loads(run_cli(*args, "--json").stdout)
    assert reply["state"] == "rejected"
    assert reply["reason"] == "fee_cap_exceeded"
    (fee_rule,) = [r for r in reply["explanation"] if r["rule"] == "fee.cap"]
    assert fee_rule["effect"] == "reject"
    assert fee_rule["inputs"]["max_fee_msat"] == allowed_msat + 1

    readable = run_cli(*args)  # the same request again: the original answer, for people
    assert "fee_cap_exceeded" in readable.stdout + readable.stderr
    assert "fee.cap" in readable.stdout + readable.stderr
