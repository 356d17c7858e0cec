"""Webhooks through `corridor` against `corridor up` with the simulator (issue 16, ADR 0175):
`webhooks add` shows the secret once, the dispatcher that `corridor up` runs delivers the
settlement signed (the receiver verifies with standardwebhooks), `history` has the same
webhook id, `list` shows the endpoint without its secret, `remove` stops it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import run_cli
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
