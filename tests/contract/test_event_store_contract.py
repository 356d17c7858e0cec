"""One contract for every EventStore adapter, run against each kind of ``store_env``.

The same bodies run against ``PostgresEventStore`` over the harness's real PostgreSQL and
against ``InMemoryEventStore`` (conftest.STORE_KINDS). Each covers an operation the engine, the
relay or the tools use; a twin that answers differently from PostgreSQL fails here (ADR 0090).
PostgreSQL-only properties (the append-only trigger, tampering found by ``verify_chain``, a
late commit's ordering under real transactions, migrations) stay in
tests/integration/test_eventstore.py.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import msgspec
import pytest

from services.eventstore.hashing import GENESIS_HASH, chain_hash, event_body
from services.eventstore.port import (
    RELAY_LEASE,
    AppendFence,
    ClaimConflict,
    ConcurrencyConflict,
    IdempotencyClaim,
    NewEvent,
    StalePolicy,
    StaleSpend,
)
from tests.conftest import wait_for
from tests.contract.conftest import StoreEnv

T0_MS = 1_700_000_000_123
NS = uuid.UUID("6f0e3c1a-0000-4000-8000-000000000000")


def new_event(
    stream_id: str,
    version: int,
    type: str = "IntentCancelled",
    payload: dict[str, Any] | None = None,
    *,
    at_ms: int = T0_MS,
    event_id: str | None = None,
) -> NewEvent:
    """An event as the engine hands it to the store; its id derives from (stream, version)."""
    payload = {"n": version} if payload is None else payload
    metadata = {"correlation_id": "c", "actor": "contract"}
    event_id = event_id or str(uuid.uuid5(NS, f"{stream_id}/{version}"))
    body = event_body(
        event_id=event_id, stream_id=stream_id, stream_version=version, type=type,
        schema_version=1, recorded_at_ms=at_ms, payload=payload, metadata=metadata,
    )  # fmt: skip
    return NewEvent(
        event_id=event_id, stream_id=stream_id, stream_version=version, type=type,
        schema_version=1, payload=msgspec.json.encode(payload),
        metadata=msgspec.json.encode(metadata), recorded_at_ms=at_ms, body=body,
    )  # fmt: skip


def claim(caller: str, key: str, intent: str = "i") -> IdempotencyClaim:
    return IdempotencyClaim(
        caller_id=caller, idempotency_key=key, intent_id=intent, fingerprint="f"
    )


# -- append and read -----------------------------------------------------------------------


async def test_append_returns_gapless_positions_in_commit_order(store_env: StoreEnv) -> None:
    store = store_env.store
    assert await store.head_position() == 0
    assert await store.append([]) is None
    assert await store.append([new_event("a", 1), new_event("a", 2)]) == 1
    assert await store.append([new_event("b", 1)]) == 3
    assert await store.append([new_event("a", 3), new_event("c", 1)]) == 4
    assert await store.head_position() == 5
    log = await store.read_all(after_position=0, limit=100)
    assert [(e.position, e.stream_id, e.stream_version) for e in log] == [
        (1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3), (5, "c", 1),
    ]  # fmt: skip


async def test_an_event_reads_back_as_it_was_appended(store_env: StoreEnv) -> None:
    store = store_env.store
    sent = new_event("s", 1, "IntentReceived", {"amount_msat": 5, "memo": "é ✓"}, at_ms=T0_MS)
    await store.append([sent])
    [got] = await store.read_stream("s")
    assert got.event_id == sent.event_id and got.type == "IntentReceived"
    assert (got.stream_id, got.stream_version, got.schema_version) == ("s", 1, 1)
    assert got.payload == {"amount_msat": 5, "memo": "é ✓"}
    assert got.metadata == {"correlation_id": "c", "actor": "contract"}
    assert got.recorded_at_ms == T0_MS


async def test_payloads_come_back_as_jsonb_keeps_them(store_env: StoreEnv) -> None:
    # jsonb orders keys shorter first, then bytewise; the twin must hand out the same order.
    await store_env.store.append([new_event("s", 1, payload={"bbb": 1, "a": {"zz": 1, "y": 2}})])
    [got] = await store_env.store.read_stream("s")
    assert list(got.payload) == ["a", "bbb"] and list(got.payload["a"]) == ["y", "zz"]


async def test_an_event_id_reads_back_in_canonical_form(store_env: StoreEnv) -> None:
    event_id = str(uuid.uuid5(NS, "upper")).upper()
    await store_env.store.append([new_event("s", 1, event_id=event_id)])
    [got] = await store_env.store.read_stream("s")
    assert got.event_id == event_id.lower()


async def test_text_the_store_cannot_hold_is_refused_and_nothing_is_written(
    store_env: StoreEnv,
) -> None:
    store = store_env.store
    with pytest.raises(asyncpg.UntranslatableCharacterError):
        await store.append([new_event("ok", 1), new_event("nul", 1, payload={"m": "a\x00b"})])
    assert await store.head_position() == 0
    assert await store.read_stream("ok") == []


async def test_streams_read_in_version_order(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append([new_event("x", 1), new_event("y", 1)])
    await store.append([new_event("x", 2), new_event("y", 2), new_event("x", 3)])
    assert [e.stream_version for e in await store.read_stream("x")] == [1, 2, 3]
    assert await store.read_stream("none") == []
    assert await store.stream_version("x") == 3
    assert await store.stream_version("none") == 0
    assert await store.stream_versions(["x", "none", "x"]) == {"x": 3, "none": 0}
    assert await store.stream_versions([]) == {}
    many = await store.read_streams(["y", "none", "x"])
    assert set(many) == {"x", "y"}
    assert [e.position for e in many["x"]] == [1, 3, 5]
    assert [e.position for e in many["y"]] == [2, 4]
    assert await store.read_streams([]) == {}


async def test_what_a_reader_changes_is_not_the_log(store_env: StoreEnv) -> None:
    # Append only: no operation changes a committed event, not even through what a read gave.
    store = store_env.store
    await store.append([new_event("s", 1, payload={"n": 1})])
    [first] = await store.read_stream("s")
    first.payload["n"] = 999
    [again] = await store.read_stream("s")
    assert again.payload == {"n": 1}
    assert (await store.verify_chain()).ok


async def test_read_all_read_from_and_pages_walk_positions_in_order(store_env: StoreEnv) -> None:
    store = store_env.store
    for i in range(7):
        await store.append(
            [new_event(f"s{i}", 1, "IntentReceived"), new_event(f"s{i}", 2), new_event(f"s{i}", 3)]
        )
    assert [e.position for e in await store.read_all(after_position=19, limit=10)] == [20, 21]
    assert [e.position for e in await store.read_all(after_position=3, limit=2)] == [4, 5]
    assert await store.read_all(after_position=21, limit=10) == []
    received = await store.read_from(
        after_position=1, through_position=16, types={"IntentReceived"}, limit=10
    )
    assert [e.position for e in received] == [4, 7, 10, 13, 16]
    limited = await store.read_from(
        after_position=0, through_position=21, types={"IntentReceived", "Nothing"}, limit=2
    )
    assert [e.position for e in limited] == [1, 4]
    positions = [e.position async for page in store.pages(page=4) for e in page]
    assert positions == list(range(1, 22))
    after = [e.position async for page in store.pages(after_position=19, page=4) for e in page]
    assert after == [20, 21]


async def test_scan_recent_sees_one_snapshot_of_recent_events_of_its_types(
    store_env: StoreEnv,
) -> None:
    store = store_env.store
    await store.append([new_event("old", 1, "IntentReceived", at_ms=T0_MS - 10_000)])
    await store.append([new_event("new", 1, "IntentReceived", at_ms=T0_MS)])
    await store.append([new_event("new", 2, "IntentSettled", at_ms=T0_MS + 1)])
    await store.append([new_event("new", 3, "Unrelated", at_ms=T0_MS + 2)])
    seen: list[int] = []
    head = await store.scan_recent(
        types={"IntentReceived", "IntentSettled"},
        recorded_since_ms=T0_MS,
        visit=lambda e: seen.append(e.position),
    )
    assert head == 4
    assert seen == [2, 3]


async def test_a_tailing_reader_sees_every_position_under_concurrent_appends(
    store_env: StoreEnv,
) -> None:
    store = store_env.store
    writers, per_writer = 8, 25
    done = asyncio.Event()
    seen: list[int] = []

    async def tail() -> None:
        position = 0
        while True:
            finished = done.is_set()
            batch = await store.read_all(after_position=position, limit=50)
            for event in batch:
                # A reader that only moves forward must see a contiguous sequence.
                assert event.position == position + 1, (position, event.position)
                position = event.position
                seen.append(position)
            if finished and not batch:
                return
            await asyncio.sleep(0)

    async def write(w: int) -> None:
        for i in range(per_writer):
            await store.append([new_event(f"w{w}-{i}", 1)])

    reader = asyncio.create_task(tail())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await reader
    assert seen == list(range(1, writers * per_writer + 1))
    assert (await store.verify_chain()).ok


# -- optimistic concurrency and claims -------------------------------------------------------


async def test_a_taken_stream_version_is_a_conflict_and_leaves_no_trace(
    store_env: StoreEnv,
) -> None:
    store = store_env.store
    await store.append([new_event("s", 1)])
    with pytest.raises(ConcurrencyConflict):
        await store.append([new_event("t", 1), new_event("s", 1, event_id=str(uuid.uuid4()))])
    with pytest.raises(ConcurrencyConflict):  # the same event id (it derives from the version)
        await store.append([new_event("u", 1, event_id=new_event("s", 1).event_id)])
    with pytest.raises(ConcurrencyConflict):  # twice in one batch
        await store.append([new_event("v", 1), new_event("v", 1, event_id=str(uuid.uuid4()))])
    assert await store.read_stream("t") == []
    assert await store.append([new_event("w", 1)]) == 2  # the failed batches took no position
    assert (await store.verify_chain()).ok


async def test_concurrent_writers_of_one_version_exactly_one_wins(store_env: StoreEnv) -> None:
    store = store_env.store
    results = await asyncio.gather(
        *(store.append([new_event("race", 1, event_id=str(uuid.uuid4()))]) for _ in range(10)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert wins == [1]
    assert all(isinstance(r, ConcurrencyConflict) for r in results if r not in wins)


async def test_a_claimed_key_refuses_the_whole_batch(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append([new_event("i", 1)], [claim("a", "k", "i")])
    with pytest.raises(ClaimConflict):
        await store.append([new_event("other", 1)], [claim("a", "k2"), claim("a", "k", "other")])
    with pytest.raises(ClaimConflict):  # the same key twice in one batch
        await store.append([new_event("other", 1)], [claim("b", "k"), claim("b", "k")])
    assert await store.read_stream("other") == []
    assert await store.find_claim("a", "k2") is None
    assert await store.find_claim("b", "k") is None
    assert await store.find_claim("a", "k") == claim("a", "k", "i")
    assert await store.head_position() == 1


async def test_claims_alone_are_stored_without_a_position(store_env: StoreEnv) -> None:
    store = store_env.store
    assert await store.append([], [claim("a", "k1"), claim("b", "k1")]) is None
    assert await store.head_position() == 0
    found = await store.find_claims([("a", "k1"), ("b", "k1"), ("c", "k1")])
    assert found == {("a", "k1"): claim("a", "k1"), ("b", "k1"): claim("b", "k1")}
    assert await store.find_claims([]) == {}


async def test_a_claim_conflict_is_found_before_a_version_conflict(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append([new_event("s", 1)], [claim("a", "k")])
    with pytest.raises(ClaimConflict):
        await store.append([new_event("s", 1, event_id=str(uuid.uuid4()))], [claim("a", "k")])


async def test_claims_older_than_the_horizon_are_pruned_oldest_first(
    store_env: StoreEnv,
) -> None:
    store = store_env.store
    await store.append([], [claim("a", "old1"), claim("a", "old2")])
    await store_env.age_claims(7200)
    await store.append([], [claim("a", "new")])
    assert await store.prune_claims(horizon_s=7200 - 60, rows_max=1) == 1
    assert await store.prune_claims(horizon_s=7200 - 60, rows_max=10) == 1
    assert await store.prune_claims(horizon_s=7200 - 60, rows_max=10) == 0
    assert await store.find_claim("a", "new") == claim("a", "new")
    assert await store.find_claims([("a", "old1"), ("a", "old2")]) == {}
    for horizon_s, rows_max in ((3599, 10), (3600, 0), (3600, 100_001)):
        with pytest.raises(ValueError):
            await store.prune_claims(horizon_s=horizon_s, rows_max=rows_max)


# -- the fences of ADR 0073 ------------------------------------------------------------------


async def test_a_caller_whose_spend_moved_unseen_fails_the_append(store_env: StoreEnv) -> None:
    store = store_env.store
    # Engine A judges alice at position 0 and appends; alice's fence moves to its last event.
    fence_a = AppendFence(callers=("alice",), known_positions=(0,))
    assert await store.append([new_event("a1", 1), new_event("a1", 2)], fence=fence_a) == 1
    # Engine B also knew alice only through 0: refused, nothing written.
    stale = AppendFence(callers=("alice", "bob"), known_positions=(0, 0))
    with pytest.raises(StaleSpend):
        await store.append([new_event("b1", 1)], fence=stale)
    assert await store.head_position() == 2
    # Knowing through the fence (2) passes; bob, never fenced, passes at any position.
    fresh = AppendFence(callers=("alice", "bob"), known_positions=(2, 0))
    assert await store.append([new_event("b1", 1)], fence=fresh) == 3
    # Both fences now stand at that batch's last position.
    bob_at_2 = AppendFence(callers=("bob",), known_positions=(2,))
    with pytest.raises(StaleSpend):
        await store.append([new_event("c1", 1)], fence=bob_at_2)
    bob_at_3 = AppendFence(callers=("bob",), known_positions=(3,))
    assert await store.append([new_event("c1", 1)], fence=bob_at_3) == 4


async def test_a_policy_activated_elsewhere_fails_the_append(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append([new_event("policy", 1), new_event("policy", 2)])
    judged_at_1 = AppendFence(policy_stream="policy", policy_version=1)
    with pytest.raises(StalePolicy):
        await store.append([new_event("x", 1)], fence=judged_at_1)
    judged_at_2 = AppendFence(policy_stream="policy", policy_version=2)
    assert await store.append([new_event("x", 1)], fence=judged_at_2) == 3
    unjudged = AppendFence(policy_stream="no-policy-yet", policy_version=0)
    assert await store.append([new_event("y", 1)], fence=unjudged) == 4


async def test_refusals_come_in_the_order_append_events_checks_them(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append(
        [new_event("policy", 1), new_event("s", 1)],
        [claim("a", "k")],
        fence=AppendFence(callers=("alice",), known_positions=(0,)),
    )
    taken = new_event("s", 1, event_id=str(uuid.uuid4()))
    both = AppendFence(
        callers=("alice",), known_positions=(0,), policy_stream="policy", policy_version=0
    )
    with pytest.raises(ClaimConflict):
        await store.append([taken], [claim("a", "k")], fence=both)
    with pytest.raises(StalePolicy):
        await store.append([taken], fence=both)
    spend_only = AppendFence(callers=("alice",), known_positions=(0,))
    with pytest.raises(StaleSpend):
        await store.append([taken], fence=spend_only)
    with pytest.raises(ConcurrencyConflict):
        await store.append([taken], fence=AppendFence(callers=("alice",), known_positions=(2,)))


# -- the hash chain --------------------------------------------------------------------------


async def test_every_event_chains_to_the_one_before(store_env: StoreEnv) -> None:
    store = store_env.store
    sent = [new_event(f"s{i}", 1, payload={"i": i}) for i in range(5)]
    await store.append(sent[:2])
    await store.append(sent[2:])
    log = await store.read_all(after_position=0, limit=10)
    prev = GENESIS_HASH
    for event, original in zip(log, sent, strict=True):
        assert event.prev_hash == prev
        assert event.hash == chain_hash(prev, event.position, original.body)
        assert await store.hash_at(event.position) == event.hash
        prev = event.hash
    assert await store.hash_at(0) == GENESIS_HASH
    assert await store.hash_at(6) is None
    report = await store.verify_chain()
    assert report.ok and report.checked == 5 and report.last_position == 5
    part = await store.verify_chain(after_position=2, limit=2)
    assert part.ok and part.checked == 2 and part.last_position == 4


# -- checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_are_saved_and_read_together(store_env: StoreEnv) -> None:
    store = store_env.store
    assert await store.get_checkpoint("x") == 0
    await store.set_checkpoint("x", 42)
    await store.set_checkpoint("x", 43)
    assert await store.get_checkpoint("x") == 43
    assert await store.get_checkpoints(["x", "y", "z"]) == {"x": 43}
    await store.set_checkpoints({"y": 7, "z": 9})
    await store.set_checkpoints({})
    assert await store.get_checkpoints(["x", "y", "z"]) == {"x": 43, "y": 7, "z": 9}
    await store.set_checkpoints({"x": 1, "y": 2})
    assert await store.get_checkpoints(["x", "y"]) == {"x": 1, "y": 2}


# -- the engine's named reads ----------------------------------------------------------------


async def test_open_orders_are_work_orders_of_intents_not_ended(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append([new_event("p", 1, "IntentReceived"), new_event("p", 2, "IntentDispatched")])
    await store.append([new_event("q", 1, "IntentReceived"), new_event("q", 2, "IntentDispatched")])
    await store.append([new_event("r", 1, "IntentReceived"), new_event("r", 2, "IntentDispatched")])
    await store.append([new_event("q", 3, "IntentSettled"), new_event("r", 3, "IntentFailed")])
    await store.append([new_event("p", 3, "IntentDispatched")])  # p re-routed: a second order
    # An ending anywhere in the stream counts, even past ``through``.
    assert await store.open_orders_between(after_position=0, through_position=9, limit=10) == [
        ("p", 2), ("p", 9),
    ]  # fmt: skip
    assert await store.open_orders_between(after_position=2, through_position=8, limit=10) == []
    assert await store.open_orders_between(after_position=0, through_position=9, limit=1) == [
        ("p", 2)
    ]
    assert await store.last_position_of("IntentDispatched", through_position=9) == 9
    assert await store.last_position_of("IntentDispatched", through_position=8) == 6
    assert await store.last_position_of("IntentDispatched", through_position=1) == 0


async def test_open_orders_include_rebalance_and_receive_orders_until_they_end(
    store_env: StoreEnv,
) -> None:
    """ADR 0249: the sweeper re-issues a rebalance's order until it succeeds or fails, and a
    receive's until the node's invoice is recorded."""
    store = store_env.store
    await store.append([new_event("rbl-a", 1, "RebalanceRequested"),
                        new_event("rbl-a", 2, "RebalanceDispatched")])  # fmt: skip
    await store.append([new_event("rbl-b", 1, "RebalanceRequested"),
                        new_event("rbl-b", 2, "RebalanceDispatched")])  # fmt: skip
    await store.append([new_event("rcv-c", 1, "ReceiveRequested"),
                        new_event("rcv-c", 2, "ReceiveDispatched")])  # fmt: skip
    await store.append([new_event("rcv-d", 1, "ReceiveRequested"),
                        new_event("rcv-d", 2, "ReceiveDispatched")])  # fmt: skip
    await store.append([new_event("rbl-b", 3, "RebalanceSucceeded"),
                        new_event("rcv-d", 3, "InvoiceIssued")])  # fmt: skip
    assert await store.open_orders_between(after_position=0, through_position=10, limit=10) == [
        ("rbl-a", 2), ("rcv-c", 6),
    ]  # fmt: skip
    assert await store.last_position_of("Nothing", through_position=9) == 0


async def test_open_orders_include_channel_orders_until_the_channel_opened_or_closed(
    store_env: StoreEnv,
) -> None:
    """ADR 0280: a channel operation's order (its request, or the approval of a tier-approval
    open) is re-issued until the channel opened or closed, or an operator declined it."""
    store = store_env.store
    await store.append([new_event("chop-a", 1, "ChannelOpenRequested"),
                        new_event("chop-a", 2, "ChannelOpening")])  # fmt: skip
    await store.append([new_event("chop-b", 1, "ChannelOpenRequested"),
                        new_event("chop-b", 2, "ChannelOpening"),
                        new_event("chop-b", 3, "ChannelOpened")])  # fmt: skip
    await store.append([new_event("chop-c", 1, "ChannelOpenRequested"),
                        new_event("chop-c", 2, "ChannelOpenApproved")])  # fmt: skip
    await store.append([new_event("chop-d", 1, "ChannelCloseRequested"),
                        new_event("chop-d", 2, "ChannelClosing"),
                        new_event("chop-d", 3, "ChannelClosed")])  # fmt: skip
    await store.append([new_event("chop-e", 1, "ChannelOpenRequested"),
                        new_event("chop-e", 2, "ChannelOpDeclined")])  # fmt: skip
    await store.append([new_event("chop-f", 1, "ChannelCloseRequested")])
    assert await store.open_orders_between(after_position=0, through_position=13, limit=10) == [
        ("chop-a", 1), ("chop-c", 6), ("chop-c", 7), ("chop-f", 13),
    ]  # fmt: skip
    assert await store.last_position_of("ChannelOpenApproved", through_position=13) == 7


async def test_owners_are_the_callers_of_intents_first_events(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append(
        [
            new_event("i1", 1, "IntentReceived", {"caller": {"id": "alice", "kind": "agent"}}),
            new_event("i2", 1, "IntentReceived", {"caller": {"kind": "agent"}}),
            new_event("i3", 1, "IntentReceived", {"caller": "not an object"}),
            new_event("i4", 1, "IntentCancelled", {"caller": {"id": "mallory"}}),
            new_event("i1", 2, "IntentReceived", {"caller": {"id": "mallory"}}),
        ]
    )
    owners = await store.owners_of(["i1", "i2", "i3", "i4", "none"])
    assert owners == {"i1": "alice", "i2": None, "i3": None}


async def test_deadline_streams_are_those_an_expiry_may_concern(store_env: StoreEnv) -> None:
    store = store_env.store
    await store.append(
        [
            new_event("d", 1, "IntentReceived", {"deadline_at_ms": T0_MS}),
            new_event("n", 1, "IntentReceived", {"deadline_at_ms": None}),
            new_event("m", 1, "IntentReceived", {}),
            new_event("a", 1, "IntentReceived", {}),
            new_event("a", 2, "IntentApprovalRequested", {}),
            new_event("a", 3, "IntentApprovalRequested", {}),
        ]
    )
    assert sorted(await store.deadline_streams()) == ["a", "d"]


# -- the lease -------------------------------------------------------------------------------


async def test_one_lease_holder_at_a_time(store_env: StoreEnv) -> None:
    store = store_env.store
    first, second = store.lease(RELAY_LEASE), store.lease(RELAY_LEASE)
    try:
        assert not first.held
        assert await first.acquire() and first.held
        assert await first.acquire()  # holding it, asking again still holds it
        assert not await second.acquire() and not second.held
        await first.release()
        assert not first.held
        assert await second.acquire() and second.held
        await first.release()  # idempotent, and it does not free what another holds
        assert second.held
        with pytest.raises(ValueError):
            store.lease("nobody-uses-this")
    finally:
        await first.release()
        await second.release()


async def test_a_lease_hears_every_commit_after_it_listens(store_env: StoreEnv) -> None:
    store = store_env.store
    lease = store.lease(RELAY_LEASE)
    heard: list[int | None] = []
    try:
        await store.append([new_event("before", 1)])
        assert await lease.acquire()
        await lease.listen(heard.append)
        await store.append([new_event("a", 1), new_event("a", 2)])
        await store.append([new_event("b", 1)])
        assert await asyncio.wait_for(lease.wait_commit(after_position=3), timeout=10) == 4
        await wait_for(lambda: heard == [3, 4], what="both commits announced")
        waiting = asyncio.ensure_future(lease.wait_commit(after_position=4))
        await store.append([new_event("c", 1)])
        assert await asyncio.wait_for(waiting, timeout=10) == 5
    finally:
        await lease.release()


async def test_a_lost_session_loses_the_lease_to_the_next(store_env: StoreEnv) -> None:
    store = store_env.store
    first, second = store.lease(RELAY_LEASE), store.lease(RELAY_LEASE)
    try:
        assert await first.acquire()
        assert not await second.acquire()
        await store_env.cut_leases()
        await wait_for(lambda: not first.held, what="the holder to see its session end")
        # The next holder takes it over (second's own session was cut too: a new lease).
        third = store.lease(RELAY_LEASE)
        try:
            assert await third.acquire()
            with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresConnectionError)):
                await first.acquire()  # a lost lease is not taken again: take a new one
        finally:
            await third.release()
    finally:
        await first.release()
        await second.release()
