"""The one table of transient and definite failures (services/failures.py, issue 13, 2)."""

from __future__ import annotations

import asyncpg
import nats.errors
import nats.js.errors
import pytest
from asyncpg.exceptions import _base as asyncpg_base
from hypothesis import given
from hypothesis import strategies as st

from services import failures
from services.bus.port import NoResponders, NotFound, PublishRefused
from services.executor.limits import ExecutorLimits

TRANSIENT = [
    asyncpg.CannotConnectNowError("the database system is starting up"),  # 57P03
    asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01
    asyncpg.exceptions.CrashShutdownError("crash of another server process"),  # 57P02
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),  # 08003
    asyncpg.exceptions.TooManyConnectionsError("too many clients"),  # 53300
    asyncpg.exceptions.SerializationError("could not serialize"),  # 40001
    asyncpg.exceptions.DeadlockDetectedError("deadlock"),  # 40P01
    asyncpg.exceptions.ReadOnlySQLTransactionError("read-only"),  # 25006 during a failover
    asyncpg.InterfaceError("connection is closed"),
    ConnectionRefusedError(),
    TimeoutError(),
    nats.errors.TimeoutError(),
    nats.errors.NoRespondersError(),
    nats.errors.ConnectionClosedError(),
    nats.js.errors.ServiceUnavailableError(),
    NoResponders("no stream takes corridor.evt.v1.x"),  # the bus port's (ADR 0098)
]
DEFINITE = [
    asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence 0x00"),  # 22021
    asyncpg.exceptions.UntranslatableCharacterError("unsupported Unicode escape"),  # 22P05
    asyncpg_base.DataError("invalid input for query argument"),  # asyncpg's own, client-side
    asyncpg.exceptions.InsufficientPrivilegeError("permission denied"),  # 42501
    asyncpg.exceptions.DatabaseDroppedError("dropped"),  # 57P04: not in its class's verdict
    asyncpg.exceptions.InternalServerError("XX000"),
    nats.js.errors.BadRequestError(),
    nats.errors.MaxPayloadError(),
    NotFound("no stream CORRIDOR_DLQ"),
    PublishRefused("CORRIDOR_EVT", 10071, "wrong last sequence"),
    AssertionError("a bug"),
    UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: type(e).__name__)
def test_what_passes_by_itself_is_retried(exc: BaseException) -> None:
    assert failures.classify(exc).kind is failures.Kind.TRANSIENT


@pytest.mark.parametrize("exc", DEFINITE, ids=lambda e: type(e).__name__)
def test_what_fails_again_is_refused(exc: BaseException) -> None:
    assert failures.classify(exc).kind is failures.Kind.DEFINITE


def test_every_row_says_why_and_the_table_links_postgres_appendix() -> None:
    rows = [
        *failures.SQLSTATE_CLASSES.values(),
        *failures.SQLSTATE_CODES.values(),
        *(v for _, v in failures.TYPES),
    ]
    assert all(len(v.reason) > 10 for v in rows)
    assert all(len(c) == 2 for c in failures.SQLSTATE_CLASSES)
    assert all(len(c) == 5 for c in failures.SQLSTATE_CODES)
    doc = failures.__doc__ or ""
    assert "https://www.postgresql.org/docs/current/errcodes-appendix.html" in doc


@given(sqlstate=st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5))
def test_every_sqlstate_gets_a_verdict(sqlstate: str) -> None:
    exc = asyncpg.PostgresError.new({"C": sqlstate, "M": "x"})  # as asyncpg raises it
    verdict = failures.classify(exc)
    expected = failures.SQLSTATE_CODES.get(sqlstate) or failures.SQLSTATE_CLASSES.get(sqlstate[:2])
    assert verdict == (expected or verdict)
    assert expected is not None or verdict.kind is failures.Kind.DEFINITE


@given(delivery=st.integers(min_value=1, max_value=10_000), jitter=st.floats(0, 0.999))
def test_a_held_order_backs_off_within_its_bounds(delivery: int, jitter: float) -> None:
    limits = ExecutorLimits()
    delay_s = limits.held_delay_s(delivery, jitter)
    assert 0 < delay_s <= limits.held_delay_s_max
    assert delay_s >= limits.held_delay_s_first * (1 - limits.held_jitter_fraction)
