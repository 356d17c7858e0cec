"""Reconciliation of LSP orders: which orders need a person.

An order we paid (or are paying) that the LSP neither completed nor failed (refunded) well
after its payment window is money out without the channel: an exception. So is an order
still waiting for the LSP's first answer past its deadline (the executor reports
``no_answer``, which fails it; until then it shows here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from services.domain.lsp_orders.state import LspOrder, LspOrderStatus

# After the payment window the LSP still needs to publish the funding transaction; an hour is
# generous for a hold invoice the LSP must settle or cancel before it expires anyway.
COMPLETION_GRACE_S: Final = 3600


class LspOrderException(msgspec.Struct, frozen=True, kw_only=True):
    lsp_order_id: str
    kind: str  # "paid_not_completed" | "no_answer"
    detail: str


def exceptions(orders: Iterable[LspOrder], *, now_s: int) -> list[LspOrderException]:
    found: list[LspOrderException] = []
    for order in orders:
        if order.status in (LspOrderStatus.PAYING, LspOrderStatus.PAID):
            assert order.expires_at_s is not None
            if now_s > order.expires_at_s + COMPLETION_GRACE_S:
                found.append(
                    LspOrderException(
                        lsp_order_id=order.lsp_order_id, kind="paid_not_completed",
                        detail=f"{order.status} past {order.expires_at_s} + grace",
                    )
                )  # fmt: skip
        elif order.status is LspOrderStatus.REQUESTED and now_s * 1000 > order.answer_deadline_ms:
            found.append(
                LspOrderException(
                    lsp_order_id=order.lsp_order_id, kind="no_answer",
                    detail="the LSP has not answered create_order",
                )
            )  # fmt: skip
    return found
