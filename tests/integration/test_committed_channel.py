"""The bootstrapped engine hands every commit of this process over through one channel (ADR
0095): the writer loop's and the checkpointer's batches reach the relay, the checkpointer's
counter, the deadline scheduler and the spend book, with no hook patched on afterwards."""

from __future__ import annotations

import json

from schemas.codec import decode_request
from schemas.replies import CommandAccepted
from services.bootstrap import Engine
from services.engine.commands import CommandEnvelope
from services.engine.committed import CommittedBatch, Writer
from tests.conftest import wait_for
from tests.factories import submit


async def test_every_writer_publishes_and_every_listener_hears_it(engine: Engine) -> None:
    names = [name for name, _ in engine.committed._subscribers]
    assert names == ["spend-book", "deadlines", "relay", "checkpoints"]
    assert engine.relay.local_writer_busy == engine.committed.busy
    heard: list[CommittedBatch] = []
    engine.committed.subscribe("test", heard.append)

    command = decode_request(json.dumps(submit(key="channel-1")).encode())
    reply = await engine.processor.execute(CommandEnvelope(command=command))
    assert isinstance(reply, CommandAccepted), reply
    checkpoint = await engine.checkpoints.checkpoint_now()  # type: ignore[union-attr]
    assert checkpoint is not None

    assert [b.writer for b in heard] == [Writer.COMMANDS, Writer.CHECKPOINTS]
    commands, checkpoints = heard
    assert set(commands.states) == {reply.intent_id}
    assert checkpoints.states == {}
    assert checkpoints.first_position == commands.first_position + len(commands.events)
    # Handed over or read back (the handoff only saves a read), both are published.
    head = checkpoints.first_position
    await wait_for(lambda: engine.relay.position >= head, what="the relay to publish both")
