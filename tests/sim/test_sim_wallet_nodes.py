"""A payee's wallet node joins the running simulated network (ADR 0271): ``add_node`` on the
control socket serves it over its real API (lnd gRPC or CLN JSON-RPC) with no channels, and
``corridor sim nodes`` and ``corridor sim invoice --node`` find it although endpoints.json was
written before it existed."""

from __future__ import annotations

import json

import pytest

from tests.sim.test_sim_cli import RunningStack, run_cli

__all__ = ["running"]
from tests.sim.test_sim_cli import running


def _control(running: RunningStack, method: str, params: dict[str, object]) -> object:
    import asyncio

    from services.sim.jsonrpc import call_unix

    return asyncio.run(call_unix(running.stack.control_path, method, params, timeout_s=10))


@pytest.mark.parametrize("implementation", ["lnd", "cln"])
def test_a_wallet_node_added_at_runtime_makes_invoices_and_has_no_channels(
    running: RunningStack, capsys: pytest.CaptureFixture[str], implementation: str
) -> None:
    sd = str(running.state_dir)
    name = f"wallet-{implementation}0001"
    added = _control(running, "add_node", {"name": name, "implementation": implementation})
    assert isinstance(added, dict)
    assert (added["name"], added["role"], added["implementation"]) == (
        name, "wallet", implementation,
    )  # fmt: skip
    assert added["endpoint"].startswith(f"{implementation}://")
    assert running.stack.network.channels_of(name) == []
    capsys.readouterr()  # the simulator's own log lines (same process): not the CLI's output

    code, out, _ = run_cli(capsys, "nodes", "--json", "--state-dir", sd)
    listed = {n["name"]: n for n in json.loads(out)}
    assert code == 0 and listed[name]["pubkey"] == added["pubkey"]

    code, out, err = run_cli(
        capsys, "invoice", "--node", name, "--amount-msat", "50000", "--state-dir", sd, "--json"
    )
    assert code == 0, err
    invoice = json.loads(out)
    stored = running.stack.network.lookup_invoice(name, invoice["payment_hash"])
    assert stored is not None and stored.amount_msat == 50000


def test_add_node_refuses_a_taken_name_and_a_bad_one(running: RunningStack) -> None:
    from services.sim.jsonrpc import RpcFailure

    _control(running, "add_node", {"name": "wallet-once"})
    for params, words in (
        ({"name": "wallet-once"}, "exists"),
        ({"name": "us-lnd"}, "exists"),
        ({"name": "Bad Name"}, "name:"),
        ({"name": "wallet-x", "implementation": "eclair"}, "implementation"),
    ):
        with pytest.raises(RpcFailure) as refused:
            _control(running, "add_node", params)
        assert words in refused.value.message
    assert running.stack.network.node("wallet-once").role == "wallet"
