"""The request/reply API over real NATS and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError

from services.bootstrap import Engine, bootstrap
from services.settings import Settings
from tests.factories import invoice, submit

SUBMIT = "corridor.api.v1.intents.submit.{caller}"


async def request(
    nc: Client, subject: str, body: Any, *, raw: bytes | None = None
) -> dict[str, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    # nats-server 2.12+ sometimes answers "no responders" to the first request after an engine
    # restarts, though the engine flushed its subscription (infra-notes); a caller retries that,
    # so the test does too, within a deadline. Any other error still fails the test.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            msg = await nc.request(subject, data, timeout=10)
        except NoRespondersError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)  # a retry interval, not a synchronisation
            continue
        return json.loads(msg.data)


async def test_submit_commits_then_replies(engine: Engine, nc: Client) -> None:
    reply = await request(nc, SUBMIT.format(caller="alice"), submit())
    assert reply["ok"] is True and reply["duplicate"] is False
    assert reply["state"] == "dispatched"
    # The reply came after commit: the events are already in PostgreSQL.
    stream = await engine.store.read_stream(reply["intent_id"])
    assert [e.type for e in stream] == [
        "IntentReceived", "IntentPolicyChecked", "IntentRouted", "IntentDispatched",
    ]  # fmt: skip
    assert stream[0].metadata["actor"] == "caller:alice"


async def test_submit_with_invoice(engine: Engine, nc: Client) -> None:
    bolt11, payment_hash, _ = invoice(amount_msat=50_000)
    reply = await request(
        nc, SUBMIT.format(caller="alice"), submit(payment_request=bolt11, destination=None)
    )
    assert reply["ok"], reply
    received = (await engine.store.read_stream(reply["intent_id"]))[0].payload
    assert received["invoice"]["payment_hash"] == payment_hash
    assert received["invoice"]["network"] == "regtest"


async def test_invoice_checks(engine: Engine, nc: Client) -> None:
    subject = SUBMIT.format(caller="alice")
    cases = {
        "invoice_amount_mismatch": (invoice(amount_msat=49_000, label="a")[0], "amount_msat"),
        "wrong_network": (invoice(network="mainnet", label="b")[0], "payment_request"),
        "invoice_expired": (
            invoice(created_at_s=1_600_000_000, expiry_s=60, label="c")[0], "payment_request",
        ),
        "invalid_invoice": ("lnbcrt1notaninvoice", "payment_request"),
    }  # fmt: skip
    for i, (code, (bolt11, field)) in enumerate(cases.items()):
        body = submit(key=f"inv-{i}", payment_request=bolt11, destination=None)
        reply = await request(nc, subject, body)
        assert reply["ok"] is False, (code, reply)
        assert reply["error"]["code"] == code, reply
        assert reply["error"]["field"] == field, reply
    assert await engine.store.head_position() == 0


async def test_same_key_same_request_is_a_duplicate(engine: Engine, nc: Client) -> None:
    first = await request(nc, SUBMIT.format(caller="alice"), submit())
    again = await request(nc, SUBMIT.format(caller="alice"), submit())
    assert again == {**first, "duplicate": True}
    assert await engine.store.head_position() == 4


async def test_same_key_different_request_is_a_mismatch(engine: Engine, nc: Client) -> None:
    await request(nc, SUBMIT.format(caller="alice"), submit())
    reply = await request(nc, SUBMIT.format(caller="alice"), submit(amount_msat=60_000))
    assert reply["ok"] is False
    assert reply["error"]["code"] == "idempotency_mismatch"
    assert reply["error"]["field"] == "idempotency_key"


async def test_same_key_other_caller_is_another_intent(engine: Engine, nc: Client) -> None:
    a = await request(nc, SUBMIT.format(caller="alice"), submit())
    b = await request(nc, SUBMIT.format(caller="bob"), submit(caller_id="bob"))
    assert a["intent_id"] != b["intent_id"]


async def test_concurrent_duplicates_make_exactly_one_intent(engine: Engine, nc: Client) -> None:
    replies = await asyncio.gather(
        *(request(nc, SUBMIT.format(caller="alice"), submit(key="same")) for _ in range(50))
    )
    assert {r["intent_id"] for r in replies} == {replies[0]["intent_id"]}
    assert sum(1 for r in replies if not r["duplicate"]) == 1
    async with engine.store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(DISTINCT stream_id) FROM events") == 1
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 1


async def test_concurrent_duplicates_across_two_engines(
    engine: Engine, nats_url: str, database_url: str, nc: Client
) -> None:
    """Two engine instances on one database: the store, not a cache, decides."""
    other = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await other.start(relay=False)
    try:
        replies = await asyncio.gather(
            *(
                request(nc, SUBMIT.format(caller="alice"), submit(key=f"k{i % 5}"))
                for i in range(60)
            )
        )
    finally:
        await other.stop()
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]]
    assert len({r["intent_id"] for r in replies}) == 5
    assert sum(1 for r in replies if not r["duplicate"]) == 5
    async with engine.store.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM idempotency_keys") == 5
        assert await conn.fetchval("SELECT count(*) FROM events") == 20


async def test_bad_input_gets_a_coded_error_and_nothing_is_written(
    engine: Engine, nc: Client
) -> None:
    subject = SUBMIT.format(caller="alice")
    cases: list[tuple[bytes, str, str | None]] = [
        (b"{not json", "malformed_json", None),
        (b"[1,2]", "malformed_json", None),
        (json.dumps({**submit(), "version": 2}).encode(), "unknown_version", "version"),
        (json.dumps({**submit(), "type": "PayEverything"}).encode(), "unknown_type", "type"),
        (json.dumps({k: v for k, v in submit().items() if k != "type"}).encode(),
         "missing_field", "type"),
        (json.dumps(submit(amount_msat=0)).encode(), "schema_violation", "amount_msat"),
        (json.dumps(submit(amount_msat=1.5)).encode(), "schema_violation", "amount_msat"),
        (json.dumps(submit(key="")).encode(), "schema_violation", "idempotency_key"),
        (json.dumps(submit(key="x" * 256)).encode(), "schema_violation", "idempotency_key"),
        (json.dumps(submit(kind="robot")).encode(), "schema_violation", "caller.kind"),
        (json.dumps(submit(metadata={f"k{i}": "v" for i in range(17)})).encode(),
         "schema_violation", "metadata"),
        (json.dumps(submit(destination=None)).encode(), "schema_violation", "payment_request"),
        (json.dumps({**submit(), "extra": 1}).encode(), "schema_violation", "extra"),
        (json.dumps(submit(caller_id="mallory")).encode(), "identity_mismatch", "caller.id"),
        (b'{"type":"SubmitPaymentIntent","version":1,"pad":"' + b"x" * 70_000 + b'"}',
         "payload_too_large", None),
    ]  # fmt: skip
    for raw, code, field in cases:
        reply = await request(nc, subject, None, raw=raw)
        assert reply["ok"] is False, raw[:80]
        assert reply["error"]["code"] == code, (raw[:80], reply)
        assert reply["error"]["field"] == field, (raw[:80], reply)
        assert reply["error"]["message"]
    assert await engine.store.head_position() == 0
    # The worker is still healthy after all of that.
    assert (await request(nc, subject, submit()))["ok"] is True


async def test_subject_verb_must_match_type(engine: Engine, nc: Client) -> None:
    reply = await request(nc, "corridor.api.v1.intents.cancel.alice", submit())
    assert reply["error"]["code"] == "subject_mismatch"


async def test_get_returns_state_and_full_history(engine: Engine, nc: Client) -> None:
    submitted = await request(nc, SUBMIT.format(caller="alice"), submit())
    view = await request(
        nc,
        "corridor.api.v1.intents.get",
        {"type": "GetPaymentIntent", "version": 1, "intent_id": submitted["intent_id"]},
    )
    assert view["ok"] and view["state"] == "dispatched" and view["stream_version"] == 4
    assert [e["stream_version"] for e in view["events"]] == [1, 2, 3, 4]
    assert view["events"][0]["type"] == "IntentReceived"
    assert view["events"][0]["data"]["amount_msat"] == 50_000
    missing = await request(
        nc, "corridor.api.v1.intents.get",
        {"type": "GetPaymentIntent", "version": 1, "intent_id": "nope"},
    )  # fmt: skip
    assert missing["error"]["code"] == "not_found"


async def test_cancel_before_dispatch_and_refusal_after(engine: Engine, nc: Client) -> None:
    engine.settings.corridors  # noqa: B018 - documents that us-eu is routable
    dispatched = await request(nc, SUBMIT.format(caller="alice"), submit())
    cancel = {
        "type": "CancelPaymentIntent", "version": 1,
        "intent_id": dispatched["intent_id"], "caller": {"id": "alice", "kind": "service"},
    }  # fmt: skip
    refused = await request(nc, "corridor.api.v1.intents.cancel.alice", cancel)
    assert refused["error"]["code"] == "invalid_transition"
    not_allowed = await request(
        nc, SUBMIT.format(caller="alice"), submit(key="k-2", corridor="xx-yy")
    )
    assert not_allowed["state"] == "rejected"
    view = await request(
        nc, "corridor.api.v1.intents.get",
        {"type": "GetPaymentIntent", "version": 1, "intent_id": not_allowed["intent_id"]},
    )  # fmt: skip
    checked = view["events"][1]["data"]
    assert checked["policy_version"] == 1
    assert any(rule["effect"] in ("reject", "deny") or "corridor" in rule["rule"]
               for rule in checked["explanation"])  # fmt: skip


async def test_spend_limit_race_lets_exactly_the_budget_through(engine: Engine, nc: Client) -> None:
    """40 agent intents race for a 20,000 sat hourly budget; each may cost 910 sat."""
    replies = await asyncio.gather(
        *(
            request(
                nc,
                SUBMIT.format(caller="bot-7"),
                submit(
                    key=f"race-{i}",
                    caller_id="bot-7",
                    kind="agent",
                    amount_msat=900_000,
                    max_fee_msat=10_000,
                ),
            )
            for i in range(40)
        )
    )
    states = [r["state"] for r in replies]
    assert states.count("dispatched") == 21  # 21 * 910,000 <= 20,000,000 < 22 * 910,000
    assert states.count("awaiting_approval") == 19


async def test_outcome_settles_and_duplicate_outcome_is_recorded(
    engine: Engine, nc: Client
) -> None:
    bolt11, payment_hash, preimage = invoice()
    submitted = await request(
        nc, SUBMIT.format(caller="alice"), submit(payment_request=bolt11, destination=None)
    )
    outcome = {
        "type": "RecordPaymentOutcome", "version": 1, "intent_id": submitted["intent_id"],
        "attempt": 1, "outcome": "succeeded", "region": "us", "node": "us-lnd",
        "payment_hash": payment_hash, "preimage": preimage, "fee_msat": 12,
    }  # fmt: skip
    # An executor's subject token is its node's name (ADR 0061).
    first = await request(nc, "corridor.api.v1.intents.outcome.us-lnd", outcome)
    assert first["state"] == "settled"
    second = await request(nc, "corridor.api.v1.intents.outcome.us-lnd", outcome)
    assert second["state"] == "settled" and second["ok"]
    types = [e.type for e in await engine.store.read_stream(submitted["intent_id"])]
    assert types[-3:] == ["PaymentSucceeded", "IntentSettled", "OutcomeIgnored"]
    stream = await engine.store.read_stream(submitted["intent_id"])
    assert stream[-1].metadata["actor"] == "executor:us-lnd"


async def test_spend_survives_an_engine_restart(
    nats_url: str, database_url: str, nc: Client
) -> None:
    def agent(i: int) -> dict[str, Any]:
        return submit(key=f"sp-{i}", caller_id="bot-8", kind="agent", amount_msat=900_000,
                      max_fee_msat=10_000)  # fmt: skip

    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        for i in range(21):
            reply = await request(nc, SUBMIT.format(caller="bot-8"), agent(i))
            assert reply.get("state") == "dispatched", (i, reply)
    finally:
        await engine.stop()
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        reply = await request(nc, SUBMIT.format(caller="bot-8"), agent(21))
    finally:
        await engine.stop()
    assert reply.get("state") == "awaiting_approval", reply


async def test_status_right_after_commit_is_never_not_found(engine: Engine, nc: Client) -> None:
    """Regression (found by `corridor bench`): between a batch's commit and the writer loop
    storing the new state, the state cache still holds the batch's "no such intent yet"
    placeholder. An executor whose work order arrived in that window was told `not_found`
    and dropped the work order, leaving the intent dispatched forever."""
    from schemas import events as ev
    from schemas.common import Caller
    from schemas.records import EventMetadata
    from services.engine.event_codec import to_new_events
    from services.engine.ids import intent_id_for

    intent_id = intent_id_for("alice", "window-1")
    processor = engine.processor
    await processor.cache.load([intent_id])  # what the writer loop does before planning a submit
    received = ev.IntentReceived(
        intent_id=intent_id, caller=Caller(id="alice", kind="service"), idempotency_key="window-1",
        corridor="us-eu", amount_msat=50_000, max_fee_msat=1_000, destination="02" + "11" * 32,
        received_at_ms=1, request_fingerprint="f",
    )  # fmt: skip
    meta = EventMetadata(correlation_id="c", causation_id="k", actor="test")
    await engine.store.append(to_new_events(intent_id, 1, [received], meta, 1))  # the commit
    reply = await processor.status(intent_id)
    assert reply.ok, reply
    assert reply.state == "received"


async def test_a_crashing_decision_fails_its_batch_but_not_the_writer_loop(
    nats_url: str, database_url: str, nc: Client
) -> None:
    from services.bootstrap import bootstrap
    from services.domain.policy import AllowAllPolicy
    from services.engine.ids import intent_id_for
    from services.settings import Settings

    class BuggyPolicy(AllowAllPolicy):
        def judge(self, command, *, now_ms, payee=None):  # type: ignore[no-untyped-def]
            if command.idempotency_key == "boom":
                raise RuntimeError("a bug in a rule")
            return super().judge(command, now_ms=now_ms, payee=payee)

    policy = BuggyPolicy()
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url,
                             policy=lambda: policy)  # fmt: skip
    await engine.start(relay=False)
    try:
        crashed = await request(nc, SUBMIT.format(caller="alice"), submit(key="boom"))
        assert crashed["error"]["code"] == "internal_error"
        fine = await request(nc, SUBMIT.format(caller="alice"), submit(key="fine"))
        assert fine["ok"] and fine["state"] == "dispatched"
        assert await engine.store.read_stream(fine["intent_id"]) != []
        boom_id = intent_id_for("alice", "boom")
        assert await engine.store.read_stream(boom_id) == []  # nothing of the crash committed
    finally:
        await engine.stop()


async def test_a_retry_of_an_intent_the_engine_does_not_cache_is_still_a_duplicate(
    nats_url: str, database_url: str, nc: Client
) -> None:
    # A submit the engine has not cached is assumed new (no read); a restarted engine caches
    # nothing, so its retries take the conflict path, mixed into a batch with new intents.
    first_engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await first_engine.start()
    try:
        first = await request(nc, SUBMIT.format(caller="alice"), submit(key="old"))
    finally:
        await first_engine.stop()
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start()
    try:
        again, changed, *new = await asyncio.gather(
            request(nc, SUBMIT.format(caller="alice"), submit(key="old")),
            request(nc, SUBMIT.format(caller="alice"), submit(key="old", amount_msat=60_000)),
            *(request(nc, SUBMIT.format(caller="alice"), submit(key=f"new{i}")) for i in range(5)),
        )
        head = await engine.store.head_position()
    finally:
        await engine.stop()
    assert again == {**first, "duplicate": True}
    assert changed["error"]["code"] == "idempotency_mismatch"
    assert all(r["ok"] and not r["duplicate"] for r in new)
    assert head == 4 * 6


async def test_status_queries_from_the_cache_from_the_log_and_refused(
    nats_url: str, database_url: str, nc: Client
) -> None:
    status = "corridor.api.v1.intents.status"
    query = {"type": "GetPaymentIntentStatus", "version": 1}
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start()
    try:
        submitted = await request(nc, SUBMIT.format(caller="alice"), submit(key="s"))
        intent_id = submitted["intent_id"]
        cached = await request(nc, status, {**query, "intent_id": intent_id})
    finally:
        await engine.stop()
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start()  # a new engine caches nothing: the log answers
    try:
        from_log = await request(nc, status, {**query, "intent_id": intent_id})
        unknown = await request(nc, status, {**query, "intent_id": "no-such-intent"})
        malformed = await request(nc, status, None, raw=b"{not json")
        wrong_type = await request(nc, status, {"type": "GetPaymentIntent", "version": 1,
                                                "intent_id": intent_id})  # fmt: skip
    finally:
        await engine.stop()
    assert cached == from_log
    assert (cached["intent_id"], cached["stream_version"]) == (intent_id, 4)
    assert unknown["error"]["code"] == "not_found"
    assert malformed["ok"] is False and malformed["error"]["code"]
    assert wrong_type["error"]["code"] == "unknown_type"
