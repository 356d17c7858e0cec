"""Receives and channel operations over HTTP (ADR 0238): the same engine commands as the CLI's,
forwarded as the API key's identity, with the same idempotency and structured errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from services.http.openapi import DOCUMENT, render
from tests.conftest import wait_for
from tests.integration.test_http_api import Api, api_stack, error_of

OPEN_TIMEOUT_S = 30.0


async def _state(client: httpx.AsyncClient, path: str) -> str | None:
    read = await client.get(path)
    return read.json().get("state") if read.status_code == 200 else None


def _facts(view: dict[str, Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for event in view.get("events") or []:
        facts.update(event.get("data") or {})
    return facts


def _open(api: Api, amount_msat: int, **extra: Any) -> dict[str, Any]:
    assert api.sim is not None
    return {"region": "us", "node": "us-lnd", "peer_pubkey": api.sim.network.node("hub-us").pubkey,
            "local_amount_msat": amount_msat, "sat_per_vbyte": 2,
            "max_onchain_fee_msat": 1_000_000, **extra}  # fmt: skip


async def test_receives_and_channel_operations_over_http(
    tmp_path: Path, identity_home: Path, database_url: str
) -> None:
    async with api_stack(tmp_path, identity_home, database_url, executors=True) as api:
        receive = {"amount_msat": 25_000, "memo": "over http", "region": "us"}
        async with api.client("alice") as alice, api.client("bob") as bob:
            created = await alice.post("/v1/receives", json=receive,
                                       headers={"Idempotency-Key": "r1"})  # fmt: skip
            assert created.status_code == 201, created.text
            receive_id = created.json()["intent_id"]
            again = await alice.post("/v1/receives", json=receive,
                                     headers={"Idempotency-Key": "r1"})  # fmt: skip
            assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
            assert again.json()["intent_id"] == receive_id
            other = await alice.post("/v1/receives", json={**receive, "amount_msat": 1},
                                     headers={"Idempotency-Key": "r1"})  # fmt: skip
            assert error_of(other)[:2] == (409, "idempotency_mismatch"), other.text
            bad = await alice.post("/v1/receives", json={**receive, "amount_msat": -5},
                                   headers={"Idempotency-Key": "r2"})  # fmt: skip
            assert error_of(bad) == (400, "schema_violation", "amount_msat"), bad.text
            await wait_for(
                lambda: _issued(alice, receive_id), timeout_s=OPEN_TIMEOUT_S, what="the invoice"
            )
            view = (await alice.get(f"/v1/receives/{receive_id}")).json()
            assert _facts(view)["payment_request"].startswith("ln")
            assert (await bob.get(f"/v1/receives/{receive_id}")).status_code == 404
            refused = await alice.post("/v1/channels/open", json=_open(api, 1_000_000_000),
                                       headers={"Idempotency-Key": "c1"})  # fmt: skip
            assert error_of(refused)[:2] == (403, "forbidden"), refused.text

        async with api.client("op-a") as op_a, api.client("op-b") as op_b:
            opened = await op_a.post("/v1/channels/open", json=_open(api, 1_000_000_000),
                                     headers={"Idempotency-Key": "c1"})  # fmt: skip
            assert opened.status_code == 201 and opened.json()["state"] == "requested", opened.text
            op_id = opened.json()["intent_id"]
            replay = await op_a.post("/v1/channels/open", json=_open(api, 1_000_000_000),
                                     headers={"Idempotency-Key": "c1"})  # fmt: skip
            assert replay.status_code == 200 and replay.json()["intent_id"] == op_id
            changed = await op_a.post("/v1/channels/open", json=_open(api, 2_000_000_000),
                                      headers={"Idempotency-Key": "c1"})  # fmt: skip
            assert error_of(changed) == (409, "idempotency_key_reused", "idempotency_key")

            async def completed() -> bool:
                return await _state(op_b, f"/v1/channels/{op_id}") == "completed"

            await wait_for(completed, timeout_s=OPEN_TIMEOUT_S, what="the open over http")
            # Above the auto limit: waits; the requester cannot approve; another declines.
            big = await op_a.post("/v1/channels/open", json=_open(api, 20_000_000_000),
                                  headers={"Idempotency-Key": "c2"})  # fmt: skip
            assert big.status_code == 201 and big.json()["state"] == "requested", big.text
            big_id = big.json()["intent_id"]
            own = await op_a.post(f"/v1/channels/{big_id}/approve", json={"note": "mine"})
            assert error_of(own) == (403, "two_person_rule", "operator_id"), own.text
            declined = await op_b.post(f"/v1/channels/{big_id}/reject", json={"reason": "no"})
            assert declined.status_code == 200 and declined.json()["state"] == "rejected"
            late = await op_a.post(f"/v1/channels/{big_id}/approve", json={"note": "x"})
            assert error_of(late)[:2] == (409, "already_decided"), late.text
            missing = await op_b.get("/v1/channels/chop-nothing")
            assert missing.status_code == 404, missing.text


async def _issued(client: httpx.AsyncClient, receive_id: str) -> bool:
    return await _state(client, f"/v1/receives/{receive_id}") in ("issued", "paid")


def test_the_checked_in_openapi_document_has_the_new_windows() -> None:
    assert DOCUMENT.read_text() == render()
    paths = __import__("json").loads(render())["paths"]
    for path in ("/v1/receives", "/v1/receives/{intent_id}", "/v1/channels/open",
                 "/v1/channels/close", "/v1/channels/{op_id}/approve"):  # fmt: skip
        assert path in paths, sorted(paths)
