"""A channel open through `corridor` against `corridor up` (ADR 0234): `corridor channels open`
asks for it as an operator, the region's executor opens it on the simulated lnd (over its gRPC
API), `corridor get` shows the funding transaction, then the channel opened once the stack's miner
(a block a second, ADR 0231) has buried it 3 deep, and the printed key returns the same
operation instead of a second channel."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import stack_with_sim

__all__ = ["stack_with_sim"]  # the fixture, used by name

OPENED_DEADLINE_S = 60.0


def test_corridor_channels_open_confirms_and_the_key_returns_it(stack_with_sim: Path) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    nodes = json.loads(run_cli("sim", "nodes", *sd, "--json").stdout)
    peer = next(n["pubkey"] for n in nodes if n["name"] == "hub-us")
    ask = ["channels", "open", *sd, "--node", "us-lnd", "--peer", peer,
           "--amount-msat", "1000000000", "--sat-per-vbyte", "4", "--operator-id", "operator-1",
           "--json"]  # fmt: skip
    opened = run_cli(*ask)
    assert opened.returncode == 0, opened.stderr
    op = json.loads(opened.stdout)
    assert op["intent_id"].startswith("chop-") and op["state"] == "requested"
    key = op["idempotency_key"]
    assert f"idempotency key {key}" in opened.stderr

    # Our nodes' channels are the operators' and auditors' to read, not a caller's.
    as_operator = ["--creds", str(stack_with_sim / "auth" / "operator-operator-1.nk")]
    deadline = time.monotonic() + OPENED_DEADLINE_S
    while True:
        view = json.loads(run_cli("get", *sd, op["intent_id"], *as_operator, "--json").stdout)
        if view["state"] == "completed":
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)  # a poll of the CLI with a deadline
    types = [e["type"] for e in view["events"]]
    assert types == ["ChannelOpenRequested", "ChannelOpening", "ChannelOpened"], types

    again = json.loads(run_cli(*ask, "--idempotency-key", key).stdout)
    assert (again["intent_id"], again["duplicate"]) == (op["intent_id"], True)
