"""``corridor creds`` end to end against ``corridor up`` (ADR 0060): a new caller's credential
works at once, shows in the list without its secret, and a revocation closes its open
connection and refuses it from then on, with nothing restarted."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest

from services.endpoints import add_entries
from services.identity.nats_auth import read_public_key
from tests.conftest import wait_for
from tests.e2e.test_cli import run_cli, running_stack
from tests.nats_creds import connect_as

DESTINATION = "02" + "22" * 32
# The engine re-reads the registry file at most once a second (services/identity/lookup.py):
# a credential added a moment ago may be unknown to it for that long.
ENGINE_SEES_REGISTRY_S = 10.0


def _submit(sd: list[str], creds: Path, key: str) -> tuple[int, str, str]:
    done = run_cli(
        "submit", *sd, "--creds", str(creds), "--idempotency-key", key, "--amount-msat", "21000",
        "--destination", DESTINATION, "--max-fee-msat", "10000", "--json",
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def _submitted(sd: list[str], creds: Path, key: str) -> dict[str, object]:
    """The reply to a submit as ``creds``, once the engine knows the credential."""
    deadline = time.monotonic() + ENGINE_SEES_REGISTRY_S
    while True:
        code, out, err = _submit(sd, creds, key)
        reply = json.loads(out) if out else {}
        unknown = not reply.get("ok") and reply.get("error", {}).get("code") == "forbidden"
        if not unknown or time.monotonic() > deadline:
            assert code == 0, err + out
            return dict(reply)


async def _http_status(url: str, headers: dict[str, str], *, want: int | None = None) -> object:
    async with httpx.AsyncClient(headers=headers) as client:
        status = (await client.get(url)).status_code
    return status if want is None else status == want


async def test_add_list_and_revoke_a_caller(tmp_path: Path) -> None:
    acme = tmp_path / "acme.nk"
    with running_stack(tmp_path / "state") as state_dir:
        sd = ["--state-dir", str(state_dir)]
        endpoints = json.loads((state_dir / "endpoints.json").read_text())
        assert endpoints["nats_auth"] == "nkey"

        async def quiet(_: Exception) -> None:
            return None

        with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
            await nats.connect(
                endpoints["nats_url"], nkeys_seed=None, allow_reconnect=False, error_cb=quiet
            )

        added = run_cli("creds", "add", "--role", "caller", "--id", "acme", "--kind", "human",
                        "--out", str(acme), *sd, "--json")  # fmt: skip
        assert added.returncode == 0, added.stderr
        record = json.loads(added.stdout)
        assert (record["role"], record["id"], record["kind"]) == ("caller", "acme", "human")
        assert record["public_key"] == read_public_key(acme)
        assert "reloaded" in record["served"]
        assert stat.S_IMODE(acme.stat().st_mode) == 0o600
        seed = acme.read_text().strip()
        assert seed.startswith("SU") and seed not in added.stdout
        # The HTTP API key beside it (ADR 0171): the same identity, the bare token, 0600.
        token_file = tmp_path / "acme.nk.http"
        assert record["api_key_file"] == str(token_file)
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert (
            token not in added.stdout
            and token not in (state_dir / "auth").joinpath("credentials.json").read_text()
        )

        again = run_cli("creds", "add", "--role", "caller", "--id", "acme", "--out",
                        str(tmp_path / "again.nk"), *sd)  # fmt: skip
        assert again.returncode == 2 and "already exists" in again.stderr

        listed = run_cli("creds", "list", *sd, "--json")
        assert listed.returncode == 0, listed.stderr
        live = {(c["role"], c["id"]) for c in json.loads(listed.stdout) if not c["revoked"]}
        assert live >= {("caller", "acme"), ("caller", "local"), ("operator", "operator-1"),
                        ("operator", "operator-2"), ("auditor", "auditor-1"),
                        ("engine", "engine-1")}  # fmt: skip
        seeds = [p.read_text().strip() for p in (state_dir / "auth").glob("*.nk")]
        table = run_cli("creds", "list", *sd).stdout
        assert not any(s in listed.stdout or s in table for s in [*seeds, seed])

        # No --caller-id: the subject and the payload name the credential's caller.
        reply = await asyncio.to_thread(_submitted, sd, acme, "acme-1")
        assert reply["ok"], reply
        # Reads name their reader (get.caller.acme); a caller is not an operator.
        shown = run_cli("get", str(reply["intent_id"]), *sd, "--creds", str(acme), "--json")
        assert shown.returncode == 0 and json.loads(shown.stdout)["ok"], shown.stderr
        started = time.monotonic()
        approve = run_cli("approve", str(reply["intent_id"]), *sd, "--creds", str(acme),
                          "--operator-id", "acme")  # fmt: skip
        assert approve.returncode == 2, approve.stderr
        assert "does not let the credential" in approve.stderr
        assert "corridor.api.v1.intents.approve.acme" in approve.stderr
        assert time.monotonic() - started < 10  # refused at once, not after a timeout
        http_read = f"{endpoints['http_url']}/v1/intents/{reply['intent_id']}"
        bearer = {"Authorization": f"Bearer {token}"}
        assert await _http_status(http_read, bearer) == 200

        holder = await connect_as(
            endpoints["nats_url"], acme, error_cb=quiet, max_reconnect_attempts=2,
            reconnect_time_wait=0.1,
        )  # fmt: skip
        try:
            revoked = await asyncio.to_thread(
                run_cli, "creds", "revoke", "--role", "caller", "--id", "acme", *sd
            )
            assert revoked.returncode == 0, revoked.stderr
            assert "reloaded" in revoked.stdout
            await wait_for(lambda: not holder.is_connected, timeout_s=5, what="acme cut off")
        finally:
            await holder.close()
        code, _, err = await asyncio.to_thread(_submit, sd, acme, "acme-2")
        assert code == 2 and "refused the credential" in err, err
        listed = json.loads(run_cli("creds", "list", *sd, "--json").stdout)
        assert [c["revoked"] for c in listed if c["id"] == "acme"] == [True]
        # The revoked key stops working over HTTP too, without a restart.
        await wait_for(
            lambda: _http_status(http_read, bearer, want=401),
            timeout_s=5, what="the revoked API key refused",
        )  # fmt: skip


def test_executor_credentials_and_mistakes(tmp_path: Path) -> None:
    sd = ["--state-dir", str(tmp_path / "state")]
    out = tmp_path / "eu.nk"
    missing = run_cli("creds", "add", "--role", "executor", "--node", "eu-lnd", "--out", str(out),
                      *sd)  # fmt: skip
    assert missing.returncode == 2 and "region" in missing.stderr
    assert not out.exists()
    added = run_cli("creds", "add", "--role", "executor", "--region", "eu", "--node", "eu-lnd",
                    "--out", str(out), *sd, "--json")  # fmt: skip
    assert added.returncode == 0, added.stderr
    record = json.loads(added.stdout)
    assert (record["id"], record["region"], record["node"]) == ("eu-lnd", "eu", "eu-lnd")
    assert "no running `corridor up`" in record["served"]

    kind = run_cli("creds", "add", "--role", "operator", "--id", "op", "--kind", "human",
                   "--out", str(tmp_path / "op.nk"), *sd)  # fmt: skip
    assert kind.returncode == 2 and "--kind" in kind.stderr
    exists = run_cli("creds", "add", "--role", "auditor", "--id", "aud", "--out", str(out), *sd)
    assert exists.returncode == 2 and "never overwritten" in exists.stderr
    unknown = run_cli("creds", "revoke", "--role", "caller", "--id", "nobody", *sd)
    assert unknown.returncode == 2 and "no live caller nobody" in unknown.stderr
    bad = tmp_path / "bad.nk"
    bad.write_text("not a seed\n")
    add_entries(tmp_path / "state", {"nats_url": "nats://127.0.0.1:1"})
    refused = run_cli("get", "x", "--creds", str(bad), *sd)
    assert refused.returncode == 2 and "bad.nk: not an nkey seed" in refused.stderr
