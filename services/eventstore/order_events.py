"""Which logged events are work orders the sweeper may re-issue, and which end them (ADR 0075,
ADR 0249). One source for every store's ``open_orders_between``.

A payment's order waits until the intent settles or fails; a rebalance's until it succeeds or
fails with the node's proof; a receive's until the node's invoice is recorded (issued, paid,
expired) or the receive failed: after ``InvoiceIssued`` the settlement follower, not the
order, carries it. A channel operation's order (its signed request, or for tier approval its
approval, ADR 0236) waits until the channel opened or closed, or an operator declined it
(ADR 0280). Stream ids are per kind, so one set of endings serves all four.
"""

from __future__ import annotations

from typing import Final

REISSUABLE_ORDERS: Final = (
    "IntentDispatched", "RebalanceDispatched", "ReceiveDispatched",
    "ChannelOpenRequested", "ChannelCloseRequested", "ChannelOpenApproved",
)  # fmt: skip
ORDER_ENDINGS: Final = (
    "IntentSettled", "IntentFailed",
    "RebalanceSucceeded", "RebalanceFailed",
    "InvoiceIssued", "InvoicePaid", "InvoiceExpired", "ReceiveFailed",
    "ChannelOpened", "ChannelClosed", "ChannelOpDeclined",
)  # fmt: skip
