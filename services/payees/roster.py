"""Payees as the log records them (``payee-`` streams, ADR 0270): ids, regions, wallets and
who is erased. Reads the log only; names come from ``PayeeDirectory``."""

from __future__ import annotations

from typing import Final

from schemas.payee_messages import PAYEE_STREAM_PREFIX
from services.domain.payees import Payee, PayeeStatus, replay
from services.engine.event_codec import to_domain
from services.eventstore.postgres import PostgresEventStore

# Payees one listing shows: a page, not the whole roster of a large business.
PAYEES_PER_PAGE_MAX: Final = 1000


async def payees(store: PostgresEventStore, *, limit: int = PAYEES_PER_PAGE_MAX) -> list[Payee]:
    """The first ``limit`` payees by id, folded from their streams."""
    assert 1 <= limit <= PAYEES_PER_PAGE_MAX, limit
    ids = [
        r["stream_id"]
        for r in await store.pool.fetch(
            "SELECT DISTINCT stream_id FROM events WHERE starts_with(stream_id, $1)"
            " ORDER BY stream_id LIMIT $2",
            PAYEE_STREAM_PREFIX,
            limit,
        )
    ]
    streams = await store.read_streams(ids)
    found = [replay(to_domain(e) for e in streams.get(i, [])) for i in ids]
    return [p for p in found if p is not None]


async def erased_ids(store: PostgresEventStore) -> list[str]:
    """Every payee the log says was erased: the erasures to apply again after a restore."""
    rows = await store.pool.fetch(
        "SELECT stream_id FROM events WHERE type = 'PayeeErased' ORDER BY position"
    )
    return [r["stream_id"] for r in rows]


async def payee(store: PostgresEventStore, payee_id: str) -> Payee | None:
    return replay(to_domain(e) for e in await store.read_stream(payee_id))


def is_erased(state: Payee) -> bool:
    return state.status is PayeeStatus.ERASED
