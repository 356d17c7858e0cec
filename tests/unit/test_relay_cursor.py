"""The relay's cursor on its own: each transition, and its invariants under any sequence of
them (ADR 0096)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.relay import cursor as cursors
from services.relay.cursor import Cursor, Phase

H = b"\x01" * 32


def _started(position: int = 10, **extra: int) -> Cursor:
    return cursors.started(
        Cursor(), position=position, seq=7, sent_hash=H,
        maybe_published_through=extra.get("maybe", 0), replayed_through=extra.get("replay", 0),
    )  # fmt: skip


def test_a_session_starts_catching_up_from_its_checkpoint() -> None:
    c = _started(10)
    assert c.phase is Phase.CATCHING_UP and c.leading and c.wants_log
    assert (c.published_through, c.sent_through, c.saved_through) == (10, 10, 10)
    assert not c.unsaved


def test_a_short_read_follows_and_a_full_one_keeps_catching_up() -> None:
    c = _started()
    assert cursors.read_log(c, batch_full=True).phase is Phase.CATCHING_UP
    following = cursors.read_log(c, batch_full=False)
    assert following.phase is Phase.FOLLOWING and not following.wants_log
    assert cursors.poll_due(following).phase is Phase.CATCHING_UP


def test_a_notify_beyond_what_was_sent_wants_the_log_and_one_within_does_not() -> None:
    c = cursors.read_log(cursors.sent(_started(10), 14, H), batch_full=False)
    assert cursors.notified(c, 14) is c  # handed over and sent already: nothing to do
    beyond = cursors.notified(c, 20)
    assert beyond.wants_log and beyond.phase is Phase.FOLLOWING
    assert cursors.notified(beyond, 15).notified_through == 20  # never moves back
    assert cursors.notified(c, None).phase is Phase.CATCHING_UP  # no position: read anyway


def test_acknowledgements_move_the_published_position_and_the_checkpoint_follows() -> None:
    c = cursors.sent(cursors.sent(_started(10), 12, H), 15, H)
    c = cursors.acknowledged(c, 12, 40)
    assert (c.published_through, c.published_seq, c.unsaved) == (12, 40, True)
    c = cursors.saved(c)
    assert c.saved_through == 12 and not c.unsaved


def test_what_may_be_published_and_what_is_a_replay() -> None:
    c = _started(0, maybe=5, replay=8)
    assert c.may_be_published(5) and not c.may_be_published(6)
    assert c.is_replay(8) and not c.is_replay(9)


def test_a_repair_the_start_found_waits_until_done_across_sessions() -> None:
    c = cursors.repair_found(_started(10), 8)
    c = cursors.repair_found(cursors.ended(c, Phase.FAILED), 0)  # the next start found none
    assert c.repair_through == 8
    assert cursors.repaired(c).repair_through == 0


def test_an_ended_session_gives_up_what_is_in_flight() -> None:
    c = cursors.acknowledged(cursors.sent(_started(10), 15, H), 12, 3)
    ended = cursors.ended(c, Phase.STEPPING_DOWN)
    assert (ended.sent_through, ended.sent_hash, ended.leading) == (12, None, False)
    # Not leading: reads and sends change nothing, and a send is a bug.
    assert cursors.read_log(ended, batch_full=False) is ended
    with pytest.raises(AssertionError):
        cursors.sent(ended, 13, H)


@pytest.mark.parametrize(
    "broken",
    [
        lambda c: cursors.sent(c, c.sent_through, H),  # a send must move forward
        lambda c: cursors.acknowledged(c, c.sent_through + 1, 1),  # beyond what was sent
        lambda c: cursors.acknowledged(c, c.published_through - 1, 1),  # backwards
        lambda c: cursors.ended(c, Phase.FOLLOWING),  # ending is not leading
        lambda c: dataclasses.replace(c, saved_through=c.published_through + 1),
    ],
)
def test_a_transition_that_breaks_an_invariant_fails_where_it_happens(broken: object) -> None:
    c = cursors.acknowledged(cursors.sent(_started(10), 15, H), 12, 3)
    with pytest.raises(AssertionError):
        broken(c)  # type: ignore[operator]


# Steps a relay session can take, as (name, argument); applied only where the relay would.
_steps = st.lists(
    st.tuples(
        st.sampled_from(["send", "ack", "read", "poll", "notify", "notify_bad", "save", "end"]),
        st.integers(min_value=0, max_value=50),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(start=st.integers(min_value=0, max_value=100), steps=_steps)
def test_invariants_hold_under_any_session(start: int, steps: list[tuple[str, int]]) -> None:
    c = _started(start)
    acked_through = start
    for step, n in steps:
        before = c
        if step == "send" and c.leading:
            c = cursors.sent(c, c.sent_through + 1 + n, H)
        elif step == "ack" and c.sent_through > c.published_through:
            acked_through = min(c.sent_through, c.published_through + 1 + n)
            c = cursors.acknowledged(c, acked_through, n)
        elif step == "read":
            c = cursors.read_log(c, batch_full=n % 2 == 0)
        elif step == "poll":
            c = cursors.poll_due(c)
        elif step == "notify":
            c = cursors.notified(c, n + start)
        elif step == "notify_bad":
            c = cursors.notified(c, None)
        elif step == "save":
            c = cursors.saved(c)
        elif step == "end" and c.leading:
            c = cursors.ended(c, Phase.FENCED)
        # What is published and saved never moves back; only an end moves the sent position
        # back, and never below what is published.
        assert c.published_through >= before.published_through
        assert c.saved_through >= before.saved_through
        assert c.published_through <= c.sent_through
        assert c.sent_through >= before.sent_through or not c.leading
        assert c.notified_through >= before.notified_through
    assert c.published_through == acked_through
