"""Commands and events of rebalances, an intent kind of its own (issue 18, ADR 0244).

The liquidity planner (a caller of kind ``service``) asks for a move of ``amount_msat`` from a
node of ours in one region to a node of ours in another (``RequestRebalance``). The engine
records ``RebalanceRequested`` with the planner's explanation on the rebalance's own stream
``rbl-<uuid>``, reserves the move's whole ``max_fee_msat`` against the source region's fee
budget of the UTC day on that day's budget stream (``RebalanceBudgetReserved``, ADR 0245), and
dispatches a signed work order (``RebalanceDispatched``) to the source node's executor. The
executor pays it as it pays a keysend payment (ADR 0202, 0203: the preimage derived from the
rebalance id, the node's record looked up before any second send) and reports with
``RecordPaymentOutcome``; the engine records ``RebalanceInFlight``, ``RebalanceSucceeded``
(the fee paid) or ``RebalanceFailed``, and releases what the move did not spend
(``RebalanceBudgetReleased``). A dry-run request records ``RebalanceProposed`` only (ADR 0246).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import (
    AmountMsat,
    Caller,
    Message,
    Metadata,
    NodePubkey,
    PositiveAmountMsat,
    Region,
)
from schemas.events import EventData, Tier

REBALANCE_STREAM_PREFIX: Final = "rbl-"
# One stream per source region and UTC day holds that day's fee reservations (ADR 0245).
REBALANCE_BUDGET_STREAM_PREFIX: Final = "rblb-"
DAY_MS: Final = 86_400_000
# Our node names (executor targets): as channel operations name them.
NODE_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
NodeName = Annotated[str, msgspec.Meta(pattern=NODE_NAME_PATTERN)]
RebalanceMode = Literal["cross_region", "circular"]
RejectReason = Literal[
    "fee_budget_exhausted", "bad_circle", "same_region", "bad_invoice", "not_our_node"
]
PaymentRequest = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.PAYMENT_REQUEST_CHARS_MAX)
]
# A short channel id as BLOCKxTXxOUT (lnd's uint64 chan_id is converted at the adapter).
SCID_PATTERN: Final = r"^[0-9]{1,8}x[0-9]{1,8}x[0-9]{1,5}$"
ShortChannelId = Annotated[str, msgspec.Meta(pattern=SCID_PATTERN)]


def is_rebalance_stream(stream_id: str) -> bool:
    return stream_id.startswith(REBALANCE_STREAM_PREFIX)


def is_rebalance_budget_stream(stream_id: str) -> bool:
    return stream_id.startswith(REBALANCE_BUDGET_STREAM_PREFIX)


def budget_day(now_ms: int) -> int:
    """The UTC day (days since the epoch) a budget is kept for."""
    return now_ms // DAY_MS


def budget_stream_id(region: str, day: int) -> str:
    """``rblb-<region>-<day>``: the region's fee reservations of that UTC day (ADR 0245)."""
    return f"{REBALANCE_BUDGET_STREAM_PREFIX}{region}-{day}"


class RequestRebalance(Message, frozen=True, kw_only=True):
    """Move ``amount_msat`` from ``source_node`` (in ``source_region``) to ``target_node``
    (``destination`` is its pubkey), paying at most ``max_fee_msat`` in routing fees.

    ``mode`` ``cross_region``: between our own nodes of two regions. ``circular``: out of
    ``outgoing_channel_id`` of ``source_node`` and back in from the peer ``last_hop_pubkey``
    over another channel of the same node (target = source, ``destination`` its pubkey;
    ADR 0247); both fields are for circular moves only. ``explanation``: why the planner
    proposes the move, kept in the log. ``dry_run``: record the proposal
    (``RebalanceProposed``) and nothing else. The same ``idempotency_key`` with the same
    request is the same rebalance; with a different one, ``idempotency_mismatch``.
    ``caller`` must be the sender's credential. ``payment_request``: a cross-region move
    whose source cannot keysend (a CLN node) pays this invoice of the target node instead,
    issued by a receive intent there (ADR 0248); it must name ``destination`` and
    ``amount_msat``.
    """

    idempotency_key: IdempotencyKey
    caller: Caller
    source_region: Region
    source_node: NodeName
    target_region: Region
    target_node: NodeName
    destination: NodePubkey
    amount_msat: PositiveAmountMsat
    max_fee_msat: AmountMsat
    mode: RebalanceMode = "cross_region"
    outgoing_channel_id: ShortChannelId | None = None
    last_hop_pubkey: NodePubkey | None = None
    payment_request: PaymentRequest | None = None
    explanation: Metadata = msgspec.field(default_factory=dict)
    dry_run: bool = False
    version: Literal[1] = 1


class ApproveRebalance(Message, frozen=True, kw_only=True):
    """An operator approves a rebalance over the auto limit (tier ``approval``): it is judged
    against today's fee budget of its source region and, within it, dispatched (ADR 0244).
    ``operator_id`` must be the sender's credential."""

    rebalance_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    operator_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    version: Literal[1] = 1


