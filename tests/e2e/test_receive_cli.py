"""A receive end to end through `corridor` against `corridor up` (issue 18, ADR 0220): the
README's commands. `corridor receive` prints the intent and its invoice, an outside simulated
merchant pays it through its own node's API (as a customer's wallet would), `corridor get`
shows the receive `paid`, a retry with the printed key returns the same receive, and a
reconciliation pass of the node finds nothing to disagree with."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from services.executor.nodes import adapter_for
from services.lightning.port import PaymentSucceeded, PayRequest
from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import stack_with_sim

__all__ = ["stack_with_sim"]  # the fixture, used by name

PAID_DEADLINE_S = 60.0
AMOUNT_MSAT = 70_000


async def _pay_as_a_customer(state_dir: Path, payment_request: str) -> None:
    nodes = json.loads((state_dir / "endpoints.json").read_text())["nodes"]
    endpoint = next(n["endpoint"] for n in nodes if n["name"] == "merchant-01")
    wallet = adapter_for(endpoint)
    try:
        paid = await wallet.pay(
            PayRequest(max_fee_msat=10_000, timeout_s=10, payment_request=payment_request)
        )
    finally:
        await wallet.close()
    assert isinstance(paid, PaymentSucceeded), paid


def test_corridor_receive_is_paid_from_outside_and_reconciles(stack_with_sim: Path) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    created = run_cli("receive", *sd, "--amount-msat", str(AMOUNT_MSAT), "--memo", "order 42",
                      "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    receive = json.loads(created.stdout)
    assert receive["intent_id"].startswith("rcv-") and receive["state"] == "issued"
    assert receive["payment_request"].startswith("lnbcrt")
    key = receive["idempotency_key"]
    assert f"idempotency key {key}" in created.stderr

    asyncio.run(_pay_as_a_customer(stack_with_sim, receive["payment_request"]))
    deadline = time.monotonic() + PAID_DEADLINE_S
    while True:
        view = json.loads(run_cli("get", *sd, receive["intent_id"], "--json").stdout)
        if view["state"] == "paid":
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)  # a poll of the CLI with a deadline
    assert [e["type"] for e in view["events"]].count("InvoicePaid") == 1

    again = run_cli("receive", *sd, "--amount-msat", str(AMOUNT_MSAT), "--memo", "order 42",
                    "--idempotency-key", key, "--json")  # fmt: skip
    assert json.loads(again.stdout)["intent_id"] == receive["intent_id"]
    assert json.loads(again.stdout)["state"] == "paid"

    recon = run_cli("recon", "run", *sd, "--node", receive["node"], "--json")
    assert recon.returncode == 0, recon.stderr
    assert json.loads(recon.stdout) == []
