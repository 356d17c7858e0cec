"""Two engines' checkpointers on one log must not sign each other's checkpoints for ever.

Found by the whole-engine simulation (seed 5, two engines): each checkpointer saw the other's
``LogCheckpointSigned`` as a new, unsigned head, signed it, and so gave the other one a new
head to sign: one checkpoint event per engine per tick on an idle log, for as long as both
ran. A checkpoint's own event needs no checkpoint of its own, whoever wrote it.
"""

from __future__ import annotations

import asyncio
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.bus import subjects
from services.bus.memory import MemoryBus
from services.bus.stream_specs import declare_streams
from services.engine.checkpoints import CHECKPOINT_STREAM_ID, Checkpointer
from services.eventstore.memory import InMemoryEventStore
from services.signing.ed25519 import Ed25519Signer
from services.simulation.virtual_loop import LoopClock, run_virtual, virtual_loop
from tests.contract.test_event_store_contract import new_event

EVERY_S = 10.0
IDLE_TICKS = 30


def _signer(name: str) -> Ed25519Signer:
    key = hashlib.sha256(name.encode()).digest()
    return Ed25519Signer(Ed25519PrivateKey.from_private_bytes(key))


async def _two_engines_on_an_idle_log() -> tuple[int, int]:
    clock = LoopClock(virtual_loop())
    store = InMemoryEventStore(now_ms=clock.now_ms)
    bus = MemoryBus()
    await declare_streams(bus, duplicate_window_s=120)
    await store.append([new_event("intent-1", 1), new_event("intent-1", 2)])
    pointers = [
        Checkpointer(store, bus, _signer(name), clock, every_events=1_000, every_s=EVERY_S)
        for name in ("engine-a", "engine-b")
    ]
    tasks = [asyncio.create_task(c.run()) for c in pointers]
    await asyncio.sleep(EVERY_S * IDLE_TICKS)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    checkpoints = await store.read_stream(CHECKPOINT_STREAM_ID)
    published = (await bus.stream_state(subjects.CHECKPOINT_STREAM)).messages
    # Two signatures of one head share its checkpoint id: the stream keeps one of them.
    heads = {stored.payload["checkpoint_id"] for stored in checkpoints}
    return len(checkpoints), published - len(heads)


def test_two_checkpointers_on_an_idle_log_sign_it_once_between_them() -> None:
    logged, unpublished = run_virtual(_two_engines_on_an_idle_log())
    # The two events are signed once (by whichever engine came first), perhaps once more by
    # the other if both signed the same head at the same tick; never again while idle.
    assert 1 <= logged <= 2, logged
    assert unpublished == 0