REBALANCE_COMMAND_TYPES: Final = (RequestRebalance, ApproveRebalance)


class RebalanceProposed(EventData, frozen=True, kw_only=True):
    """A dry-run move, recorded with its explanation; nothing is reserved or sent."""

    rebalance_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    mode: RebalanceMode
    source_region: str
    source_node: str
    target_region: str
    target_node: str
    destination: str
    amount_msat: AmountMsat
    max_fee_msat: AmountMsat
    explanation: dict[str, str] = msgspec.field(default_factory=dict)
    proposed_at_ms: int


class RebalanceRequested(EventData, frozen=True, kw_only=True):
    rebalance_id: str
    caller: Caller
    idempotency_key: str
    request_fingerprint: str
    mode: RebalanceMode
    source_region: str
    source_node: str
    target_region: str
    target_node: str
    destination: str
    amount_msat: AmountMsat
    max_fee_msat: AmountMsat
    explanation: dict[str, str] = msgspec.field(default_factory=dict)
    # ``auto`` up to the engine's rebalance limit, else ``approval`` (ADR 0244).
    tier: Tier
    received_at_ms: int
    # The budget stream this move's fee is reserved on (the source region's UTC day).
    budget_stream: str
    outgoing_channel_id: str | None = None  # circular moves (ADR 0247)
    last_hop_pubkey: str | None = None
    payment_request: str | None = None  # the target's invoice (ADR 0248)
    payment_hash: str | None = None  # its hash, as the engine decoded it


class RebalanceApproved(EventData, frozen=True, kw_only=True):
    """An operator approved a move of tier ``approval``; its fee is reserved on
    ``budget_stream`` (today's of its source region) in the same batch."""

    operator_id: str
    budget_stream: str


class RebalanceRejected(EventData, frozen=True, kw_only=True):
    """Refused before anything was sent: audited, nothing reserved. ``field``: the request's
    field refused (``not_our_node``: ``source_node``, ``target_node`` or ``destination``)."""

    reason: RejectReason
    detail: str = ""
    field: str | None = None


class RebalanceDispatched(EventData, frozen=True, kw_only=True):
    """The work order for the source node's executor: a keysend of ``amount_msat`` to
    ``destination``, at most ``max_fee_msat`` in fees. Signed by the engine
    (``services/signing/rebalance_orders.py``); the preimage is the executor's (ADR 0202)."""

    region: str
    node: str
    destination: str
    amount_msat: AmountMsat
    max_fee_msat: AmountMsat
    pay_timeout_s: int
    # A circular move (ADR 0247): the node pays its own invoice out of this channel and back
    # in from this peer. Unset for a cross-region keysend.
    outgoing_channel_id: str | None = None
    last_hop_pubkey: str | None = None
    # The target's invoice, paid instead of a keysend (a CLN source, ADR 0248).
    payment_request: str | None = None
    payment_hash: str | None = None
    key_id: str | None = None
    signature: str | None = None


class RebalanceInFlight(EventData, frozen=True, kw_only=True):
    payment_hash: str | None = None


class RebalanceSucceeded(EventData, frozen=True, kw_only=True):
    payment_hash: str
    preimage: str
    fee_msat: AmountMsat


class RebalanceFailed(EventData, frozen=True, kw_only=True):
    """The node's proof that the move did not and cannot pay (ADR 0203)."""

    reason: str
    detail: str = ""
    payment_hash: str | None = None


class RebalanceBudgetReserved(EventData, frozen=True, kw_only=True):
    """On the budget stream: ``reserved_msat`` (the move's whole max fee) held against
    ``budget_msat``, the source region's fee budget of the day; ``used_before_msat`` is what
    the day had spent or held before."""

    rebalance_id: str
    source_region: str
    day: int
    reserved_msat: AmountMsat
    used_before_msat: AmountMsat
    budget_msat: AmountMsat


class RebalanceBudgetReleased(EventData, frozen=True, kw_only=True):
    """On the budget stream: the move ended; ``spent_msat`` stays used, the rest of its
    reservation (``released_msat``) is free again."""

    rebalance_id: str
    source_region: str
    day: int
    spent_msat: AmountMsat
    released_msat: AmountMsat


_EVENTS: Final[tuple[type[EventData], ...]] = (
    RebalanceProposed, RebalanceRequested, RebalanceApproved, RebalanceRejected,
    RebalanceDispatched,
    RebalanceInFlight, RebalanceSucceeded, RebalanceFailed, RebalanceBudgetReserved,
    RebalanceBudgetReleased,
)  # fmt: skip
REBALANCE_EVENT_TYPES: Final[dict[str, type[EventData]]] = {cls.__name__: cls for cls in _EVENTS}
BUDGET_EVENTS: Final = frozenset({"RebalanceBudgetReserved", "RebalanceBudgetReleased"})
