"""Upcasting: reading an event stored at an older schema version as its current shape (ADR 0078).

The one mechanism every reader of events uses: the engine (``services/engine/event_codec.py``),
the relay (``services/relay/outbox.py``), the executors (``services/executor/work_order.py``)
and the projections (``projections/``). The log is append-only, so an event keeps the version
it was written with forever; readers lift it, one version at a time, to the shape in
``schemas/events.py``.

- ``UPCASTERS[(type, n)]`` lifts a payload from version ``n`` to ``n + 1``. Every event whose
  ``VERSION`` is above 1 has the whole chain (a test holds the table to that).
- A version above the reader's ``VERSION`` is refused (``EventVersionTooNew``): a newer writer
  may have added a field this reader would silently drop. A version below 1, or one that is
  not an integer, is refused too (``EventVersionInvalid``). Neither is ever a ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from schemas import events as ev
from schemas.agent_key_messages import AGENT_KEY_EVENT_TYPES
from schemas.channel_messages import CHANNEL_OP_EVENT_TYPES
from schemas.dead_letters import DEAD_LETTER_EVENT_TYPES
from schemas.jit_messages import JIT_EVENT_TYPES
from schemas.lsp_messages import LSP_ORDER_EVENT_TYPES
from schemas.payee_messages import PAYEE_EVENT_TYPES
from schemas.policy_messages import POLICY_EVENT_TYPES
from schemas.rebalance_messages import REBALANCE_EVENT_TYPES
from schemas.receive_messages import RECEIVE_EVENT_TYPES
from schemas.reconciliation_messages import RECONCILIATION_EVENT_TYPES
from schemas.webhook_messages import WEBHOOK_EVENT_TYPES

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

EVENT_CLASSES: Final[Mapping[str, type[ev.EventData]]] = MappingProxyType(
    {
        **ev.EVENT_TYPES,
        **POLICY_EVENT_TYPES,
        **DEAD_LETTER_EVENT_TYPES,
        **AGENT_KEY_EVENT_TYPES,
        **RECONCILIATION_EVENT_TYPES,
        **WEBHOOK_EVENT_TYPES,
        **RECEIVE_EVENT_TYPES,
        **CHANNEL_OP_EVENT_TYPES,  # ADR 0234
        **REBALANCE_EVENT_TYPES,  # ADR 0244
        **JIT_EVENT_TYPES,  # ADR 0261
        **LSP_ORDER_EVENT_TYPES,  # ADR 0251
        **PAYEE_EVENT_TYPES,  # ADR 0270
    }
)


class EventVersionError(ValueError):
    """An event this reader cannot lift to its current shape. ``code`` names the reason."""

    code = "event_version_error"

    def __init__(self, message: str, *, event_type: str, version: object) -> None:
        super().__init__(message)
        self.event_type = event_type
        self.version = version


class UnknownEventType(EventVersionError):
    code = "unknown_event_type"


class EventVersionInvalid(EventVersionError):
    code = "event_version_invalid"


class EventVersionTooNew(EventVersionError):
    """Written by a newer Corridor than this reader: upgrade the reader (README "Upgrades")."""

    code = "event_version_too_new"


def _dispatched_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # Logged before work orders were signed (ADR 0063): version 2 with no signature.
    return {**payload, "key_id": None, "signature": None}


def _settled_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # The fee rate follows from the amounts every version 1 settlement holds (ADR 0078). A
    # payload without them is left for the schema check to refuse, by field, not here.
    fee, amount = payload.get("fee_msat"), payload.get("amount_msat")
    if not (isinstance(fee, int) and isinstance(amount, int)):
        return dict(payload)
    return {**payload, "fee_ppm": ev.fee_ppm_of(fee, amount)}


UPCASTERS: Final[Mapping[tuple[str, int], Upcaster]] = MappingProxyType(
    {
        ("IntentDispatched", 1): _dispatched_v1_to_v2,
        ("IntentSettled", 1): _settled_v1_to_v2,
    }
)


def current_version(event_type: str) -> int:
    cls = EVENT_CLASSES.get(event_type)
    if cls is None:
        raise UnknownEventType(
            f"unknown event type {event_type!r}", event_type=event_type, version=None
        )
    return cls.VERSION


def upcast(event_type: str, version: object, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` of a ``version`` event of ``event_type``, lifted to the current version."""
    current = current_version(event_type)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise EventVersionInvalid(
            f"{event_type} version {version!r} is not a schema version (they count from 1)",
            event_type=event_type,
            version=version,
        )
    if version > current:
        raise EventVersionTooNew(
            f"{event_type} v{version} is newer than this reader knows (v{current}): "
            "upgrade it before reading this log",
            event_type=event_type,
            version=version,
        )
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:  # a gap in the table: a bug, caught by the table's test
            raise EventVersionError(
                f"no upcaster for {event_type} v{version}", event_type=event_type, version=version
            )
        payload = step(payload)
        version += 1
    return payload


def decode(event_type: str, version: object, payload: dict[str, Any]) -> ev.EventData:
    """The current-shape event for a stored ``(type, version, payload)``."""
    return msgspec.convert(upcast(event_type, version, payload), EVENT_CLASSES[event_type])


def upcast_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A recorded event as a dict (``corridor replay`` output), its ``data`` lifted to the
    current version: what the projections fold. An event type they do not know passes as is
    (projections ignore what they do not fold); a bad or newer version is refused."""
    event_type = record["type"]
    if event_type not in EVENT_CLASSES:
        return dict(record)
    version = record.get("version")  # never assumed: a missing version is refused
    data = upcast(event_type, version, dict(record["data"]))
    return {**record, "version": EVENT_CLASSES[event_type].VERSION, "data": data}
