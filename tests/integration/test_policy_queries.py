"""Read what the running engine enforces: ``policy.show`` and ``policy.corridors``."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client

from services.bootstrap import Engine, bootstrap
from services.policy.loader import load_default_policy
from services.settings import DEFAULT_CORRIDORS, Settings

SHOW = "corridor.api.v1.policy.show"
CORRIDORS = "corridor.api.v1.policy.corridors"
GET_POLICY = {"type": "GetPolicy", "version": 1}
LIST_CORRIDORS = {"type": "ListCorridors", "version": 1}


async def request(nc: Client, subject: str, body: Any, *, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=10)
    return json.loads(msg.data)


def document(version: int) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(msgspec.json.encode(load_default_policy()))
    doc["version"] = version
    doc["fees"]["cap_ppm"] = 5_000
    return doc


def propose(version: int, operator: str) -> dict[str, Any]:
    return {"type": "ProposePolicy", "version": 1, "policy_version": version,
            "document": document(version), "proposer_id": operator}  # fmt: skip


async def test_policy_show_is_the_document_in_force(engine: Engine, nc: Client) -> None:
    shown = await request(nc, SHOW, GET_POLICY)
    default = load_default_policy()
    assert shown == {
        "type": "PolicyView", "version": 1, "ok": True, "policy_version": default.version,
        "document": json.loads(msgspec.json.encode(default)), "pending": [],
    }  # fmt: skip


async def test_policy_show_lists_pending_proposals_then_the_approved_document(
    nats_url: str, database_url: str, nc: Client
) -> None:
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        before_ms = int(time.time() * 1000)  # the engine runs on the system clock
        assert (await request(nc, "corridor.api.v1.policy.propose.op-a", propose(2, "op-a")))["ok"]
        assert (await request(nc, "corridor.api.v1.policy.propose.op-b", propose(3, "op-b")))["ok"]
        pending = await request(nc, SHOW, GET_POLICY)
        approve = {"type": "ApprovePolicy", "version": 1, "policy_version": 2,
                   "approver_id": "op-b"}  # fmt: skip
        assert (await request(nc, "corridor.api.v1.policy.approve.op-b", approve))["ok"]
        approved = await request(nc, SHOW, GET_POLICY)
    finally:
        await engine.stop()
    assert pending["policy_version"] == 1
    assert [(p["policy_version"], p["proposed_by"]) for p in pending["pending"]] == [
        (2, "op-a"), (3, "op-b"),
    ]  # fmt: skip
    assert all(p["proposed_at_ms"] >= before_ms for p in pending["pending"])
    assert approved["policy_version"] == 2
    assert approved["document"] == document(2)
    assert [p["policy_version"] for p in approved["pending"]] == [3]

    # A restarted engine shows the same, rebuilt from the log.
    engine = await bootstrap(Settings(), nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        restarted = await request(nc, SHOW, GET_POLICY)
    finally:
        await engine.stop()
    assert restarted == approved


async def test_corridors_are_the_engines_candidates_in_order(
    nats_url: str, database_url: str, nc: Client
) -> None:
    corridors = {**DEFAULT_CORRIDORS, "eu-us": ["eu/eu-cln", "us"]}
    settings = Settings(corridors=corridors)
    engine = await bootstrap(settings, nats_url=nats_url, database_url=database_url)
    await engine.start(relay=False)
    try:
        reply = await request(nc, CORRIDORS, LIST_CORRIDORS)
    finally:
        await engine.stop()
    assert (reply["type"], reply["version"], reply["ok"]) == ("CorridorsView", 1, True)
    assert [c["corridor"] for c in reply["corridors"]] == sorted(corridors)
    (us_eu,) = [c for c in reply["corridors"] if c["corridor"] == "us-eu"]
    assert us_eu["candidates"] == [
        {"rank": 1, "region": "us", "node": "us-lnd", "keysend": True},
        {"rank": 2, "region": "eu", "node": "eu-lnd", "keysend": True},
        {"rank": 3, "region": "us", "node": "us-cln", "keysend": False},
    ]
    (eu_us,) = [c for c in reply["corridors"] if c["corridor"] == "eu-us"]
    assert [(c["node"], c["keysend"]) for c in eu_us["candidates"]] == [
        ("eu-cln", False), ("us-lnd", True),
    ]  # fmt: skip


async def test_queries_refuse_wrong_messages_with_codes(engine: Engine, nc: Client) -> None:
    cases: list[tuple[str, Any, bytes | None, str, str | None]] = [
        (SHOW, LIST_CORRIDORS, None, "unknown_type", "type"),
        (CORRIDORS, GET_POLICY, None, "unknown_type", "type"),
        (SHOW, {**GET_POLICY, "version": 2}, None, "unknown_version", "version"),
        (SHOW, {**GET_POLICY, "extra": 1}, None, "schema_violation", "extra"),
        (CORRIDORS, None, b"{not json", "malformed_json", None),
        # A query is not a command, whatever verb subject it is sent to.
        ("corridor.api.v1.policy.propose.op-a", GET_POLICY, None, "unknown_type", "type"),
        ("corridor.api.v1.policy.approve.op-a", LIST_CORRIDORS, None, "unknown_type", "type"),
        ("corridor.api.v1.policy.show.op-a", GET_POLICY, None, "bad_subject", "subject"),
    ]
    for subject, body, raw, code, field in cases:
        reply = await request(nc, subject, body, raw=raw)
        assert reply["ok"] is False, (subject, body)
        assert (reply["type"], reply["error"]["code"], reply["error"]["field"]) == (
            "CommandRejected", code, field,
        ), (subject, body, reply)  # fmt: skip
    # Proposals still work beside the queries.
    proposed = await request(nc, "corridor.api.v1.policy.propose.op-a", propose(2, "op-a"))
    assert proposed["ok"] and proposed["policy_version"] == 2, proposed
    assert [p["proposed_by"] for p in (await request(nc, SHOW, GET_POLICY))["pending"]] == ["op-a"]


async def test_a_reply_larger_than_the_servers_limit_is_a_coded_error(
    nats_url: str, database_url: str, nc: Client, tmp_path: Path
) -> None:
    # A long deny list makes the document larger than one NATS message may be.
    doc = document(1)
    pubkeys = ("02" + hashlib.sha256(str(i).encode()).hexdigest() for i in itertools.count())
    doc["deny"]["destinations"] = list(itertools.islice(pubkeys, nc.max_payload // 60))
    policy_file = tmp_path / "big-policy.json"
    policy_file.write_text(json.dumps(doc))
    engine = await bootstrap(
        Settings(policy_file=policy_file), nats_url=nats_url, database_url=database_url
    )
    await engine.start(relay=False)
    try:
        reply = await request(nc, SHOW, GET_POLICY)
        corridors = await request(nc, CORRIDORS, LIST_CORRIDORS)
    finally:
        await engine.stop()
    assert reply["ok"] is False and reply["error"]["code"] == "payload_too_large", reply
    assert "max_payload" in reply["error"]["message"]
    assert corridors["ok"] is True  # the service still answers
