"""Intent histories for pilot-metric tests, written with the real event classes.

``Story`` writes one intent's events as recorded dicts (``type``, ``version``, ``stream_id``,
``recorded_at_ms``, ``data``), the shape ``projections.intents.apply`` and
``projections.pilot_metrics`` fold; ``docs`` folds stories into intent documents the way the
projection runner does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from projections import intents
from schemas import events as ev
from schemas import reconciliation_messages as rm
from schemas.common import Caller

DESTINATION = "02" + "11" * 32
PREIMAGE = "ab" * 32


class Story:
    def __init__(
        self,
        intent_id: str,
        *,
        amount_msat: int = 5_000_000,
        received_at_ms: int = 1_000,
        corridor: str = "us-eu",
        tier: str | None = "auto",
    ) -> None:
        self.intent_id, self.amount_msat, self.at_ms = intent_id, amount_msat, received_at_ms
        self.attempt = 0
        self.events: list[dict[str, Any]] = []
        self.typed: list[tuple[int, Any]] = []  # (recorded_at_ms, event data), for a real log
        self._add(received_at_ms, ev.IntentReceived(
            intent_id=intent_id, caller=Caller(id="acme", kind="service"),
            idempotency_key=intent_id, corridor=corridor, amount_msat=amount_msat,
            max_fee_msat=amount_msat // 100, destination=DESTINATION,
            received_at_ms=received_at_ms, request_fingerprint="f" * 64,
        ))  # fmt: skip
        if tier is not None:
            self._add(received_at_ms, ev.IntentPolicyChecked(tier=tier, policy_version=1))  # type: ignore[arg-type]

    def _add(self, at_ms: int, data: Any) -> Story:
        self.typed.append((at_ms, data))
        self.events.append({
            "type": type(data).__name__, "version": data.VERSION, "stream_id": self.intent_id,
            "recorded_at_ms": at_ms, "data": msgspec.to_builtins(data),
        })  # fmt: skip
        return self

    def dispatched(self, at_ms: int) -> Story:
        self.attempt += 1
        return self._add(at_ms, ev.IntentDispatched(
            attempt=self.attempt, region="eu", node="eu-lnd", amount_msat=self.amount_msat,
            max_fee_msat=self.amount_msat // 100, destination=DESTINATION, pay_timeout_s=60,
        ))  # fmt: skip

    def attempt_failed(self, at_ms: int, reason: str = "node_unavailable") -> Story:
        return self._add(at_ms, ev.PaymentAttemptFailed(
            attempt=self.attempt, reason=reason, confirmed_not_paid=True))  # fmt: skip

    def in_doubt(self, at_ms: int, reason: str = "timeout") -> Story:
        return self._add(at_ms, ev.PaymentInDoubt(attempt=self.attempt, reason=reason))

    def settled(self, at_ms: int, fee_msat: int) -> Story:
        self._add(at_ms, ev.PaymentSucceeded(attempt=self.attempt, payment_hash=None,
                                             preimage=PREIMAGE, fee_msat=fee_msat))  # fmt: skip
        return self._add(at_ms, ev.IntentSettled(
            amount_msat=self.amount_msat, fee_msat=fee_msat,
            total_msat=self.amount_msat + fee_msat, preimage=PREIMAGE,
            fee_ppm=fee_msat * 1_000_000 // self.amount_msat,
        ))  # fmt: skip

    def failed(self, at_ms: int, reason: str = "retry_budget_exhausted") -> Story:
        return self._add(at_ms, ev.IntentFailed(reason=reason, attempts=self.attempt))

    def resolved(self, at_ms: int, resolution: str = "not_paid") -> Story:
        """An operator settles an in-doubt attempt with evidence (and the intent fails, for
        ``not_paid``)."""
        self._add(at_ms, ev.IntentResolved(
            operator_id="ops-bob", resolution=resolution,  # type: ignore[arg-type]
            evidence="node says no payment", attempt=self.attempt,
        ))  # fmt: skip
        return self.failed(at_ms, "resolved_not_paid") if resolution == "not_paid" else self

    def approval_requested(self, at_ms: int) -> Story:
        return self._add(at_ms, ev.IntentApprovalRequested())

    def approved(self, at_ms: int, operator_id: str = "ops-alice") -> Story:
        return self._add(at_ms, ev.IntentApproved(operator_id=operator_id))

    def rejected_by_operator(self, at_ms: int, operator_id: str = "ops-alice") -> Story:
        return self._add(
            at_ms, ev.IntentRejected(by="operator", reason="no", operator_id=operator_id)
        )


def docs(stories: Iterable[Story]) -> list[dict[str, Any]]:
    out = []
    for story in stories:
        doc = None
        for event in story.events:
            doc = intents.apply(doc, event)
        assert doc is not None
        out.append(doc)
    return out


def events(stories: Iterable[Story]) -> list[dict[str, Any]]:
    return [e for story in stories for e in story.events]


def recon_typed(
    node: str, key: str, *, found_at_ms: int, resolved_at_ms: int | None = None
) -> list[tuple[int, Any]]:
    """A reconciliation item found (and resolved) on ``node``: (recorded_at_ms, event)."""
    out: list[tuple[int, Any]] = [(found_at_ms, rm.ReconciliationMismatchFound(
        node=node, region="eu", key=key, category="unexpected_payment", payment_hash="cd" * 32,
        found_at_ms=found_at_ms,
    ))]  # fmt: skip
    if resolved_at_ms is not None:
        out.append((resolved_at_ms, rm.ReconciliationMismatchResolved(
            node=node, key=key, category="unexpected_payment", by="operator",
            operator_id="ops-bob", reason="checked", found_at_ms=found_at_ms,
            resolved_at_ms=resolved_at_ms,
        )))  # fmt: skip
    return out


def recon_events(
    node: str, key: str, *, found_at_ms: int, resolved_at_ms: int | None = None
) -> list[dict[str, Any]]:
    """The same, as recorded events."""
    return [
        {"type": type(data).__name__, "version": data.VERSION,
         "stream_id": f"reconciliation-{node}", "recorded_at_ms": at_ms,
         "data": msgspec.to_builtins(data)}
        for at_ms, data in recon_typed(node, key, found_at_ms=found_at_ms,
                                       resolved_at_ms=resolved_at_ms)
    ]  # fmt: skip


class FoldedSource:
    """The pilot report's source over recorded events, folded with the projection runner's
    own fold (``projections.runner.fold``) into the documents it stores."""

    def __init__(self, recorded: Iterable[dict[str, Any]]) -> None:
        from projections.catalog import INTENTS
        from projections.reconciliation_time import reconciliation_items
        from projections.runner import fold
        from schemas.upcasting import upcast_record

        upcast = [upcast_record(e) for e in recorded]
        docs: dict[str, dict[str, Any] | None] = {}
        fold(INTENTS, docs, upcast)
        self.docs = {k: d for k, d in docs.items() if d is not None}
        self.items = reconciliation_items(upcast)

    async def intent_docs(
        self, *, received_from_ms: int, received_to_ms: int
    ) -> list[dict[str, Any]]:
        return [d for d in self.docs.values()
                if received_from_ms <= d["received_at_ms"] < received_to_ms]  # fmt: skip

    async def reconciliation_docs(self) -> list[dict[str, Any]]:
        return list(self.items)
