"""Payees through `corridor` against `corridor up` (issue 19, ADR 0270/0271): onboarding adds
the payee's own wallet node to the simulated network, opens an inbound channel to it from our
region's node (confirmed by the stack's miner), a payment to an invoice of that wallet
settles, and erasure removes the payee's name and e-mail while `corridor replay --verify`
still verifies the chain. The name is searched for everywhere it could leak: the stack's logs
at debug level, the CLI's output, the log's replay, `corridor get`, JetStream's files."""

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

NAME = "Ximena Quokka-Vasquez"  # distinctive: a text search finds any copy
EMAIL = "xq-contractor@example.org"
AMOUNT_MSAT = 150_000
DEADLINE_S = 90.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """`corridor up` with its logs at debug level in a file, to search them afterwards."""
    state_dir, log_file = tmp_path / "state", tmp_path / "up.log"
    env = _env() | {"CORRIDOR_LOG_LEVEL": "debug"}
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
            yield state_dir, log_file
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def _json(*args: str, code: int = 0) -> Any:
    done = run_cli(*args, "--json", timeout_s=DEADLINE_S + 30)
    assert done.returncode == code, done.stderr
    assert NAME not in done.stderr
    return json.loads(done.stdout)


def _files_holding(root: Path, needle: bytes, *, skip: str) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and skip not in path.parts and needle in path.read_bytes()
    ]


