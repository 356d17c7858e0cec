"""Webhook endpoints over HTTP (issue 16, ADR 0175): a caller registers (the secret in that one
reply, and it signs as Standard Webhooks says), lists without secrets, reads its settlement
history from a position (another caller's never), and removes; operators cannot register."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from tests.conftest import wait_for
from tests.integration.test_http_api import SETTLE_TIMEOUT_S, api_stack, error_of

AMOUNT_MSAT = 60_000


async def test_register_list_history_and_remove_over_http(
    tmp_path: Path, identity_home: Path, database_url: str
) -> None:
    async with api_stack(tmp_path, identity_home, database_url, executors=True) as api:
        assert api.sim is not None
        async with api.client("alice") as alice, api.client("bob") as bob, \
                api.client("op-a") as operator:  # fmt: skip
            hook = {
                "url": "https://hooks.example.com/corridor",
                "event_types": ["IntentSettled", "IntentFailed"],
                "idempotency_key": "h-1",
            }
            created = await alice.post("/v1/webhooks", json=hook)
            assert created.status_code == 201, created.text
            reply = created.json()
            secret, endpoint_id = reply["secret"], reply["endpoint_id"]
            signed = Webhook(secret).sign("msg_1", datetime.now(tz=UTC), "{}")
            assert signed.startswith("v1,")
            assert error_of(await operator.post("/v1/webhooks", json=hook))[:2] == (
                403,
                "forbidden",
            )

            listed = (await alice.get("/v1/webhooks")).json()
            assert [e["endpoint_id"] for e in listed["endpoints"]] == [endpoint_id]
            assert secret not in str(listed)
            assert (await bob.get("/v1/webhooks")).json()["endpoints"] == []

            invoice = api.sim.network.create_invoice("merchant-02", AMOUNT_MSAT, "hook", 3600)
            body = {"corridor": "us-eu", "amount_msat": AMOUNT_MSAT, "max_fee_msat": 10_000,
                    "payment_request": invoice.bolt11}  # fmt: skip
            posted = await alice.post("/v1/intents", json=body, headers={"Idempotency-Key": "p"})
            intent_id = posted.json()["intent_id"]
            assert posted.json()["state"] == "dispatched", posted.json()

            async def in_history() -> list[dict[str, object]] | None:
                page = (await alice.get("/v1/webhooks/history", params={"from_position": 1})).json()
                return page["entries"] or None

            entries = await wait_for(in_history, timeout_s=SETTLE_TIMEOUT_S,
                                     what="the settlement in the history")  # fmt: skip
            kinds = [(e["payload"]["type"], e["payload"]["data"]["intent_id"]) for e in entries]
            assert kinds == [("IntentSettled", intent_id)], entries
            after_it = {"from_position": entries[0]["position"] + 1}
            later = (await alice.get("/v1/webhooks/history", params=after_it)).json()
            assert later == {"entries": [], "next_position": None}
            assert (await bob.get("/v1/webhooks/history")).json()["entries"] == []

            removed = await alice.delete(f"/v1/webhooks/{endpoint_id}")
            assert removed.status_code == 200, removed.text
            after = (await alice.get("/v1/webhooks")).json()["endpoints"]
            assert [(e["endpoint_id"], e["active"]) for e in after] == [(endpoint_id, False)]
            assert error_of(await bob.delete(f"/v1/webhooks/{endpoint_id}"))[0] in (404, 422)
