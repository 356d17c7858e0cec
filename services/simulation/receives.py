"""Receives in the whole-engine simulation (issue 18, ADR 0220/0221): callers create receive
intents on our regions, and simulated merchants pay most of the invoices, as customers would,
while the world's faults go on. Its own seeded draws, so the payment workload is unchanged.

Invariants (``receive_invariants``, over the log and the network's invoice book):
- ``receive_credited_once``: a receive has at most one ``InvoicePaid``;
- ``receive_credit_matches_node``: every ``InvoicePaid`` is an invoice the node settled, for
  the amount it received;
- ``receive_paid_is_credited`` (at rest): every invoice of ours the node settled is credited.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from services.bus import subjects
from services.eventstore.port import StoredEvent
from services.sim.network import SimNetwork
from services.sim.records import SimInvoice
from services.simulation.invariants import Violation, by_stream

RECEIVE_CREDITED_ONCE: Final = "receive_credited_once"
RECEIVE_CREDIT_MATCHES_NODE: Final = "receive_credit_matches_node"
RECEIVE_PAID_IS_CREDITED: Final = "receive_paid_is_credited"
# Receives created per step at most, and the share of their invoices a merchant pays.
RECEIVES_PER_STEP_MAX: Final = 2
PAID_SHARE: Final = 0.8
# How often, and how many times, a payer looks for the invoice before giving up on it.
LOOK_S: Final = 2.0
LOOKS_MAX: Final = 30
PAY_TIMEOUT_S: Final = 10.0
MAX_FEE_MSAT: Final = 5_000

Ask = Callable[[str, str, dict[str, Any]], Any]  # (caller id, subject, body) -> answer


class ReceiveWorkload:
    def __init__(
        self, seed: int, *, network: SimNetwork, regions: Iterable[str], merchants: list[str]
    ) -> None:
        self.rng = random.Random(f"receives:{seed}")
        self._network = network
        self._regions = sorted(set(regions))
        self._merchants = merchants
        self._keys = 0
        self.created: dict[str, str] = {}  # intent id -> caller id
        self.paid_by_payer = 0

    def step(self, spawn: Callable[[Any], None], ask: Ask, callers: list[tuple[str, str]]) -> None:
        for _ in range(self.rng.randrange(RECEIVES_PER_STEP_MAX + 1)):
            caller_id, kind = callers[self.rng.randrange(len(callers))]
            self._keys += 1
            body = {
                "type": "CreateReceiveIntent", "version": 1,
                "idempotency_key": f"sim-rcv-{self._keys}",
                "caller": {"id": caller_id, "kind": kind},
                "amount_msat": self.rng.randrange(1_000, 200_000), "memo": "simulation",
                "expiry_s": 3600, "region": self._regions[self.rng.randrange(len(self._regions))],
            }  # fmt: skip
            payer = self._merchants[self.rng.randrange(len(self._merchants))]
            pays = self.rng.random() < PAID_SHARE
            spawn(self._receive(ask, caller_id, body, payer if pays else None))

    async def _receive(
        self, ask: Ask, caller_id: str, body: dict[str, Any], payer: str | None
    ) -> None:
        answer = await ask(caller_id, f"{subjects.API_PREFIX}.receive.{caller_id}", body)
        if not answer.get("ok"):
            return
        intent_id = str(answer["intent_id"])
        self.created[intent_id] = caller_id
        if payer is None:
            return
        get = {"type": "GetPaymentIntent", "version": 1, "intent_id": intent_id}
        for _ in range(LOOKS_MAX):
            view = await ask(caller_id, f"{subjects.API_GET}.caller.{caller_id}", get)
            bolt11 = _payment_request(view)
            if bolt11 is not None:
                with contextlib.suppress(Exception):  # a node outage: the customer gives up
                    await self._network.send_payment(
                        payer, payment_request=bolt11, max_fee_msat=MAX_FEE_MSAT,
                        timeout_s=PAY_TIMEOUT_S,
                    )  # fmt: skip
                    self.paid_by_payer += 1
                return
            if view.get("state") in ("failed", "expired", "paid"):
                return
            await asyncio.sleep(LOOK_S)


def _payment_request(view: Mapping[str, Any]) -> str | None:
    for event in view.get("events") or ():
        if event.get("type") == "InvoiceIssued":
            return str(event["data"]["payment_request"])
    return None


def node_invoices(network: SimNetwork, events: Iterable[StoredEvent]) -> dict[str, SimInvoice]:
    """The node's record of every invoice our log says it issued, by payment hash."""
    found: dict[str, SimInvoice] = {}
    for stored in events:
        if stored.type != "InvoiceIssued":
            continue
        node, payment_hash = stored.payload["node"], stored.payload["payment_hash"]
        with contextlib.suppress(Exception):
            invoice = network.lookup_invoice(node, payment_hash)
            if invoice is not None:
                found[payment_hash] = invoice
    return found


def receive_invariants(
    events: Iterable[StoredEvent], invoices: Mapping[str, SimInvoice], *, at_rest: bool
) -> list[Violation]:
    out: list[Violation] = []
    credited: set[str] = set()
    for stream_id, history in by_stream(events).items():
        if not history or history[0].type != "ReceiveRequested":
            continue
        paid = [e for e in history if e.type == "InvoicePaid"]
        if len(paid) > 1:
            out.append(Violation(RECEIVE_CREDITED_ONCE, f"{len(paid)} InvoicePaid", stream_id))
        for event in paid:
            payment_hash = event.payload["payment_hash"]
            credited.add(payment_hash)
            invoice = invoices.get(payment_hash)
            received = event.payload["amount_received_msat"]
            if invoice is None or invoice.state != "settled":
                state = invoice.state if invoice is not None else "no record"
                out.append(Violation(RECEIVE_CREDIT_MATCHES_NODE, f"node: {state}", stream_id))
            elif invoice.amount_received_msat != received:
                detail = f"node received {invoice.amount_received_msat}, log {received}"
                out.append(Violation(RECEIVE_CREDIT_MATCHES_NODE, detail, stream_id))
    if at_rest:
        for payment_hash, invoice in sorted(invoices.items()):
            if invoice.state == "settled" and payment_hash not in credited:
                out.append(Violation(RECEIVE_PAID_IS_CREDITED, "settled, not credited",
                                     payment_hash))  # fmt: skip
    return out
