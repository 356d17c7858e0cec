"""Node-level fallback and failure lists (ADR 0014).

Proof of non-payment from one node excludes that node only: the next attempt goes to the next
candidate in the operator's corridor order, even in the same region. A failed intent names
every node it tried and every candidate routing refused, in corridor order.
"""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from schemas import commands as cmd
from schemas import events as ev
from schemas.common import Caller
from services.domain.intent import DecisionContext, IntentStatus, PaymentIntent, decide, evolve
from services.domain.policy import AllowAllPolicy
from services.domain.routing import (
    CorridorTable,
    NodeHealth,
    OrderedRouter,
    RouteCandidate,
    RouteDecision,
)
from services.settings import DEFAULT_CORRIDORS

NOW_MS = 1_700_000_000_000
PAYMENT_HASH = hashlib.sha256(b"h").hexdigest()
INVOICE = ev.InvoiceFacts(
    payment_hash=PAYMENT_HASH, payee="02" + "ab" * 32, network="regtest", amount_msat=10_000,
    created_at_s=1_700_000_000, expires_at_s=1_702_592_000,  # 30 days
)  # fmt: skip
# The default corridor us-eu as the engine builds it (services.settings.DEFAULT_CORRIDORS;
# Core Lightning nodes take invoice payments only, ADR 0008).
US_EU = (
    RouteCandidate(region="us", node="us-lnd"),
    RouteCandidate(region="eu", node="eu-lnd"),
    RouteCandidate(region="us", node="us-cln", keysend=False),
)
TABLE = CorridorTable(corridors={"us-eu": US_EU})
ROUTER = OrderedRouter(TABLE)


def test_the_table_here_is_the_default_corridor() -> None:
    assert [f"{c.region}/{c.node}" for c in US_EU] == DEFAULT_CORRIDORS["us-eu"]


class Intent:
    """One intent driven through ``decide``/``evolve``, keeping its events."""

    def __init__(
        self,
        *,
        router: OrderedRouter = ROUTER,
        keysend: bool = False,
        attempts_max: int = 3,
        corridor: str = "us-eu",
    ) -> None:
        self.router = router
        self.attempts_max = attempts_max
        self.state: PaymentIntent | None = None
        self.events: list[ev.EventData] = []
        payee = (
            {"destination": "02" + "11" * 32} if keysend else {"payment_request": "lnbcrt100n1t"}
        )
        self.apply(
            cmd.SubmitPaymentIntent(
                idempotency_key="k", caller=Caller(id="alice", kind="service"),
                corridor=corridor, amount_msat=10_000, max_fee_msat=100, **payee,  # type: ignore[arg-type]
            ),
            invoice=None if keysend else INVOICE,
        )  # fmt: skip

    def apply(self, command: cmd.Command, invoice: ev.InvoiceFacts | None = None) -> None:
        ctx = DecisionContext(
            now_ms=NOW_MS, policy=AllowAllPolicy(), router=self.router, intent_id="i-1",
            request_fingerprint="fp", invoice=invoice, attempts_max=self.attempts_max,
        )  # fmt: skip
        for event in decide(self.state, command, ctx):
            self.state = evolve(self.state, event)
            self.events.append(event)

    def fail(self, reason: str = "no_route", *, proof: bool = True) -> None:
        assert self.state is not None and self.state.node is not None
        self.apply(
            cmd.RecordPaymentOutcome(
                intent_id="i-1", attempt=self.state.attempt, outcome="failed",
                region=self.state.region or "", node=self.state.node,
                failure_reason=reason, confirmed_not_paid=proof,  # type: ignore[arg-type]
            )
        )  # fmt: skip

    @property
    def routes(self) -> list[tuple[int, str, str]]:
        return [
            (e.attempt, e.region, e.node) for e in self.events if isinstance(e, ev.IntentRouted)
        ]

    @property
    def failed(self) -> ev.IntentFailed:
        (failed,) = [e for e in self.events if isinstance(e, ev.IntentFailed)]
        return failed


def failure(region: str, node: str, reason: str, attempt: int | None) -> ev.NodeFailure:
    return ev.NodeFailure(region=region, node=node, reason=reason, attempt=attempt)


def test_proof_from_one_node_excludes_that_node_not_its_region() -> None:
    intent = Intent()
    intent.fail()  # us-lnd proves it did not pay
    intent.fail()  # eu-lnd proves it did not pay
    assert intent.routes == [(1, "us", "us-lnd"), (2, "eu", "eu-lnd"), (3, "us", "us-cln")]
    assert intent.state is not None and intent.state.status is IntentStatus.DISPATCHED
    dispatched = intent.events[-1]
    assert isinstance(dispatched, ev.IntentDispatched)
    assert (dispatched.attempt, dispatched.region, dispatched.node) == (3, "us", "us-cln")


def test_attempts_follow_the_corridor_order() -> None:
    table = CorridorTable(
        corridors={
            "us-eu": tuple(
                RouteCandidate(region=region, node=f"{region}-{n}")
                for n, region in enumerate(["us", "eu", "us", "asia", "eu"])
            )
        }
    )
    intent = Intent(router=OrderedRouter(table), attempts_max=16)
    for _ in range(4):
        intent.fail()
    assert [node for _, _, node in intent.routes] == ["us-0", "eu-1", "us-2", "asia-3", "eu-4"]


