"""An LSP order's stream id: a UUID of (caller, idempotency key), one order per key."""

from __future__ import annotations

import uuid
from typing import Final

from schemas import lsp_messages as lm

_ORDER_NS: Final = uuid.UUID("5f0c2d8e-7b1a-4c3e-9a6d-2e8f4b7c1d05")


def lsp_order_id_for(caller_id: str, idempotency_key: str) -> str:
    return lm.LSP_ORDER_STREAM_PREFIX + str(
        uuid.uuid5(_ORDER_NS, f"{caller_id}\x1f{idempotency_key}")
    )
