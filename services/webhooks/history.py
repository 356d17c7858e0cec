"""A receiver's catch-up: one caller's settlement events from a log position, as webhooks.

Read from CORRIDOR_EVT within the reader's credential (``services/bus/event_reader.py``,
ADR 0067): a caller or agent reads its own intents' events only. Each entry has the webhook id
and payload a delivery carries, so a receiver dedupes history and deliveries alike by the id.
The stream keeps what its limits keep (ADR 0079): past that, the log's audit export has it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from nats.aio.client import Client

from schemas.webhook_messages import SETTLEMENT_EVENT_TYPES
from services.bus import subjects
from services.bus.event_reader import read_history
from services.webhooks.payload import from_recorded

# Entries per call: a page a receiver handles at once; it asks again from ``next_position``.
HISTORY_ENTRIES_MAX: Final = 1000


async def webhook_history(
    nc: Client,
    *,
    role: str,
    ident: str,
    owner: str,
    from_position: int,
    limit: int = HISTORY_ENTRIES_MAX,
    event_types: tuple[str, ...] = SETTLEMENT_EVENT_TYPES,
) -> dict[str, Any]:
    """``{"entries": [...], "next_position": P}``: ``owner``'s settlement events at positions
    ``>= from_position``, oldest first, at most ``limit``; ``next_position`` is where the next
    page starts (``None`` when this one reached the end)."""
    assert 1 <= limit <= HISTORY_ENTRIES_MAX
    prefix = f"{subjects.EVT_INTENT_PREFIX}.{owner}."
    entries: list[dict[str, Any]] = []
    more: list[int] = []

    async def on_msg(msg: Any) -> bool:
        if not msg.subject.startswith(prefix):
            return False
        position = int((msg.headers or {}).get(subjects.HDR_POSITION, "0") or 0)
        if position < from_position or subjects.event_type_of(msg.subject) not in event_types:
            return False
        if len(entries) == limit:
            more.append(position)
            return True
        message = from_recorded(json.loads(msg.data))
        if message is not None:
            entries.append(message.as_history_entry())
        return False

    await read_history(nc, role=role, ident=ident, start_seq=None, on_msg=on_msg)
    return {"entries": entries, "next_position": more[0] if more else None}
