"""The HTTP API over real NATS, PostgreSQL, the engine, simulated nodes and executors.

The engine checks identities against a registry file (ADR 0061); the API's process connects as
a ``gateway`` credential (ADR 0172) to a nats-server that enforces each role's permissions, and
follows the same registry file for API keys (ADR 0171).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Engine, bootstrap
from services.cli.endpoints import write_endpoints
from services.devstack.nats import NatsServer
from services.executor.fleet import ExecutorFleet, targets_from_corridors
from services.http.limits import BODY_BYTES_MAX, IDEMPOTENCY_KEY_CHARS_MAX
from services.http.openapi import DOCUMENT
from services.http.server import serving
from services.identity import nats_auth
from services.identity.api_keys import http_path, read_token
from services.identity.lookup import RegistryFile
from services.identity.registry import load_registry, registry_path, save_registry
from services.settings import Settings
from services.sim.runner import SimStack
from tests.conftest import session_registry, wait_for
from tests.integration.test_pipeline import FAST

# Above a service caller's review band (10,000 sat, services/policy/default.yaml): approval.
APPROVAL_MSAT = 15_000_000
MAX_FEE_MSAT = 50_000
DESTINATION = "02" + "11" * 32
SETTLE_TIMEOUT_S = 20.0

# (role, id, kind): the principals with API keys in these tests.
PRINCIPALS = (
    ("caller", "alice", "service"),
    ("caller", "bob", "service"),
    ("operator", "op-a", None),
    ("operator", "op-b", None),
    ("auditor", "aud-1", None),
)


@dataclass
class Api:
    url: str
    keys: dict[str, str]  # id -> bearer token
    home: Path
    engine: Engine
    sim: SimStack | None

    def client(self, who: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


def _registry(home: Path, identity_home: Path, targets: list[tuple[str, str]]) -> dict[str, str]:
    """The harness's engine credential, a gateway, the principals with API keys and one
    executor per node; the bearer tokens by id."""
    save_registry(registry_path(home), session_registry(identity_home))
    nats_auth.issue(home, role="gateway", ident="http", out=home / "gateway.nk")
    keys = {}
    for role, ident, kind in PRINCIPALS:
        out = home / f"{role}-{ident}.nk"
        nats_auth.issue(home, role=role, ident=ident, out=out, kind=kind, api_key=True)  # type: ignore[arg-type]
        keys[ident] = read_token(http_path(out))
    for region, node in targets:
        nats_auth.issue(home, role="executor", ident=node, region=region, node=node,
                        out=home / f"executor-{node}.nk")  # fmt: skip
    return keys


@contextlib.asynccontextmanager
async def api_stack(
    tmp_path: Path, identity_home: Path, database_url: str, *, executors: bool
) -> AsyncIterator[Api]:
    settings = Settings(
        relay_poll_s=0.2, health_interval_s=0.2, pay_timeout_s=5, state_dir=tmp_path
    )
    targets = targets_from_corridors(settings.corridors)
    home = tmp_path / "identity"
    keys = _registry(home, identity_home, targets)
    server = NatsServer(tmp_path / "nats", registry=load_registry(registry_path(home)))
    await asyncio.to_thread(server.start)
    exits = contextlib.AsyncExitStack()
    try:
        sim = None
        if executors:
            sim = SimStack(state_dir=tmp_path / "sim", seed=11)
            await sim.start()
            exits.push_async_callback(sim.stop)
            write_endpoints(tmp_path, {"nats_url": server.url, **sim.endpoints()})
        engine = await bootstrap(
            settings, nats_url=server.url, database_url=database_url,
            credentials=RegistryFile(registry_path(home)),
        )  # fmt: skip
        await engine.start()
        exits.push_async_callback(engine.stop)
        if executors:
            fleet = ExecutorFleet(nats_url=server.url, state_dir=tmp_path, targets=targets,
                                  limits=FAST)  # fmt: skip
            await fleet.start()
            exits.push_async_callback(fleet.stop)
        served = await exits.enter_async_context(
            serving(
                nats_url=server.url, database_url=database_url,
                registry_file=registry_path(home), creds=home / "gateway.nk",
            )
        )  # fmt: skip
        yield Api(url=served.url, keys=keys, home=home, engine=engine, sim=sim)
    finally:
        await exits.aclose()
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def api(tmp_path: Path, identity_home: Path, database_url: str) -> AsyncIterator[Api]:
    async with api_stack(tmp_path, identity_home, database_url, executors=False) as stack:
        yield stack


def intent(**extra: Any) -> dict[str, Any]:
    return {"corridor": "us-eu", "amount_msat": 50_000, "max_fee_msat": 1_000,
            "destination": DESTINATION, **extra}  # fmt: skip


def error_of(response: httpx.Response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["field"]


async def test_the_same_key_and_body_give_the_same_intent_and_another_body_409(api: Api) -> None:
    async with api.client("alice") as alice:
        first = await alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "k1"})
        assert first.status_code == 201, first.text
        again = await alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "k1"})
        assert again.status_code == 200, again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["intent_id"] == first.json()["intent_id"]
        changed = await alice.post(
            "/v1/intents", json=intent(amount_msat=60_000), headers={"Idempotency-Key": "k1"}
        )
        assert error_of(changed)[:2] == (409, "idempotency_mismatch")
        # The caller given explicitly, as the key's own: the same command.
        explicit = intent(caller={"id": "alice", "kind": "service"})
        same = await alice.post("/v1/intents", json=explicit, headers={"Idempotency-Key": "k1"})
        assert same.json()["intent_id"] == first.json()["intent_id"]
    # Another caller's same key is another intent: keys are per caller.
    async with api.client("bob") as bob:
        other = await bob.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "k1"})
        assert other.status_code == 201, other.text
        assert other.json()["intent_id"] != first.json()["intent_id"]


async def test_no_key_or_a_bad_key_is_401_and_open_paths_answer(api: Api) -> None:
    async with httpx.AsyncClient(base_url=api.url) as anonymous:
        refused = await anonymous.post("/v1/intents", json=intent(),
                                       headers={"Idempotency-Key": "k"})  # fmt: skip
        assert error_of(refused)[:2] == (401, "unauthorized")
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        bad = await anonymous.get("/v1/intents/x", headers={"Authorization": "Bearer ck_not-a-key"})
        assert error_of(bad)[:2] == (401, "unauthorized")
        assert "ck_not-a-key" not in bad.text
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await anonymous.get(path)).status_code == 200, path
        served = (await anonymous.get("/openapi.json")).json()
        assert served == json.loads(DOCUMENT.read_text())


async def test_a_caller_other_than_the_keys_is_403(api: Api) -> None:
    async with api.client("alice") as alice:
        forged = await alice.post(
            "/v1/intents", json=intent(caller={"id": "bob", "kind": "service"}),
            headers={"Idempotency-Key": "forged"},
        )  # fmt: skip
        assert error_of(forged) == (403, "identity_mismatch", "caller.id")


async def test_another_callers_intent_is_404_and_operators_read_all(api: Api) -> None:
    async with api.client("alice") as alice:
        created = await alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "r"})
        intent_id = created.json()["intent_id"]
        own = await alice.get(f"/v1/intents/{intent_id}")
        assert own.status_code == 200 and own.json()["intent_id"] == intent_id
        timeline = await alice.get(f"/v1/intents/{intent_id}/timeline")
        assert timeline.status_code == 200, timeline.text
        assert timeline.json()["timeline"][0]["type"] == "IntentReceived"
    async with api.client("bob") as bob:
        assert error_of(await bob.get(f"/v1/intents/{intent_id}"))[:2] == (404, "not_found")
        hidden = await bob.get(f"/v1/intents/{intent_id}/timeline")
        assert error_of(hidden)[:2] == (404, "not_found")
    for reader in ("op-a", "aud-1"):
        async with api.client(reader) as client:
            assert (await client.get(f"/v1/intents/{intent_id}")).status_code == 200
            assert (await client.get(f"/v1/intents/{intent_id}/timeline")).status_code == 200


async def test_bad_bodies_are_400_with_the_field_and_too_large_is_413(api: Api) -> None:
    async with api.client("alice") as alice:
        wrong = await alice.post("/v1/intents", json=intent(amount_msat="lots"),
                                 headers={"Idempotency-Key": "b1"})  # fmt: skip
        assert error_of(wrong) == (400, "schema_violation", "amount_msat")
        missing = await alice.post("/v1/intents", json={"corridor": "us-eu"},
                                   headers={"Idempotency-Key": "b2"})  # fmt: skip
        assert error_of(missing)[:2] == (400, "missing_field")
        assert error_of(missing)[2] in ("amount_msat", "max_fee_msat")
        # Both a payment request and a destination: the engine's own check, its field.
        both = await alice.post("/v1/intents", json=intent(payment_request="lnbc1"),
                                headers={"Idempotency-Key": "b3"})  # fmt: skip
        assert both.status_code == 400, both.text
        no_key = await alice.post("/v1/intents", json=intent())
        assert error_of(no_key) == (400, "missing_field", "Idempotency-Key")
        too_long = "k" * (IDEMPOTENCY_KEY_CHARS_MAX + 1)
        long_key = await alice.post(
            "/v1/intents", json=intent(), headers={"Idempotency-Key": too_long}
        )
        assert long_key.status_code == 400
        huge = await alice.post(
            "/v1/intents", json=intent(metadata={"note": "x" * BODY_BYTES_MAX}),
            headers={"Idempotency-Key": "b4"},
        )  # fmt: skip
        assert error_of(huge)[:2] == (413, "payload_too_large")
        assert error_of(await alice.post("/v1/intents", content=b"{nope",
                                         headers={"Idempotency-Key": "b5",
                                                  "Content-Type": "application/json"}))[:2] == (
            400, "malformed_json",
        )  # fmt: skip


async def test_roles_are_enforced(api: Api) -> None:
    async with api.client("alice") as alice:
        approve = await alice.post("/v1/intents/x/approve", json={})
        assert error_of(approve)[:2] == (403, "forbidden")
        assert error_of(await alice.get("/v1/exceptions"))[:2] == (403, "forbidden")
    async with api.client("op-a") as operator:
        submit = await operator.post("/v1/intents", json=intent(),
                                     headers={"Idempotency-Key": "op"})  # fmt: skip
        assert error_of(submit)[:2] == (403, "forbidden")
        listed = await operator.get("/v1/dlq")
        assert listed.status_code == 200, listed.text
        assert (await operator.get("/v1/exceptions")).json() == {"exceptions": []}


async def test_a_revoked_key_is_refused_without_a_restart(api: Api) -> None:
    async with api.client("alice") as alice:
        assert (await alice.get("/v1/intents/none")).status_code == 404
        nats_auth.revoke(api.home, role="caller", ident="alice")

        async def refused() -> bool:
            return (await alice.get("/v1/intents/none")).status_code == 401

        await wait_for(refused, what="the revoked key to be refused")


async def test_no_engine_is_503_with_retry_after(api: Api) -> None:
    await api.engine.stop()
    async with api.client("alice") as alice:
        response = await alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "u"})
    assert error_of(response)[:2] == (503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0


async def test_an_intent_approved_over_http_settles(
    tmp_path: Path, identity_home: Path, database_url: str
) -> None:
    async with api_stack(tmp_path, identity_home, database_url, executors=True) as api:
        assert api.sim is not None
        invoice = api.sim.network.create_invoice("merchant-02", APPROVAL_MSAT, "http", 3600)
        assert invoice.bolt11 is not None
        body = {"corridor": "us-eu", "amount_msat": APPROVAL_MSAT, "max_fee_msat": MAX_FEE_MSAT,
                "payment_request": invoice.bolt11}  # fmt: skip
        async with api.client("alice") as alice:
            created = await alice.post("/v1/intents", json=body, headers={"Idempotency-Key": "a"})
            assert created.status_code == 201, created.text
            assert created.json()["state"] == "awaiting_approval", created.json()
            intent_id = created.json()["intent_id"]
        async with api.client("op-a") as operator:
            approved = await operator.post(f"/v1/intents/{intent_id}/approve",
                                           json={"note": "known payee"})  # fmt: skip
            assert approved.status_code == 200, approved.text

            async def settled() -> bool:
                read = await operator.get(f"/v1/intents/{intent_id}")
                return bool(read.json().get("state") == "settled")

            await wait_for(
                settled, timeout_s=SETTLE_TIMEOUT_S, what="the approved intent to settle"
            )
            timeline = (await operator.get(f"/v1/intents/{intent_id}/timeline")).json()
        types = [row["type"] for row in timeline["timeline"]]
        assert "IntentApproved" in types, types
        paid = [p for p in api.sim.network.payments()
                if p.payment_hash == invoice.payment_hash and p.status == "succeeded"]  # fmt: skip
        assert len(paid) == 1


async def test_concurrent_submits_with_one_key_make_one_intent(api: Api) -> None:
    async with api.client("alice") as alice:
        replies = await asyncio.gather(
            *(alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "race"})
              for _ in range(8))
        )  # fmt: skip
    assert all(r.status_code in (200, 201) for r in replies), [r.text for r in replies]
    assert len({r.json()["intent_id"] for r in replies}) == 1


async def test_operators_reject_and_change_policy_under_the_two_person_rule(api: Api) -> None:
    async with api.client("alice") as alice:
        big = intent(amount_msat=APPROVAL_MSAT, max_fee_msat=MAX_FEE_MSAT)
        created = await alice.post("/v1/intents", json=big, headers={"Idempotency-Key": "rj"})
        assert created.json()["state"] == "awaiting_approval", created.text
        intent_id = created.json()["intent_id"]
    async with api.client("aud-1") as auditor:
        refused = await auditor.post(f"/v1/intents/{intent_id}/reject", json={"reason": "no"})
        assert error_of(refused)[:2] == (403, "forbidden")
    async with api.client("op-a") as op_a, api.client("op-b") as op_b:
        rejected = await op_a.post(f"/v1/intents/{intent_id}/reject",
                                   json={"reason": "unknown payee"})  # fmt: skip
        assert rejected.status_code == 200 and rejected.json()["state"] == "rejected"
        again = await op_b.post(f"/v1/intents/{intent_id}/approve", json={})
        assert error_of(again)[:2] == (409, "invalid_transition")

        document = (await op_a.get("/v1/policy")).json()["document"]
        document["version"] = 2
        proposed = await op_a.post("/v1/policy/proposals",
                                   json={"policy_version": 2, "document": document})  # fmt: skip
        assert proposed.status_code == 200, proposed.text
        own = await op_a.post("/v1/policy/proposals/2/approve", json={})
        assert error_of(own)[:2] == (403, "two_person_rule")
        approved = await op_b.post("/v1/policy/proposals/2/approve", json={"note": "ok"})
        assert approved.json()["active_version"] == 2, approved.text
