"""Webhooks through `corridor` against `corridor up` with the simulator (issue 16, ADR 0175):
`webhooks add` shows the secret once, the dispatcher that `corridor up` runs delivers the
settlement signed (the receiver verifies with standardwebhooks), `history` has the same
webhook id, `list` shows the endpoint without its secret, `remove` stops it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import REPO, _env, run_cli
from tests.e2e.test_first_payment import (  # noqa: F401 (fixture)
    AMOUNT_MSAT,
    SETTLE_DEADLINE_S,
    _invoice,
    stack_with_sim,
)
from tests.integration.test_webhooks import Receiver


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def test_a_settlement_arrives_signed_and_is_in_the_history(
    stack_with_sim: Path,  # noqa: F811
    receiver: Receiver,
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    added = run_cli("webhooks", "add", *sd, "--url", receiver.url,
                    "--events", "IntentSettled,IntentFailed")  # fmt: skip
    assert added.returncode == 0, added.stderr
    lines = dict(line.split(" ", 1) for line in added.stdout.splitlines())
    receiver.secret = lines["secret"]
    assert "shown once" in added.stderr

    submitted = _json(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "hook-1",
        "--amount-msat", str(AMOUNT_MSAT), "--payment-request", _invoice(sd, AMOUNT_MSAT),
    )  # fmt: skip
    assert submitted["ok"], submitted
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while submitted["intent_id"] not in receiver.intents():
        assert time.monotonic() < deadline, "no signed webhook for the settlement"
        time.sleep(0.1)
    assert receiver.refused == 0
    [(webhook_id, payload)] = receiver.accepted.items()
    assert payload["type"] == "IntentSettled"

    page = _json("webhooks", "history", *sd, "--from-position", "1")
    assert [e["webhook_id"] for e in page["entries"]] == [webhook_id]

    listed = _json("webhooks", "list", *sd)
    [endpoint] = listed["endpoints"]
    assert endpoint["endpoint_id"] == lines["endpoint"] and endpoint["active"]
    assert lines["secret"] not in json.dumps(listed)
    removed = _json("webhooks", "remove", *sd, lines["endpoint"])
    assert removed["ok"]
    assert not _json("webhooks", "list", *sd)["endpoints"][0]["active"]


def test_the_example_receiver_verifies_and_dedupes(
    stack_with_sim: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    secret_file, state = tmp_path / "secret", tmp_path / "seen"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples" / "webhook_receiver.py"), "--secret-file",
         str(secret_file), "--state", str(state), "--count", "1"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The secret is known only once the endpoint exists, and the URL only once the example
        # listens: it reads the secret file at its first request.
        assert proc.stderr is not None and proc.stdout is not None
        url = proc.stderr.readline().split()[-1] + "hooks"
        added = run_cli("webhooks", "add", *sd, "--url", url, "--events", "all")
        assert added.returncode == 0, added.stderr
        secret_file.write_text(dict(ln.split(" ", 1) for ln in added.stdout.splitlines())["secret"])
        submitted = _json(
            "submit", *sd, "--caller-id", "local", "--idempotency-key", "hook-ex",
            "--amount-msat", str(AMOUNT_MSAT), "--payment-request", _invoice(sd, AMOUNT_MSAT),
        )  # fmt: skip
        out, err = proc.communicate(timeout=SETTLE_DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    [line] = [json.loads(x) for x in out.splitlines()]
    assert (line["type"], line["intent_id"]) == ("IntentSettled", submitted["intent_id"])
    assert state.read_text().split() == [line["webhook_id"]]