def test_every_node_tried_is_in_the_failures_when_the_budget_runs_out() -> None:
    intent = Intent()
    for reason in ("no_route", "timeout", "insufficient_liquidity"):
        intent.fail(reason)
    assert intent.state is not None and intent.state.status is IntentStatus.FAILED
    assert intent.failed.reason == "retry_budget_exhausted"
    assert intent.failed.attempts == 3
    assert intent.failed.failures == (
        failure("us", "us-lnd", "no_route", 1),
        failure("eu", "eu-lnd", "timeout", 2),
        failure("us", "us-cln", "insufficient_liquidity", 3),
    )
    assert intent.state.failures == intent.failed.failures
    assert intent.state.failure_reason == "retry_budget_exhausted"


def test_no_candidate_left_names_nodes_tried_and_candidates_refused_in_corridor_order() -> None:
    intent = Intent(keysend=True)  # Core Lightning cannot keysend with our preimage
    intent.fail()
    intent.fail("node_unavailable")
    assert intent.routes == [(1, "us", "us-lnd"), (2, "eu", "eu-lnd")]
    assert intent.failed.reason == "no_route_candidate"
    assert intent.failed.failures == (
        failure("us", "us-lnd", "no_route", 1),
        failure("eu", "eu-lnd", "node_unavailable", 2),
        failure("us", "us-cln", "keysend_unsupported", None),
    )


def test_a_final_node_reason_fails_at_once_and_names_the_node() -> None:
    intent = Intent()
    intent.fail("incorrect_details")
    assert intent.routes == [(1, "us", "us-lnd")]
    assert intent.failed.reason == "incorrect_details"
    assert intent.failed.failures == (failure("us", "us-lnd", "incorrect_details", 1),)


def test_no_candidate_at_submit_names_every_refused_candidate() -> None:
    health = {
        ("us", "us-lnd"): NodeHealth(healthy=False),
        ("eu", "eu-lnd"): NodeHealth(healthy=True, outbound_msat=5),
        ("us", "us-cln"): NodeHealth(healthy=False),
    }
    intent = Intent(router=OrderedRouter(TABLE, health))
    assert intent.routes == []
    assert intent.failed.reason == "no_route_candidate"
    assert intent.failed.attempts == 0
    assert intent.failed.failures == (
        failure("us", "us-lnd", "unhealthy", None),
        failure("eu", "eu-lnd", "insufficient_liquidity", None),
        failure("us", "us-cln", "unhealthy", None),
    )


def test_a_corridor_without_candidates_fails_with_its_own_code() -> None:
    intent = Intent(router=OrderedRouter(CorridorTable(corridors={})))
    assert (intent.failed.reason, intent.failed.failures) == ("unknown_corridor", ())


def test_a_failure_without_proof_is_never_rerouted() -> None:
    intent = Intent()
    intent.fail(proof=False)
    assert intent.routes == [(1, "us", "us-lnd")]
    assert intent.state is not None and intent.state.failures == ()


def test_failures_follow_the_corridor_with_refusals_in_place() -> None:
    """A candidate refused before the first attempt keeps its place in the corridor."""
    sick = OrderedRouter(TABLE, {("us", "us-lnd"): NodeHealth(healthy=False)})
    intent = Intent(router=sick, keysend=True, attempts_max=5)
    intent.fail()  # eu-lnd, the only usable candidate
    assert intent.routes == [(1, "eu", "eu-lnd")]
    assert intent.failed.failures == (
        failure("us", "us-lnd", "unhealthy", None),
        failure("eu", "eu-lnd", "no_route", 1),
        failure("us", "us-cln", "keysend_unsupported", None),
    )


def test_router_refuses_only_the_excluded_nodes() -> None:
    choice = ROUTER.choose(
        "us-eu", amount_msat=1, exclude_nodes=frozenset({("us", "us-lnd"), ("eu", "eu-lnd")})
    )
    assert isinstance(choice, RouteDecision)
    assert (choice.region, choice.node) == ("us", "us-cln")
    assert [(c.node, c.reason) for c in choice.rejected] == [
        ("us-lnd", "already_tried"), ("eu-lnd", "already_tried"),
    ]  # fmt: skip


def test_intent_failed_logged_before_failures_existed_still_decodes() -> None:
    old_payload = {"reason": "no_route_candidate(us:already_tried)", "attempts": 1}
    decoded = msgspec.convert(old_payload, ev.IntentFailed)
    assert decoded.failures == ()
    assert ev.IntentFailed.VERSION == 1


@pytest.mark.parametrize("keysend", [False, True])
def test_replay_of_the_failure_reproduces_the_state(keysend: bool) -> None:
    from services.domain.intent import fold

    intent = Intent(keysend=keysend)
    intent.fail()
    intent.fail()
    if not keysend:
        intent.fail()
    assert fold(intent.events) == intent.state
