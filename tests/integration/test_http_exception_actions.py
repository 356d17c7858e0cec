"""The exception queue's actions over HTTP (ADR 0161): operators only; acknowledging with no
open anomaly is the engine's refusal, carried as the NATS code (so the gateway may send the
command); reprocessing what awaits no evidence changes nothing and says so. The reprocess core
itself is the CLI's (``reprocess_intent``), proven in ``test_exception_actions.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.test_http_api import Api, api_stack, error_of, intent


@pytest.fixture
async def api(tmp_path: Path, identity_home: Path, database_url: str) -> AsyncIterator[Api]:
    async with api_stack(tmp_path, identity_home, database_url, executors=False) as stack:
        yield stack


async def test_acknowledge_and_reprocess_over_http(api: Api) -> None:
    async with api.client("alice") as alice, api.client("op-a") as operator:
        created = await alice.post("/v1/intents", json=intent(), headers={"Idempotency-Key": "x"})
        intent_id = created.json()["intent_id"]
        body = {"reason": "checked with the payee"}
        refused = await alice.post(f"/v1/exceptions/{intent_id}/acknowledge", json=body)
        assert error_of(refused)[:2] == (403, "forbidden")
        nothing = await operator.post(f"/v1/exceptions/{intent_id}/acknowledge", json=body)
        assert error_of(nothing)[1] == "nothing_to_acknowledge", nothing.text
        events = await api.engine.store.read_stream(intent_id)
        assert "AnomalyAcknowledged" not in [e.type for e in events]

        again = await operator.post(f"/v1/exceptions/{intent_id}/reprocess")
        assert again.status_code == 200, again.text
        assert again.json()["action"] == "none"
        assert await api.engine.store.read_stream(intent_id) == events
        too_long = await operator.post(f"/v1/exceptions/{intent_id}/acknowledge",
                                       json={"reason": "x" * 10_000})  # fmt: skip
        assert error_of(too_long)[0] == 400
