"""A newly onboarded contractor's first payment through a JIT channel, against `corridor up`
(issue 19, ADR 0261): `corridor payees onboard --liquidity jit` adds the payee's wallet with
our asia node as its LSP; `corridor sim invoice --node <wallet>` makes the wallet buy a JIT
channel over LSPS2 and write its invoice; Corridor pays it as an ordinary intent. The fee
deducted is compute_opening_fee's and within policy; the sale's events are in the log."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.domain.jit_channels.fees import compute_opening_fee, fee_within_policy
from tests.e2e.test_cli import CORRIDOR, REPO, _env, _wait_for_file, run_cli

LSP = "asia-lnd"
AMOUNT_MSAT = 1_000_000
MIN_FEE_MSAT = 20_000
PROPORTIONAL = 1200
DEADLINE_S = 90.0
MENU = {
    "small": {
        "min_fee_msat": MIN_FEE_MSAT, "proportional": PROPORTIONAL, "valid_for_s": 3600,
        "min_lifetime": 1008, "max_client_to_self_delay": 2016,
        "min_payment_size_msat": 1000, "max_payment_size_msat": 10_000_000_000,
    }
}  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Path]:
    state_dir, log_file = tmp_path / "state", tmp_path / "up.log"
    env = _env() | {
        "CORRIDOR_JIT_LSP_NODES": json.dumps([LSP]),
        "CORRIDOR_JIT_FEE_MENU": json.dumps(MENU),
    }
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            [*CORRIDOR, "up", "--state-dir", str(state_dir)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            endpoints = state_dir / "endpoints.json"
            _wait_for_file(endpoints, proc)
            deadline = time.monotonic() + 60
            while "nodes" not in json.loads(endpoints.read_text()):
                assert proc.poll() is None, "corridor up died"
                assert time.monotonic() < deadline, "the simulated network did not come up"
                time.sleep(0.05)  # a poll of the file with a deadline
            yield state_dir
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def _json(*args: str, code: int = 0) -> Any:
    done = run_cli(*args, "--json", timeout_s=DEADLINE_S + 30)
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def test_a_new_contractor_is_paid_first_through_a_jit_channel(stack: Path) -> None:
    sd = ["--state-dir", str(stack)]
    onboarded = _json(
        "payees", "onboard", *sd, "--name", "Jit Contractor", "--region", "asia",
        "--liquidity", "jit", "--idempotency-key", "jit-contractor-1",
    )  # fmt: skip
    node = onboarded["node"]
    assert onboarded["package"]["liquidity"]["kind"] == "jit"
    # The wallet has no channel; asking it for an invoice makes it buy one over LSPS2.
    invoice = _json("sim", "invoice", *sd, "--node", node, "--amount-msat", str(AMOUNT_MSAT))
    submitted = _json(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "pay-jit-1",
        "--corridor", "us-asia", "--amount-msat", str(AMOUNT_MSAT),
        "--payment-request", invoice["payment_request"],
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE_S
    while (view := _json("get", *sd, submitted["intent_id"]))["state"] not in ("settled", "failed"):
        assert time.monotonic() < deadline, view["state"]
        time.sleep(0.2)  # a poll of the CLI with a deadline
    assert view["state"] == "settled", view

    fee = compute_opening_fee(AMOUNT_MSAT, MIN_FEE_MSAT, PROPORTIONAL)
    assert fee == MIN_FEE_MSAT
    assert fee_within_policy(
        opening_fee_msat=fee, payment_size_msat=AMOUNT_MSAT, fee_max_msat=50_000_000,
        fee_max_ppm=50_000,
    )  # fmt: skip
    [channel] = _channels(sd, node)
    assert channel["local_balance_msat"] == AMOUNT_MSAT - fee  # the payee's wallet balance

    replayed = run_cli("replay", *sd, "--verify", timeout_s=60)
    assert replayed.returncode == 0, replayed.stderr
    for event in ("JitChannelSold", "JitHtlcIntercepted", "JitChannelOpened"):
        assert event in replayed.stdout, event
    deadline = time.monotonic() + DEADLINE_S
    while "JitPaymentForwarded" not in replayed.stdout:
        assert time.monotonic() < deadline, "no JitPaymentForwarded in the log"
        time.sleep(0.2)  # a poll of the CLI with a deadline
        replayed = run_cli("replay", *sd, "--verify", timeout_s=60)
    assert f'"opening_fee_msat":{fee}' in replayed.stdout.replace(" ", "")


def _channels(sd: list[str], node: str) -> list[dict[str, Any]]:
    import asyncio

    from services.sim.jsonrpc import call_unix  # the control socket, as `sim nodes` uses it

    control = json.loads((Path(sd[1]) / "endpoints.json").read_text())["sim_control"]
    channels: list[dict[str, Any]] = asyncio.run(
        call_unix(control, "channels", {"node": node}, timeout_s=10)
    )
    return channels