def test_onboard_pay_and_erase_a_contractor(stack: tuple[Path, Path]) -> None:
    state_dir, log_file = stack
    sd = ["--state-dir", str(state_dir)]
    onboarded = _json(
        "payees", "onboard", *sd, "--name", NAME, "--email", EMAIL, "--region", "asia",
        "--liquidity", "channel", "--wait", "--idempotency-key", "contractor-1",
    )  # fmt: skip
    payee_id, node = onboarded["payee_id"], onboarded["node"]
    assert payee_id.startswith("payee-") and node.startswith("wallet-")
    package = onboarded["package"]
    assert package["seed_backup"] and package["wallet"]["node"] == node
    assert package["connect_to"]["node"] == "asia-lnd"
    assert package["connect_to"]["uri"].startswith(package["connect_to"]["pubkey"] + "@")
    liquidity = package["liquidity"]
    assert (liquidity["kind"], liquidity["state"]) == ("channel", "completed"), liquidity
    assert NAME not in json.dumps(onboarded)

    nodes = {n["name"]: n for n in _json("sim", "nodes", *sd)}
    assert nodes[node]["role"] == "wallet" and nodes[node]["pubkey"] == package["wallet"]["pubkey"]
    # A retry (same key, same request) is the same payee, and no second node or channel.
    again = _json("payees", "onboard", *sd, "--name", NAME, "--email", EMAIL, "--region", "asia",
                  "--idempotency-key", "contractor-1")  # fmt: skip
    assert (again["payee_id"], again["duplicate"]) == (payee_id, True)
    assert again["package"]["liquidity"]["channel_intent_id"] == liquidity["channel_intent_id"]
    assert sum(1 for n in _json("sim", "nodes", *sd) if n["role"] == "wallet") == 1

    # The payee's wallet makes an invoice; we pay it over the new channel.
    invoice = _json("sim", "invoice", *sd, "--node", node, "--amount-msat", str(AMOUNT_MSAT))
    submitted = _json(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", "pay-contractor-1",
        "--corridor", "us-asia", "--amount-msat", str(AMOUNT_MSAT),
        "--payment-request", invoice["payment_request"],
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE_S
    while (view := _json("get", *sd, submitted["intent_id"]))["state"] not in ("settled", "failed"):
        assert time.monotonic() < deadline, view["state"]
        time.sleep(0.2)  # a poll of the CLI with a deadline
    assert view["state"] == "settled", view

    shown = _json("payees", "get", *sd, payee_id)
    assert (shown["name"], shown["email"], shown["node"]) == (NAME, EMAIL, node)
    assert any(p["payee_id"] == payee_id for p in _json("payees", "list", *sd))

    erased = _json("payees", "erase", *sd, payee_id)
    assert (erased["state"], erased["personal_data_deleted"]) == ("erased", True)
    after = _json("payees", "get", *sd, payee_id)
    assert (after["state"], after["name"], after["email"]) == ("erased", None, None)

    as_operator = ["--creds", str(state_dir / "auth" / "operator-operator-1.nk")]
    log_view = _json("get", *sd, payee_id, *as_operator)
    assert [e["type"] for e in log_view["events"]] == ["PayeeOnboarded", "PayeeErased"]
    replayed = run_cli("replay", *sd, "--verify", timeout_s=60)
    assert replayed.returncode == 0, replayed.stderr
    assert payee_id in replayed.stdout and NAME not in replayed.stdout
    assert EMAIL not in replayed.stdout
    assert json.loads(replayed.stderr.strip().splitlines()[-1])["chain_ok"]

    # Nowhere in the stack's files (JetStream's streams, keys, endpoints) but PostgreSQL's own
    # data files, whose dead tuples vacuum reclaims (ADR 0270), nor in its logs at debug.
    assert _files_holding(state_dir, NAME.encode(), skip="postgres") == []
    assert NAME not in log_file.read_text() and EMAIL not in log_file.read_text()


def _settled(sd: list[str], intent_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while (view := _json("get", *sd, intent_id))["state"] not in ("settled", "failed", "rejected"):
        assert time.monotonic() < deadline, view["state"]
        time.sleep(0.2)  # a poll of the CLI with a deadline
    return dict(view)


def _tier(view: dict[str, Any]) -> str:
    (checked,) = [e for e in view["events"] if e["type"] == "IntentPolicyChecked"]
    return str(checked["data"]["tier"])


def _pay(sd: list[str], key: str, node: str, payee_id: str, *, code: int = 0) -> Any:
    invoice = _json("sim", "invoice", *sd, "--node", node, "--amount-msat", str(AMOUNT_MSAT))
    return _json(
        "submit", *sd, "--caller-id", "local", "--idempotency-key", key, "--corridor", "us-asia",
        "--amount-msat", str(AMOUNT_MSAT), "--payment-request", invoice["payment_request"],
        "--payee-id", payee_id, code=code,
    )  # fmt: skip


def test_payees_are_destinations_policy_understands(stack: tuple[Path, Path]) -> None:
    """With first-payment review switched on in the policy (two operators), the first payment
    to a payee runs in tier review and the next in auto; an invoice that is not the payee's
    wallet's, and a payment to an erased payee, are refused."""
    state_dir, _ = stack
    sd = ["--state-dir", str(state_dir)]
    document = _json("policy", "show", *sd, "--document")
    assert document["payees"]["first_payment_review"] is False  # off by default
    document["version"] = 2
    document["payees"]["first_payment_review"] = True
    proposal = state_dir / "policy-v2.json"
    proposal.write_text(json.dumps(document))
    proposed = run_cli("policy", "propose", str(proposal), *sd, "--operator-id", "operator-1")
    assert proposed.returncode == 0, proposed.stderr
    approved = run_cli("policy", "approve", "2", *sd, "--operator-id", "operator-2")
    assert approved.returncode == 0, approved.stderr

    onboarded = _json(
        "payees", "onboard", *sd, "--name", NAME, "--region", "asia", "--jurisdiction", "SG",
        "--wait", "--idempotency-key", "contractor-2",
    )  # fmt: skip
    payee_id, node = onboarded["payee_id"], onboarded["node"]
    assert onboarded["package"]["liquidity"]["state"] == "completed"

    first = _settled(sd, _pay(sd, "payee-pay-1", node, payee_id)["intent_id"])
    assert (first["state"], _tier(first)) == ("settled", "review"), first
    second = _settled(sd, _pay(sd, "payee-pay-2", node, payee_id)["intent_id"])
    assert (second["state"], _tier(second)) == ("settled", "auto"), second
    received = next(e for e in first["events"] if e["type"] == "IntentReceived")
    assert received["data"]["payee_id"] == payee_id
    assert _json("payees", "get", *sd, payee_id)["first_payment_intent_id"] == first["intent_id"]

    merchant = next(n["name"] for n in _json("sim", "nodes", *sd) if n["role"] == "merchant")
    mismatch = _pay(sd, "payee-pay-3", merchant, payee_id, code=1)
    assert mismatch["error"]["code"] == "payee_mismatch", mismatch

    # No node of ours in the region: refused before any node, payee or row is made.
    wallets = sum(1 for n in _json("sim", "nodes", *sd) if n["role"] == "wallet")
    nowhere = run_cli("payees", "onboard", *sd, "--name", NAME, "--region", "mars", "--json")
    assert nowhere.returncode == 1 and "no node of ours in region mars" in nowhere.stderr
    assert NAME not in nowhere.stderr + nowhere.stdout
    assert sum(1 for n in _json("sim", "nodes", *sd) if n["role"] == "wallet") == wallets
    assert len(_json("payees", "list", *sd)) == 1

    # A just-in-time payee on a CLN wallet: the choice is recorded, no channel is asked for.
    jit = _json("payees", "onboard", *sd, "--name", NAME, "--region", "asia",
                "--liquidity", "jit", "--wallet-api", "cln")  # fmt: skip
    assert jit["package"]["wallet"]["implementation"] == "cln"
    assert jit["package"]["liquidity"]["kind"] == "jit"
    assert "channel_intent_id" not in jit["package"]["liquidity"]
    assert _json("payees", "get", *sd, jit["payee_id"])["liquidity"] == "jit"

    _json("payees", "erase", *sd, payee_id)
    erased = _pay(sd, "payee-pay-4", node, payee_id, code=1)
    assert erased["error"]["code"] == "payee_erased", erased
