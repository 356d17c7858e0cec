"""Work orders the engine did not sign are never paid (ADR 0063).

The attacker here publishes on ``corridor.dispatch.v1.us.us-lnd`` with the test's privileged
connection, as if the bus's publish permissions had failed. The simulated network's own
ledger (``network.payments()``) is the proof that nothing was paid; the dead-letter stream
holds the operator's record of each refusal; the dispatch consumer shows each forged order
was delivered once and then let go, never retried.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from schemas.events import IntentDispatched
from schemas.records import EventMetadata, RecordedEvent
from services.bootstrap import Engine
from services.bus import subjects
from services.engine.ids import event_id_for
from services.executor import Executor
from services.executor.consumer import consumer_name
from services.executor.keysend import SECRET_FILE_NAME, keysend_preimage, load_or_create_secret
from services.executor.worker import REFUSED_ORDERS_PREFIX, refused_orders_subject
from services.signing.ed25519 import Ed25519Signer
from services.signing.file_keys import keys_dir, load_or_create_signer
from services.signing.orders import sign_order
from services.signing.port import KeyFileError
from tests.conftest import wait_for
from tests.factories import submit
from tests.integration.test_executor import (
    FAST,
    MERCHANT,
    SETTLE_TIMEOUT_S,
    SimStack,
    signing_engine,
    sim_stack,
)


@pytest.fixture
async def engine(nats_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    async with signing_engine(nats_url, database_url, tmp_path) as running:
        yield running


@pytest.fixture
async def sim(tmp_path: Path, nats_url: str) -> AsyncIterator[SimStack]:
    async with sim_stack(tmp_path, nats_url) as stack:
        yield stack


ATTACK_MSAT = 7_777_000
ORDER_SUBJECT = subjects.dispatch_subject("us", "us-lnd")
Forgery = Callable[[IntentDispatched, str, str, Path], tuple[int, IntentDispatched]]


@dataclass
class Refused:
    code: str
    message: str
    original_subject: str
    body: bytes


def _unsigned(order: IntentDispatched, *_: Any) -> tuple[int, IntentDispatched]:
    return 2, order


def _an_attackers_key(
    order: IntentDispatched, intent_id: str, event_id: str, _: Path
) -> tuple[int, IntentDispatched]:
    attacker = Ed25519Signer.generate()
    return 2, sign_order(attacker, intent_id=intent_id, event_id=event_id, order=order)


def _the_engines_key_id_on_an_attackers_signature(
    order: IntentDispatched, intent_id: str, event_id: str, state_dir: Path
) -> tuple[int, IntentDispatched]:
    signed = _an_attackers_key(order, intent_id, event_id, state_dir)[1]
    engine_key = load_or_create_signer(keys_dir(state_dir)).key_id
    return 2, msgspec.structs.replace(signed, key_id=engine_key)


def _version_1(order: IntentDispatched, *_: Any) -> tuple[int, IntentDispatched]:
    # What an engine from before the upgrade wrote: no signature fields at all.
    return 1, order


FORGERIES: dict[str, tuple[Forgery, str]] = {
    "unsigned": (_unsigned, "unsigned_work_order"),
    "an_attackers_key": (_an_attackers_key, "unknown_key"),
    "the_engines_key_id": (_the_engines_key_id_on_an_attackers_signature, "bad_signature"),
    "version_1": (_version_1, "bad_work_order"),
}


def _recorded(intent_id: str, version: int, order: IntentDispatched, stream_version: int) -> bytes:
    data = msgspec.to_builtins(order)
    if version == 1:
        del data["key_id"], data["signature"]
    record = RecordedEvent(
        type="IntentDispatched", version=version, event_id=event_id_for(intent_id, stream_version),
        stream_id=intent_id, stream_version=stream_version, position=stream_version,
        recorded_at_ms=0, data=data, hash="00" * 32, prev_hash="00" * 32,
        metadata=EventMetadata(correlation_id=intent_id, causation_id="forged", actor="engine"),
    )  # fmt: skip
    return msgspec.json.encode(record)


def _attack_order(invoice: Any) -> IntentDispatched:
    return IntentDispatched(
        attempt=1, region="us", node="us-lnd", amount_msat=ATTACK_MSAT, max_fee_msat=100_000,
        payment_request=invoice.bolt11, payment_hash=invoice.payment_hash, pay_timeout_s=30,
        invoice_has_amount=True,
    )  # fmt: skip


async def _publish(nc: Client, body: bytes, msg_id: str) -> None:
    await nc.jetstream().publish(ORDER_SUBJECT, body, headers={subjects.HDR_MSG_ID: msg_id})


async def _refusals(js: JetStreamContext) -> Callable[[int], Any]:
    """``wait(n)``: the first ``n`` records of refused orders, once there are ``n``."""
    sub = await js.pull_subscribe(
        f"{REFUSED_ORDERS_PREFIX}.>",
        durable="test-refused",
        stream=subjects.DLQ_STREAM,
        config=ConsumerConfig(),
    )
    got: list[Refused] = []

    async def wait(count: int) -> list[Refused]:
        async def arrived() -> bool:
            try:
                for msg in await sub.fetch(count - len(got), timeout=0.2):
                    headers = msg.headers or {}
                    got.append(
                        Refused(
                            code=headers[subjects.HDR_ERROR_CODE],
                            message=headers[subjects.HDR_ERROR_MESSAGE],
                            original_subject=headers[subjects.HDR_ORIGINAL_SUBJECT],
                            body=msg.data,
                        )
                    )
                    await msg.ack()
            except TimeoutError:
                pass
            return len(got) >= count

        await wait_for(arrived, timeout_s=SETTLE_TIMEOUT_S, what=f"{count} refusal records")
        return got

    return wait


async def _settled_consumer(js: JetStreamContext) -> Any:
    """The node's durable once it has nothing pending or unacked."""

    async def idle() -> Any:
        info = await js.consumer_info(subjects.DISPATCH_STREAM, consumer_name("us", "us-lnd"))
        return info if info.num_pending == 0 and info.num_ack_pending == 0 else None

    return await wait_for(idle, what="the dispatch consumer to be idle")


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_a_forged_work_order_pays_nothing_and_is_not_retried(
    engine: Engine, nc: Client, sim: SimStack, forgery: str
) -> None:
    make, code = FORGERIES[forgery]
    js = nc.jetstream()
    refusals = await _refusals(js)
    executor, _ = sim.start("us", "us-lnd", "us-1")
    await wait_for(executor.ready.is_set, what="the executor to start")
    invoice = sim.network.create_invoice(MERCHANT, ATTACK_MSAT, "attacker", 3600)
    intent_id = str(uuid.uuid4())
    version, order = make(_attack_order(invoice), intent_id, event_id_for(intent_id, 4),
                          sim.state_dir)  # fmt: skip
    body = _recorded(intent_id, version, order, 4)
    await _publish(nc, body, "forged-1")

    [refused] = await refusals(1)
    assert (refused.code, refused.original_subject, refused.body) == (code, ORDER_SUBJECT, body)
    info = await _settled_consumer(js)
    assert (info.delivered.consumer_seq, executor.processed) == (1, 1)  # once, for good
    assert sim.network.payments() == []
    assert not [p for p in sim.network.payments() if p.amount_msat == ATTACK_MSAT]
    assert await engine.store.read_stream(intent_id) == []
    assert await engine.store.head_position() == 0  # the log holds nothing about it


