"""JetStream publishes as the relay sends them: atomic batches all or nothing with one
acknowledgement, single publishes in order, both refused on a stale expected sequence."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from services.bus.fenced_publisher import (
    ATOMIC_BATCH_MSGS_MAX,
    ERR_ATOMIC_DISABLED,
    ERR_DUPLICATE,
    ERR_DUPLICATE_IN_BATCH,
    ERR_WRONG_LAST_MSG_ID,
    ERR_WRONG_LAST_SEQUENCE,
    FencedPublisher,
    OutgoingMessage,
    PublishRefused,
)


def _messages(tag: str, count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage("t.x", f"{tag}-{i}".encode(), {"Nats-Msg-Id": f"{tag}-{i}"})
        for i in range(count)
    ]


async def _stream(nc: Client, *, atomic: bool = True) -> None:
    await nc.jetstream().add_stream(
        StreamConfig(name="T", subjects=["t.>"], storage=StorageType.FILE, allow_atomic=atomic)
    )


async def _stored(nc: Client) -> list[bytes]:
    js = nc.jetstream()
    last = (await js.stream_info("T")).state.last_seq
    return [(await js.get_msg("T", seq=seq)).data or b"" for seq in range(1, last + 1)]


async def test_a_batch_lands_whole_and_answers_once(nc: Client) -> None:
    await _stream(nc)
    publisher = FencedPublisher(nc)
    first = await publisher.publish_atomic("T", _messages("a", 3), expected_last_seq=0, timeout_s=5)
    second = await publisher.publish_atomic(
        "T", _messages("b", 2), expected_last_seq=3, timeout_s=5
    )
    assert (await first, await second) == (3, 5)
    assert await _stored(nc) == [b"a-0", b"a-1", b"a-2", b"b-0", b"b-1"]
    await publisher.close()


async def test_a_stale_expected_sequence_stores_nothing(nc: Client) -> None:
    await _stream(nc)
    publisher = FencedPublisher(nc)
    await (await publisher.publish_atomic("T", _messages("a", 2), expected_last_seq=0, timeout_s=5))
    stale = await publisher.publish_atomic("T", _messages("b", 3), expected_last_seq=1, timeout_s=5)
    with pytest.raises(PublishRefused) as refused:
        await stale
    assert refused.value.err_code == ERR_WRONG_LAST_SEQUENCE
    assert await _stored(nc) == [b"a-0", b"a-1"]
    await publisher.close()


async def test_a_batch_with_a_stored_message_id_is_refused_whole(nc: Client) -> None:
    await _stream(nc)
    publisher = FencedPublisher(nc)
    await (
        await publisher.publish_atomic("T", _messages("a", 1), expected_last_seq=None, timeout_s=5)
    )
    again = [*_messages("a", 1), *_messages("new", 1)]
    with pytest.raises(PublishRefused) as refused:
        await (await publisher.publish_atomic("T", again, expected_last_seq=None, timeout_s=5))
    assert refused.value.err_code == ERR_DUPLICATE_IN_BATCH
    assert await _stored(nc) == [b"a-0"]
    await publisher.close()


async def test_a_stream_without_atomic_batches_refuses_them(nc: Client) -> None:
    await _stream(nc, atomic=False)
    publisher = FencedPublisher(nc)
    with pytest.raises(PublishRefused) as refused:
        await (
            await publisher.publish_atomic("T", _messages("a", 2), expected_last_seq=0, timeout_s=5)
        )
    assert refused.value.err_code == ERR_ATOMIC_DISABLED
    await publisher.close()


async def test_batch_size_is_bounded(nc: Client) -> None:
    publisher = FencedPublisher(nc)
    for count in (0, ATOMIC_BATCH_MSGS_MAX + 1):
        with pytest.raises(ValueError, match="atomic batch"):
            await publisher.publish_atomic(
                "T", _messages("a", count), expected_last_seq=0, timeout_s=5
            )
    await publisher.close()


async def test_single_publishes_land_in_order_and_answer_together(nc: Client) -> None:
    await _stream(nc)
    publisher = FencedPublisher(nc)
    first = await publisher.publish_each("T", _messages("a", 3), expected_last_seq=0, timeout_s=5)
    then = await publisher.publish_atomic("T", _messages("b", 2), expected_last_seq=3, timeout_s=5)
    assert (await first, await then) == (3, 5)
    assert await _stored(nc) == [b"a-0", b"a-1", b"a-2", b"b-0", b"b-1"]
    await publisher.close()


async def test_a_stale_single_publish_refuses_everything_after_it(nc: Client) -> None:
    """The fence keeps pipelined publishes in order: once one is refused, the stream is not
    where the next one expects it either."""
    await _stream(nc)
    await nc.jetstream().publish("t.x", b"foreign")
    publisher = FencedPublisher(nc)
    refused_first = await publisher.publish_each(
        "T", _messages("a", 2), expected_last_seq=0, timeout_s=5
    )
    refused_next = await publisher.publish_each(
        "T", _messages("b", 1), expected_last_seq=2, timeout_s=5
    )
    codes = []
    for refused in (refused_first, refused_next):
        with pytest.raises(PublishRefused) as caught:
            await refused
        codes.append(caught.value.err_code)
    # The first group's answer is its last message's: the chain broke at the refused first.
    assert codes == [ERR_WRONG_LAST_MSG_ID, ERR_WRONG_LAST_SEQUENCE]
    assert await _stored(nc) == [b"foreign"]
    await publisher.close()


async def test_a_duplicate_single_publish_is_a_refusal_only_when_sequences_are_expected(
    nc: Client,
) -> None:
    await _stream(nc)
    publisher = FencedPublisher(nc)
    await (await publisher.publish_each("T", _messages("a", 1), expected_last_seq=None,
                                        timeout_s=5))  # fmt: skip
    assert (
        await (
            await publisher.publish_each(
                "T", _messages("a", 1), expected_last_seq=None, timeout_s=5
            )
        )
        == 1
    )
    with pytest.raises(PublishRefused) as refused:
        await (await publisher.publish_each("T", _messages("a", 1), expected_last_seq=1,
                                            timeout_s=5))  # fmt: skip
    assert refused.value.err_code == ERR_DUPLICATE
    assert await _stored(nc) == [b"a-0"]
    await publisher.close()


async def test_a_refused_message_inside_a_fenced_group_refuses_the_rest(nc: Client) -> None:
    """Only the last message of a fenced group is acknowledged; a message refused before it
    (here a duplicate id, which JetStream drops silently) still fails the group."""
    await _stream(nc)
    publisher = FencedPublisher(nc)
    await (await publisher.publish_each("T", _messages("a", 1), expected_last_seq=0, timeout_s=5))
    group = [*_messages("b", 1), *_messages("a", 1), *_messages("c", 1)]
    with pytest.raises(PublishRefused) as refused:
        await (await publisher.publish_each("T", group, expected_last_seq=1, timeout_s=5))
    assert refused.value.err_code == ERR_WRONG_LAST_MSG_ID
    assert await _stored(nc) == [b"a-0", b"b-0"]
    await publisher.close()
