"""Rebalances in the whole-engine simulation (issue 18, ADR 0244-0249, 0280, 0282): the
planner's service credential asks for cross-region keysend moves between our nodes and circular
moves within one node, an operator approves the moves over the auto tier, all while the
world's faults go on. Its own seeded draws, so the payment and receive workloads are unchanged.

A rebalance pays one of our nodes (ADR 0249), and nothing else in the world does: every
succeeded payment on the network's ledger from a node of ours to a node of ours is a rebalance's
payment. That is what the invariants hold the log to (``rebalance_invariants``):

- ``rebalance_paid_once``: no rebalance has two succeeded payments on the ledger, and no
  succeeded payment between our nodes is left that no rebalance of the log owns by its hash
  (at rest: a move paid a second time under another hash shows up here);
- ``rebalance_success_matches_network``: a ``RebalanceSucceeded`` is exactly one succeeded
  payment of its hash, from its node to its target, for its amount and fee; a
  ``RebalanceFailed`` has no succeeded payment;
- ``rebalance_budget_holds``: folded in log order, each day's budget stream reserves once per
  rebalance, releases once after it, what it releases is its reservation less what it spent,
  what it spent is the ledger's fee (a channel operation's: its judged on-chain fee, ADR 0285,
  once it opened or closed), and spent plus held never exceeds the budget;
- ``rebalance_at_rest`` (at rest): every requested rebalance ended (``succeeded``,
  ``failed``, ``rejected``) or waits for an operator (``awaiting_approval``), as a payment
  may rest in the approval queue (``invariants.at_rest``); on the wire is stuck.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from schemas.channel_messages import is_channel_op_stream
from schemas.rebalance_messages import (
    is_rebalance_budget_stream,
    is_rebalance_stream,
)
from services.bus import subjects
from services.domain.rebalance.state import FINAL_STATUSES, RebalanceStatus
from services.eventstore.port import StoredEvent
from services.sim.network import SimNetwork
from services.sim.records import SimPayment
from services.simulation.invariants import Violation, by_stream

REBALANCE_PAID_ONCE: Final = "rebalance_paid_once"
REBALANCE_SUCCESS_MATCHES_NETWORK: Final = "rebalance_success_matches_network"
REBALANCE_BUDGET_HOLDS: Final = "rebalance_budget_holds"
REBALANCE_AT_REST: Final = "rebalance_at_rest"
PLANNER: Final = "liquidity-planner"  # a service caller, as the planner's credential is
# The share of steps a move is asked for, and of those a circle (on an LND node).
REBALANCE_SHARE: Final = 0.35
CIRCLE_SHARE: Final = 0.35
# Amounts in msat: the top of the range is over the engine's default auto tier (10,000,000),
# so some moves wait for the operator.
AMOUNT_MSAT_MIN: Final = 100_000
AMOUNT_MSAT_MAX: Final = 12_000_000
# Fees held per move: a few moves exhaust a region's default day budget (100,000 msat), so
# refusals for the budget happen within a run too.
MAX_FEE_MSAT_MIN: Final = 5_000
MAX_FEE_MSAT_MAX: Final = 40_000
# The share of requests asked again later with the same key (an idempotent repeat), and of
# steps the operator approves one waiting move.
REPEAT_SHARE: Final = 0.2
APPROVE_SHARE: Final = 0.3
# At rest a rebalance may still wait for an operator, and nothing else.
RESTING: Final = frozenset({*FINAL_STATUSES, RebalanceStatus.AWAITING_APPROVAL})

Ask = Callable[[str, str, dict[str, Any]], Any]  # (connection id, subject, body) -> answer


class RebalanceWorkload:
    def __init__(self, seed: int, *, network: SimNetwork, ours: Mapping[str, str]) -> None:
        self.rng = random.Random(f"rebalances:{seed}")
        self._network = network
        self._ours = dict(sorted(ours.items()))  # node -> region
        self._keys = 0
        self._asked: list[dict[str, Any]] = []  # bodies, for idempotent repeats
        self.created: dict[str, str] = {}  # rebalance id -> state the engine first answered
        self.waiting: dict[str, None] = {}  # rebalances an operator has to approve

    def step(self, spawn: Callable[[Any], None], ask: Ask, operator: str) -> None:
        if self.rng.random() < REBALANCE_SHARE:
            body = self._circle() if self.rng.random() < CIRCLE_SHARE else self._cross()
            if body is not None:
                self._asked.append(body)
                spawn(self._request(ask, body))
        if self._asked and self.rng.random() < REPEAT_SHARE:
            spawn(self._request(ask, self._asked[self.rng.randrange(len(self._asked))]))
        if self.waiting and self.rng.random() < APPROVE_SHARE:
            rebalance_id = sorted(self.waiting)[self.rng.randrange(len(self.waiting))]
            spawn(self.approve(ask, operator, rebalance_id))

    def _body(self, source: str, target: str, **fields: Any) -> dict[str, Any]:
        self._keys += 1
        return {
            "type": "RequestRebalance", "version": 1, "idempotency_key": f"sim-rbl-{self._keys}",
            "caller": {"id": PLANNER, "kind": "service"},
            "source_region": self._ours[source], "source_node": source,
            "target_region": self._ours[target], "target_node": target,
            "destination": self._network.nodes[target].pubkey,
            "amount_msat": self.rng.randrange(AMOUNT_MSAT_MIN, AMOUNT_MSAT_MAX),
            "max_fee_msat": self.rng.randrange(MAX_FEE_MSAT_MIN, MAX_FEE_MSAT_MAX),
            "explanation": {"reason": "simulation"},
        } | fields  # fmt: skip

    def _lnd_nodes(self) -> list[str]:
        # Only an LND source keysends and routes circles (ADR 0247, 0248), as in production.
        return [n for n in self._ours if self._network.nodes[n].implementation == "lnd"]

    def _cross(self) -> dict[str, Any] | None:
        source = self._pick(self._lnd_nodes())
        targets = [n for n, region in self._ours.items() if region != self._ours[source]]
        return self._body(source, self._pick(targets), mode="cross_region")

    def _circle(self) -> dict[str, Any] | None:
        """Out of one channel of an LND node of ours, back in from the peer of another."""
        node = self._pick(self._lnd_nodes())
        channels = sorted(self._network.channels_of(node), key=lambda c: c.channel_id)
        if len(channels) < 2:
            return None
        out = channels[self.rng.randrange(len(channels))]
        back = self._pick([c.peer for c in channels if c.channel_id != out.channel_id])
        return self._body(
            node, node, mode="circular", outgoing_channel_id=out.channel_id,
            last_hop_pubkey=self._network.nodes[back].pubkey,
        )  # fmt: skip

    def _pick(self, items: Sequence[str]) -> str:
        return items[self.rng.randrange(len(items))]

    async def _request(self, ask: Ask, body: dict[str, Any]) -> None:
        answer = await ask(PLANNER, f"{subjects.API_PREFIX}.rebalance.{PLANNER}", body)
        if not answer.get("ok"):
            return
        rebalance_id = str(answer["intent_id"])
        self.created.setdefault(rebalance_id, str(answer.get("state")))
        if answer.get("state") == RebalanceStatus.AWAITING_APPROVAL:
            self.waiting[rebalance_id] = None

    async def approve(self, ask: Ask, operator: str, rebalance_id: str) -> None:
        self.waiting.pop(rebalance_id, None)
        body = {
            "type": "ApproveRebalance", "version": 1, "rebalance_id": rebalance_id,
            "operator_id": operator,
        }  # fmt: skip
        await ask(operator, f"{subjects.API_PREFIX}.rebalance_approve.{operator}", body)


def between_ours(payments: Iterable[SimPayment], ours: Iterable[str]) -> list[SimPayment]:
    """The ledger's payments from a node of ours to a node of ours: rebalances' only."""
    mine = set(ours)
    return [p for p in payments if p.origin in mine and p.destination in mine]


def rebalance_invariants(
    events: Iterable[StoredEvent], payments: Sequence[SimPayment], *, at_rest: bool
) -> list[Violation]:
    streams = by_stream(events)
    succeeded: dict[str, list[SimPayment]] = {}
    for payment in payments:
        if payment.status == "succeeded":
            succeeded.setdefault(payment.payment_hash, []).append(payment)
    out: list[Violation] = []
    owned: set[str] = set()
    fees: dict[str, int] = {}  # rebalance -> fee the ledger says it paid
    for stream_id, history in streams.items():
        if not is_rebalance_stream(stream_id) or history[0].type != "RebalanceRequested":
            continue
        out += _one_rebalance(stream_id, history, succeeded, owned, fees, at_rest=at_rest)
    if at_rest:
        for payment_hash, paid in sorted(succeeded.items()):
            if payment_hash not in owned:
                out.append(Violation(REBALANCE_PAID_ONCE, f"{len(paid)} succeeded payment(s) "
                                     "between our nodes that no rebalance owns",
                                     payment_hash))  # fmt: skip
    for stream_id, history in streams.items():
        if is_rebalance_budget_stream(stream_id):
            out += _budget(stream_id, history, fees, streams)
    return out


def _one_rebalance(
    stream_id: str,
    history: list[StoredEvent],
    succeeded: Mapping[str, list[SimPayment]],
    owned: set[str],
    fees: dict[str, int],
    *,
    at_rest: bool,
) -> list[Violation]:
    out: list[Violation] = []
    requested = history[0].payload
    hashes = {e.payload["payment_hash"] for e in history if e.payload.get("payment_hash")}
    owned.update(hashes)
    paid = [p for h in sorted(hashes) for p in succeeded.get(h, ())]
    if len(paid) > 1:
        out.append(Violation(REBALANCE_PAID_ONCE, f"{len(paid)} succeeded payments", stream_id))
    for event in history:
        if event.type == "RebalanceSucceeded":
            out += _success(stream_id, requested, event.payload, succeeded)
            matched = succeeded.get(event.payload["payment_hash"], [])
            if matched:
                fees[stream_id] = matched[0].fee_msat
        elif event.type == "RebalanceFailed" and paid:
            detail = "failed with proof, yet paid on the network"
            out.append(Violation(REBALANCE_SUCCESS_MATCHES_NETWORK, detail, stream_id))
    status = _status(history)
    if at_rest and status not in RESTING:
        out.append(Violation(REBALANCE_AT_REST, f"left {status}", stream_id))
    return out


def _success(
    stream_id: str,
    requested: Mapping[str, Any],
    success: Mapping[str, Any],
    succeeded: Mapping[str, list[SimPayment]],
) -> list[Violation]:
    matched = succeeded.get(success["payment_hash"], [])
    if len(matched) != 1:
        detail = f"{len(matched)} succeeded payments of its hash on the network"
        return [Violation(REBALANCE_SUCCESS_MATCHES_NETWORK, detail, stream_id)]
    paid = matched[0]
    want = (requested["source_node"], requested["target_node"], requested["amount_msat"],
            success["fee_msat"])  # fmt: skip
    got = (paid.origin, paid.destination, paid.amount_msat, paid.fee_msat)
    if want != got:
        detail = f"log (from, to, amount, fee) {want}, network {got}"
        return [Violation(REBALANCE_SUCCESS_MATCHES_NETWORK, detail, stream_id)]
    return []


def _status(history: list[StoredEvent]) -> str:
    status = RebalanceStatus.AWAITING_APPROVAL
    for event in history[1:]:
        status = _AFTER.get(event.type, status)
    return status


_AFTER: Final = {
    "RebalanceRejected": RebalanceStatus.REJECTED,
    "RebalanceApproved": RebalanceStatus.APPROVED,
    "RebalanceDispatched": RebalanceStatus.DISPATCHED,
    "RebalanceInFlight": RebalanceStatus.IN_FLIGHT,
    "RebalanceSucceeded": RebalanceStatus.SUCCEEDED,
    "RebalanceFailed": RebalanceStatus.FAILED,
}


def _budget(
    stream_id: str,
    history: list[StoredEvent],
    fees: Mapping[str, int],
    streams: Mapping[str, list[StoredEvent]],
) -> list[Violation]:
    """One region's day, folded in log order, independently of the domain's fold."""
    out: list[Violation] = []
    held: dict[str, int] = {}
    released: set[str] = set()
    # Rebalances and channel fees share the stream, each judged by its own limit (ADR 0285).
    spent_by_kind: dict[bool, int] = {False: 0, True: 0}
    for event in history:
        data = event.payload
        rebalance_id = data["rebalance_id"]
        channel = is_channel_op_stream(rebalance_id)
        if event.type == "RebalanceBudgetReserved":
            if rebalance_id in held or rebalance_id in released:
                out.append(Violation(REBALANCE_BUDGET_HOLDS, "reserved twice", rebalance_id))
            held[rebalance_id] = data["reserved_msat"]
            used_msat = spent_by_kind[channel] + sum(
                v for k, v in held.items() if is_channel_op_stream(k) == channel
            )
            if used_msat > data["budget_msat"]:
                out.append(Violation(REBALANCE_BUDGET_HOLDS, f"{stream_id}: {used_msat} msat "
                                     f"used of {data['budget_msat']}", rebalance_id))  # fmt: skip
        elif event.type == "RebalanceBudgetReleased":
            reserved = held.pop(rebalance_id, None)
            if reserved is None:
                out.append(Violation(REBALANCE_BUDGET_HOLDS, "released without a reservation",
                                     rebalance_id))  # fmt: skip
                continue
            released.add(rebalance_id)
            spent = data["spent_msat"]
            spent_by_kind[channel] += spent
            if data["released_msat"] != max(0, reserved - spent):
                out.append(Violation(REBALANCE_BUDGET_HOLDS, "released is not reserved less "
                                     "spent", rebalance_id))  # fmt: skip
            op = streams.get(rebalance_id, [])
            if is_channel_op_stream(rebalance_id):  # a channel fee (ADR 0285)
                expected = op[0].payload.get("onchain_fee_msat", 0) if op else 0
                ends = {"ChannelOpened", "ChannelClosed"}
            else:
                expected, ends = (
                    fees.get(rebalance_id, 0),
                    {"RebalanceSucceeded", "RebalanceFailed"},
                )
            if spent != expected:
                detail = f"spent {spent} msat, the network says {expected}"
                out.append(Violation(REBALANCE_BUDGET_HOLDS, detail, rebalance_id))
            if not {e.type for e in op} & ends:
                out.append(Violation(REBALANCE_BUDGET_HOLDS, "released before it ended",
                                     rebalance_id))  # fmt: skip
    return out
