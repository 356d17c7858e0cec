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

    # The same over HTTP, with the API key `creds add` wrote beside the seed.
    http_url = json.loads((stack_with_sim / "endpoints.json").read_text())["http_url"]
    over_http = ["--url", http_url, "--key-file", f"{creds}.http"]
    http_invoice = _invoice(sd, AMOUNT_MSAT)
    order_h = [*over_http, "--idempotency-key", "order-h", "--payment-request", http_invoice]
    posted = example("submit_over_http.py", *order_h, "--amount-msat", str(AMOUNT_MSAT))
    assert posted.returncode == 0, posted.stderr + posted.stdout
    created = json.loads(posted.stdout)
    assert (created["status"], created["replayed"]) == (201, False), created
    again_h = example("submit_over_http.py", *order_h, "--amount-msat", str(AMOUNT_MSAT))
    replayed = json.loads(again_h.stdout)
    assert (replayed["status"], replayed["replayed"]) == (200, True)
    assert replayed["reply"]["intent_id"] == created["reply"]["intent_id"]
    conflict = example("submit_over_http.py", *order_h, "--amount-msat", str(AMOUNT_MSAT + 5))
    assert conflict.returncode == 1 and json.loads(conflict.stdout)["status"] == 409

    state = tmp_path / "position"
    follow = [*who, "--state", str(state), "--count", "1"]
    follow_two = [*who, "--state", str(state), "--count", "2"]
    seen = example("settlement_subscriber.py", *follow_two)
    assert seen.returncode == 0, seen.stderr
    lines = [json.loads(x) for x in seen.stdout.splitlines()]
    assert {(x["type"], x["intent_id"]) for x in lines} == {
        ("IntentSettled", first["intent_id"]), ("IntentSettled", created["reply"]["intent_id"]),
    }  # fmt: skip

    # A second intent; the subscriber, started again, resumes after what it acknowledged.
    second = submit("order-2", _invoice(sd, AMOUNT_MSAT))
    seen = example("settlement_subscriber.py", *follow)
    assert seen.returncode == 0, seen.stderr
    (line,) = [json.loads(x) for x in seen.stdout.splitlines()]
    assert (line["type"], line["intent_id"]) == ("IntentSettled", second["intent_id"])
    assert int(state.read_text()) >= line["position"]
