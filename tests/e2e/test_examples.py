"""The programs in examples/ run against `corridor up` with the simulator, as an integrator
would run them: a caller's credential made with `corridor creds add`, an intent submitted over
NATS (the same key twice gives the original reply), its settlement read by a durable subscriber
that resumes after a restart without repeating an event."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cli import REPO, _env, run_cli
from tests.e2e.test_first_payment import _invoice, stack_with_sim  # noqa: F401

AMOUNT_MSAT = 40_000
TIMEOUT_S = 60


def example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *args], capture_output=True, text=True,
        timeout=TIMEOUT_S, cwd=REPO, env=_env(),
    )  # fmt: skip


def test_submit_and_follow_settlements_with_the_examples(
    stack_with_sim: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    nats_url = json.loads((stack_with_sim / "endpoints.json").read_text())["nats_url"]
    creds = tmp_path / "acme.nk"
    added = run_cli("creds", "add", "--role", "caller", "--id", "acme", "--kind", "service",
                    "--out", str(creds), *sd)  # fmt: skip
    assert added.returncode == 0, added.stderr
    who = ["--nats-url", nats_url, "--creds", str(creds), "--caller-id", "acme"]

    def submit(key: str, invoice: str) -> dict[str, object]:
        done = example("submit_over_nats.py", *who, "--idempotency-key", key,
                       "--amount-msat", str(AMOUNT_MSAT), "--payment-request", invoice)  # fmt: skip
        assert done.returncode == 0, done.stderr + done.stdout
        reply: dict[str, object] = json.loads(done.stdout)
        return reply

    first_invoice = _invoice(sd, AMOUNT_MSAT)
    first = submit("order-1", first_invoice)
    assert first["ok"] and first["state"] == "dispatched", first
    again = submit("order-1", first_invoice)
    assert again["intent_id"] == first["intent_id"] and again.get("duplicate") is True, again
    changed = example("submit_over_nats.py", *who, "--idempotency-key", "order-1",
                      "--amount-msat", str(AMOUNT_MSAT + 1), "--payment-request",
                      _invoice(sd, AMOUNT_MSAT + 1))  # fmt: skip
    assert changed.returncode == 1
    assert json.loads(changed.stdout)["error"]["code"] == "idempotency_mismatch"

    state = tmp_path / "position"
    follow = [*who, "--state", str(state), "--count", "1"]
    seen = example("settlement_subscriber.py", *follow)
    assert seen.returncode == 0, seen.stderr
    (line,) = [json.loads(x) for x in seen.stdout.splitlines()]
    assert (line["type"], line["intent_id"]) == ("IntentSettled", first["intent_id"])

    # A second intent; the subscriber, started again, resumes after what it acknowledged.
    second = submit("order-2", _invoice(sd, AMOUNT_MSAT))
    seen = example("settlement_subscriber.py", *follow)
    assert seen.returncode == 0, seen.stderr
    (line,) = [json.loads(x) for x in seen.stdout.splitlines()]
    assert (line["type"], line["intent_id"]) == ("IntentSettled", second["intent_id"])
    assert int(state.read_text()) >= line["position"]
