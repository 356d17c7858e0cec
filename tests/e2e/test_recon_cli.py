"""Reconciliation through `corridor` against `corridor up` with the simulator (ADR 0151): a
payment made on our node behind Corridor's back is found by `recon run`, listed by `recon list`
and `exceptions`, trips the node's breaker, and `recon clear` ends it with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import REPO, _env, run_cli
from tests.e2e.test_first_payment import _invoice, stack_with_sim  # noqa: F401 (fixture)

NODE, REGION = "us-lnd", "us"


def _json(*args: str) -> Any:
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# Run in a child process: gRPC channels in the test process make its later forks (nats-server,
# PostgreSQL) crash on a known grpcio bug (grpc/grpc#43055).
_PAY = """
import asyncio, sys
from pathlib import Path
from services.executor.nodes import adapter_for, resolve_node
from services.lightning.port import PaymentSucceeded, PayRequest

async def main() -> None:
    state_dir, node, region, bolt11 = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    adapter = adapter_for(resolve_node(f"sim://{node}", region=region, state_dir=state_dir).uri)
    try:
        paid = await adapter.pay(PayRequest(payment_request=bolt11, max_fee_msat=10_000,
                                            timeout_s=10))
    finally:
        await adapter.close()
    assert isinstance(paid, PaymentSucceeded), paid
    print(paid.payment_hash)

asyncio.run(main())
"""


def _pay_behind_our_back(state_dir: Path, payment_request: str) -> str:
    """Pay through the node's own API (lnd gRPC), not through Corridor."""
    done = subprocess.run(
        [sys.executable, "-c", _PAY, str(state_dir), NODE, REGION, payment_request],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_recon_finds_a_payment_behind_our_back_and_clears_the_breaker(
    stack_with_sim: Path,  # noqa: F811
) -> None:
    sd = ["--state-dir", str(stack_with_sim)]
    payment_hash = _pay_behind_our_back(stack_with_sim, _invoice(sd, 9_000))

    # The stack's own loop (ADR 0163) may find it first: then this pass lists it no more, and
    # either way the item is recorded once.
    found = _json("recon", "run", *sd, "--node", NODE)
    assert [(f["category"], f["payment_hash"]) for f in found] in (
        [("unexpected_payment", payment_hash)], [],
    )  # fmt: skip
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
