"""``corridor sim pay``: an outside node of a running simulator pays an invoice of one of our
nodes through its own API, as a customer's wallet would."""

from __future__ import annotations

import json

import pytest

from tests.sim.test_sim_cli import RunningStack, run_cli, running  # noqa: F401  (fixture)


def test_an_outside_node_pays_our_invoice(
    running: RunningStack,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    sd = str(running.state_dir)
    network = running.stack.network
    for payer, payee in (("merchant-02", "us-lnd"), ("merchant-01", "us-cln")):
        code, out, _ = run_cli(
            capsys, "invoice", "--node", payee, "--amount-msat", "33000", "--json",
            "--state-dir", sd,
        )  # fmt: skip
        assert code == 0
        invoice = json.loads(out)
        code, out, err = run_cli(
            capsys, "pay", "--node", payer, "--payment-request", invoice["payment_request"],
            "--json", "--state-dir", sd,
        )  # fmt: skip
        assert code == 0, err
        paid = json.loads(out)
        assert paid["status"] == "succeeded" and paid["amount_msat"] == 33000
        assert paid["payment_hash"] == invoice["payment_hash"]
        stored = network.lookup_invoice(payee, invoice["payment_hash"])
        assert stored is not None and stored.state == "settled"
        assert stored.preimage == paid["preimage"] and stored.amount_received_msat == 33000
        # Paying again answers from the payer's record: never a second payment.
        code, out, _ = run_cli(
            capsys, "pay", "--node", payer, "--payment-request", invoice["payment_request"],
            "--state-dir", sd,
        )  # fmt: skip
        assert code == 0 and "succeeded" in out
        attempts = [p for p in network.payments() if p.payment_hash == invoice["payment_hash"]]
        assert len(attempts) == 1 and attempts[0].origin == payer


def test_sim_pay_refusals(
    running: RunningStack,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    sd = str(running.state_dir)
    code, out, _ = run_cli(
        capsys, "invoice", "--node", "us-lnd", "--amount-msat", "1000", "--json", "--state-dir", sd
    )
    bolt11 = json.loads(out)["payment_request"]
    # Our own node is no customer.
    code, _, err = run_cli(
        capsys, "pay", "--node", "us-cln", "--payment-request", bolt11, "--state-dir", sd
    )
    assert code == 2 and "one of our nodes" in err and "merchant-01" in err
    code, _, err = run_cli(
        capsys, "pay", "--node", "merchant-01", "--payment-request", "lnbc1nonsense",
        "--state-dir", sd,
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    # A payment that fails is an answer: printed, exit 1.
    running.stack.network.faults.set_offline("us-lnd", offline=True)
    code, out, err = run_cli(
        capsys, "pay", "--node", "merchant-01", "--payment-request", bolt11, "--json",
        "--state-dir", sd,
    )  # fmt: skip
    assert code == 1, err
    assert json.loads(out)["status"] == "failed"