async def test_a_tampered_order_is_refused_and_the_genuine_one_pays_once(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    js = nc.jetstream()
    refusals = await _refusals(js)
    merchant = sim.network.node(MERCHANT)
    intent_id = await _submit(nc, submit(key="tamper", amount_msat=50_000, max_fee_msat=10_000,
                                         destination=merchant.pubkey))  # fmt: skip
    genuine = await wait_for(lambda: _last_order(js), what="the genuine order")
    record = json.loads(genuine.data)
    assert record["version"] == 2 and record["data"]["signature"]
    record["data"]["amount_msat"] = ATTACK_MSAT  # everything else, signature included, as sent
    tampered = json.dumps(record).encode()
    await _publish(nc, tampered, "tampered-1")

    sim.start("us", "us-lnd", "us-1")
    [refused] = await refusals(1)
    assert (refused.code, refused.body) == ("bad_signature", tampered)
    await wait_for(lambda: _state(engine, intent_id, "settled"), timeout_s=SETTLE_TIMEOUT_S,
                   what="the genuine order to settle")  # fmt: skip
    secret = load_or_create_secret(sim.state_dir / SECRET_FILE_NAME)
    _, payment_hash = keysend_preimage(secret, intent_id, 1)
    payments = sim.network.payments()
    assert [(p.payment_hash, p.amount_msat, p.status) for p in payments] == [
        (payment_hash, 50_000, "succeeded")
    ]
    assert (await _settled_consumer(js)).delivered.consumer_seq == 2  # each order once


async def test_a_signed_order_for_an_intent_the_engine_does_not_have_is_terminated(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    # Signed with the engine's own key (a stolen key, or a log restored behind JetStream):
    # the signature verifies, the engine's answer does not. Formerly retried forever.
    js = nc.jetstream()
    refusals = await _refusals(js)
    executor, _ = sim.start("us", "us-lnd", "us-1")
    invoice = sim.network.create_invoice(MERCHANT, ATTACK_MSAT, "lost", 3600)
    intent_id = str(uuid.uuid4())
    signer = load_or_create_signer(keys_dir(sim.state_dir))
    order = sign_order(signer, intent_id=intent_id, event_id=event_id_for(intent_id, 4),
                       order=_attack_order(invoice))  # fmt: skip
    await _publish(nc, _recorded(intent_id, 2, order, 4), "signed-unknown-1")

    [refused] = await refusals(1)
    assert refused.code == "not_found" and intent_id in refused.message
    info = await _settled_consumer(js)
    assert (info.delivered.consumer_seq, executor.processed) == (1, 1)
    assert sim.network.payments() == []


async def test_a_refusal_that_cannot_be_recorded_still_ends(
    engine: Engine, nc: Client, sim: SimStack
) -> None:
    # No dead-letter stream to write to: the order comes back a bounded number of times to
    # try the record again, then it is terminated anyway (and logged), never paid.
    js = nc.jetstream()
    await js.delete_stream(subjects.DLQ_STREAM)
    limits = dataclasses.replace(FAST, refusal_report_deliveries_max=3)
    executor, _ = sim.start("us", "us-lnd", "us-1", limits=limits)
    await wait_for(executor.ready.is_set, what="the executor to start")
    invoice = sim.network.create_invoice(MERCHANT, ATTACK_MSAT, "attacker", 3600)
    intent_id = str(uuid.uuid4())
    await _publish(nc, _recorded(intent_id, 2, _attack_order(invoice), 4), "forged-1")

    info = await _settled_consumer(js)
    assert (info.delivered.stream_seq, info.delivered.consumer_seq) == (1, 3)
    assert executor.processed == 3 and sim.network.payments() == []


async def test_an_executor_that_trusts_no_engine_key_does_not_start() -> None:
    # It would refuse, and so terminate, every genuine order: better none taken at all. It
    # stops before it connects (nothing listens at this address).
    executor = Executor(
        nats_url="nats://127.0.0.1:9", region="us", node_name="us-lnd", node=None,  # type: ignore[arg-type]
        executor_id="keyless", secret=bytes(32), limits=FAST,
    )  # fmt: skip
    with pytest.raises(KeyFileError, match="trusts no engine signing key"):
        await executor.run()
    assert not executor.ready.is_set()


async def _submit(nc: Client, command: dict[str, Any]) -> str:
    msg = await nc.request(
        f"{subjects.API_PREFIX}.submit.{command['caller']['id']}",
        json.dumps(command).encode(),
        timeout=10,
    )
    reply = json.loads(msg.data)
    assert reply["ok"], reply
    return str(reply["intent_id"])


async def _last_order(js: JetStreamContext) -> Any:
    try:
        return await js.get_last_msg(subjects.DISPATCH_STREAM, ORDER_SUBJECT)
    except Exception:  # not there yet
        return None


async def _state(engine: Engine, intent_id: str, state: str) -> bool:
    view = await engine.processor.view(intent_id)
    return getattr(view, "state", None) == state


def test_refused_orders_have_a_subject_per_node_in_the_dead_letter_stream() -> None:
    assert refused_orders_subject("us", "us-lnd") == "corridor.dlq.v1.dispatch.us.us-lnd"
