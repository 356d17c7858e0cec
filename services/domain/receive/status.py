"""The statuses of a receive intent (ADR 0220)."""

from __future__ import annotations

import enum


class ReceiveStatus(enum.StrEnum):
    REQUESTED = "requested"
    DISPATCHED = "dispatched"  # the work order is out: the node is asked for the invoice
    ISSUED = "issued"  # the node holds the invoice; it is payable
    PAID = "paid"  # the node settled it: the amount is ours, credited once
    EXPIRED = "expired"  # the node holds it expired (or cancelled), unpaid
    FAILED = "failed"  # no invoice could be issued
