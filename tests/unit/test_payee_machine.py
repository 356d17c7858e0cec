"""The payee aggregate against a simple model (Hypothesis): any sequence of onboard, erase and
first-payment markers keeps the invariants — versions count the events, erased is terminal,
one first payment at most, and replaying the events gives the same state."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from schemas import payee_messages as pm
from schemas.common import Caller
from schemas.events import EventData
from services.domain.payees import (
    PayeeContext,
    PayeeStatus,
    Refusal,
    decide,
    evolve,
    first_payment,
    replay,
)
from services.engine.ids import payee_id_for

PAYEE_ID = payee_id_for("operator-1", "k")
CALLER = Caller(id="operator-1", kind="human")


class PayeeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[EventData] = []
        self.state = None
        self.model = {"onboarded": False, "erased": False, "first": None, "fingerprint": None}

    def _apply(self, events: list[EventData]) -> None:
        for event in events:
            self.state = evolve(self.state, event)
            self.events.append(event)

    @rule(fingerprint=st.sampled_from(["f1", "f2"]), region=st.sampled_from(["asia", "eu"]))
    def onboard(self, fingerprint: str, region: str) -> None:
        command = pm.OnboardPayee(idempotency_key="k", region=region, wallet_pubkey="02" + "a" * 64)
        ctx = PayeeContext(payee_id=PAYEE_ID, request_fingerprint=fingerprint, caller=CALLER)
        decision = decide(self.state, command, ctx)
        if not self.model["onboarded"]:
            assert isinstance(decision, list) and len(decision) == 1
            self.model |= {"onboarded": True, "fingerprint": fingerprint}
            self._apply(decision)
        elif fingerprint == self.model["fingerprint"]:
            assert decision == []
        else:
            assert decision == Refusal("idempotency_key_reused", "idempotency_key")

    @rule()
    def erase(self) -> None:
        ctx = PayeeContext(payee_id=PAYEE_ID, request_fingerprint="", caller=CALLER)
        decision = decide(self.state, pm.ErasePayee(payee_id=PAYEE_ID), ctx)
        if not self.model["onboarded"]:
            assert isinstance(decision, Refusal)
            return
        if self.model["erased"]:
            assert decision == []
        else:
            assert decision == [pm.PayeeErased(payee_id=PAYEE_ID, caller=CALLER)]
        self.model["erased"] = True
        assert isinstance(decision, list)
        self._apply(decision)

    @rule(intent=st.sampled_from(["i1", "i2", "i3"]))
    def pay(self, intent: str) -> None:
        if self.state is None:
            return
        events = first_payment(self.state, intent)
        if self.model["first"] is None and not self.model["erased"]:
            assert len(events) == 1
            self.model["first"] = intent
        else:
            assert events == []
        self._apply(events)

    @invariant()
    def matches_the_model(self) -> None:
        if self.state is None:
            assert not self.model["onboarded"]
            return
        assert self.state.version == len(self.events)
        assert (self.state.status is PayeeStatus.ERASED) == self.model["erased"]
        assert self.state.first_payment_intent_id == self.model["first"]
        assert replay(self.events) == self.state


TestPayeeMachine = PayeeMachine.TestCase
