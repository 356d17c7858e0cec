"""Commands, events and replies of reconciliation against the nodes' records (issue 15).

A region's reconciler compares our log with each node's own payment list and reports what
disagrees; the engine records each disagreement once, as an exception item on the node's
stream ``reconciliation-<node>``. A payment the node made that we never dispatched trips the
node's circuit breaker where the region enables it (ADR 0151): the router skips the node
until an operator clears it.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import CallerId, Hex32, IntentId, Message, Reason, Region
from schemas.events import EventData

# One report carries what one pass found on one node. A pass that finds more reports in
# several commands; the bound keeps a report far below COMMAND_BYTES_MAX (about 400 bytes a
# finding).
FINDINGS_PER_REPORT_MAX: Final = 100
# Evidence is a handful of node and log facts (statuses, amounts), never free text from a node.
EVIDENCE_ENTRIES_MAX: Final = 12
EVIDENCE_KEY_CHARS_MAX: Final = 32
EVIDENCE_TEXT_CHARS_MAX: Final = 64
# "<category>:<payment hash>": the longest category is 21 characters.
MISMATCH_KEY_CHARS_MAX: Final = 96
RECONCILIATION_STREAM_PREFIX: Final = "reconciliation-"
# A cursor is a node's creation index (LND uint64, CLN u64) or a log position (bigint), stored
# in a bigint checkpoint: larger values cannot be stored, so they are refused at the edge.
CURSOR_MAX: Final = 2**63 - 1

Category = Literal[
    "failed_but_node_paid",
    "paid_but_node_not",
    "stuck_in_flight",
    "amount_mismatch",
    "unexpected_payment",
    # A receive's invoice (ADR 0220): settled on the node, not credited in the log; or the reverse.
    "paid_not_credited",
    "credited_but_node_not",
]
MismatchKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MISMATCH_KEY_CHARS_MAX)]
EvidenceKey = Annotated[str, msgspec.Meta(min_length=1, max_length=EVIDENCE_KEY_CHARS_MAX)]
EvidenceText = Annotated[str, msgspec.Meta(max_length=EVIDENCE_TEXT_CHARS_MAX)]
Evidence = Annotated[
    dict[EvidenceKey, EvidenceText | int | None], msgspec.Meta(max_length=EVIDENCE_ENTRIES_MAX)
]


def reconciliation_stream(node: str) -> str:
    return f"{RECONCILIATION_STREAM_PREFIX}{node}"


class MismatchFinding(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    key: MismatchKey
    category: Category
    payment_hash: Hex32
    intent_id: IntentId | None = None
    attempt: int | None = None
    evidence: Evidence = msgspec.field(default_factory=dict)


Cursor = Annotated[int, msgspec.Meta(ge=0, le=CURSOR_MAX)]


class PassCursor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the node's next pass resumes (ADR 0163): past the node's records that are final
    (``index_after``, the node's own creation index) and past the log positions whose attempts
    were all looked up (``log_after``)."""

    index_after: Cursor
    log_after: Cursor


class ReportReconciliation(Message, frozen=True, kw_only=True):
    """A reconciler's pass over one node: the disagreements it found, and the keys of open
    items it found consistent now. ``trip_breaker``: the region enables the breaker.
    ``cursor``, on a pass's last report: the engine stores it once the report is committed,
    so the reconciler needs no write access to the database."""

    node: CallerId
    region: Region
    found: Annotated[tuple[MismatchFinding, ...], msgspec.Meta(max_length=FINDINGS_PER_REPORT_MAX)]
    consistent: Annotated[tuple[MismatchKey, ...], msgspec.Meta(max_length=FINDINGS_PER_REPORT_MAX)]
    trip_breaker: bool = False
    cursor: PassCursor | None = None
    version: Literal[1] = 1


class ResolveReconciliationMismatch(Message, frozen=True, kw_only=True):
    """An operator closes one open item, with the reason and evidence they hold."""

    node: CallerId
    key: MismatchKey
    operator_id: CallerId
    reason: Reason
    # What the operator checked (a node's record, a ticket), kept in the event.
    evidence: Annotated[str, msgspec.Meta(max_length=limits.EVIDENCE_CHARS_MAX)] = ""
    version: Literal[1] = 1


class ClearNodeBreaker(Message, frozen=True, kw_only=True):
    """An operator lets a node send again: its unexpected-payment items close with the reason."""

    node: CallerId
    operator_id: CallerId
    reason: Reason
    version: Literal[1] = 1


class ReconciliationMismatchFound(EventData, frozen=True, kw_only=True):
    node: str
    region: str
    key: str
    category: Category
    payment_hash: str
    intent_id: str | None = None
    attempt: int | None = None
    evidence: dict[str, str | int | None] = msgspec.field(default_factory=dict)
    found_at_ms: int


class ReconciliationMismatchResolved(EventData, frozen=True, kw_only=True):
    node: str
    key: str
    category: Category
    by: Literal["reconciler", "operator"]
    operator_id: str | None = None
    reason: str = ""
    evidence: str = ""
    found_at_ms: int
    resolved_at_ms: int


class NodeBreakerTripped(EventData, frozen=True, kw_only=True):
    """From this event on, the engine routes no new payment to the node."""

    node: str
    region: str
    key: str  # the unexpected payment that tripped it
    tripped_at_ms: int


class NodeBreakerCleared(EventData, frozen=True, kw_only=True):
    node: str
    region: str
    operator_id: str
    reason: str
    cleared_at_ms: int


class ReconciliationCommandAccepted(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """A report, resolution or clear is durably committed (``duplicate``: nothing was new)."""

    ok: Literal[True] = True
    node: str
    found: int = 0
    resolved: int = 0
    breaker_tripped: bool = False
    duplicate: bool = False
    version: Literal[1] = 1


ReconciliationCommand = ReportReconciliation | ResolveReconciliationMismatch | ClearNodeBreaker
RECONCILIATION_COMMAND_TYPES: tuple[type[ReconciliationCommand], ...] = (
    ReportReconciliation,
    ResolveReconciliationMismatch,
    ClearNodeBreaker,
)
RECONCILIATION_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls
    for cls in (
        ReconciliationMismatchFound,
        ReconciliationMismatchResolved,
        NodeBreakerTripped,
        NodeBreakerCleared,
    )
}
