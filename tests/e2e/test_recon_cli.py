"""Reconciliation through `corridor` against `corridor up` with the simulator (ADR 0151): a
payment made on our node behind Corridor's back is found by `recon run`, listed by `recon list`
and `exceptions`, trips the node's breaker, and `recon clear` ends it with the reason."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from services.executor.nodes import adapter_for, resolve_node
from services.lightning.port import PaymentSucceeded, PayRequest
from tests.e2e.test_cli import run_cli
from tests.e2e.test_first_payment import _invoice, stack_with_sim  # noqa: F401 (fixture)

NODE, REGION = "us-lnd", "us"


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def _pay_behind_our_back(state_dir: Path, payment_request: str) -> str:
    """Pay through the node's own API (lnd gRPC), not through Corridor."""
    node = adapter_for(resolve_node(f"sim://{NODE}", region=REGION, state_dir=state_dir).uri)
    try:
        paid = await node.pay(
            PayRequest(payment_request=payment_request, max_fee_msat=10_000, timeout_s=10)
        )
    finally:
        await node.close()
    assert isinstance(paid, PaymentSucceeded), paid
    return paid.payment_hash


def test_recon_finds_a_payment_behind_our_back_and_clears_the_breaker(
    stack_with_sim: Path,  # noqa: F811
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    payment_hash = asyncio.run(_pay_behind_our_back(stack_with_sim, _invoice(sd, 9_000)))

    found = _json("recon", "run", *sd, "--node", NODE)
    assert [(f["category"], f["payment_hash"]) for f in found] == [
        ("unexpected_payment", payment_hash)
    ]
    listed = _json("recon", "list", *sd)
    assert [i["key"] for i in listed["items"]] == [f"unexpected_payment:{payment_hash}"]
    assert [b["node"] for b in listed["breakers"]] == [NODE]
    kinds = {row["kind"] for row in _json("exceptions", *sd)}
    assert "reconciliation:unexpected_payment" in kinds

    cleared = _json("recon", "clear", *sd, NODE, "--reason", "manual refund, ticket 42")
    assert cleared["ok"] and cleared["resolved"] == 1, cleared
    after = _json("recon", "list", *sd)
    assert after == {"items": [], "breakers": []}
    # The next pass resumes after the stored cursor: the explained payment is not judged again.
    again = run_cli("recon", "run", *sd, "--node", NODE)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{NODE}: 0 listed, 0 looked up, 0 mismatches (0 new)\n"
