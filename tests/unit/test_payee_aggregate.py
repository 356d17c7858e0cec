"""The payee aggregate (ADR 0270): onboarding and erasure are idempotent, erased is terminal,
and no command or event can carry a name."""

from __future__ import annotations

import msgspec
import pytest

from schemas import payee_messages as pm
from schemas.codec import REQUEST_REGISTRY
from schemas.common import Caller
from services.domain.payees import (
    PayeeContext,
    PayeeStatus,
    Refusal,
    TransitionRefused,
    decide,
    evolve,
    first_payment,
    replay,
)
from services.engine.ids import payee_id_for
from services.payees.wallets import wallet_node_name

OPERATOR = Caller(id="operator-1", kind="human")
PAYEE_ID = payee_id_for("operator-1", "k1")
PUBKEY = "02" + "ab" * 32


def _onboard(**changes: object) -> pm.OnboardPayee:
    fields: dict[str, object] = {
        "idempotency_key": "k1", "region": "asia", "wallet_pubkey": PUBKEY,
        "wallet_node": wallet_node_name(PAYEE_ID), "liquidity": "channel",
    }  # fmt: skip
    return pm.OnboardPayee(**(fields | changes))  # type: ignore[arg-type]


def _ctx(fingerprint: str = "f1") -> PayeeContext:
    return PayeeContext(payee_id=PAYEE_ID, request_fingerprint=fingerprint, caller=OPERATOR)


def test_onboard_records_the_payee_without_personal_data() -> None:
    events = decide(None, _onboard(), _ctx())
    assert isinstance(events, list) and len(events) == 1
    onboarded = events[0]
    assert isinstance(onboarded, pm.PayeeOnboarded)
    assert (onboarded.payee_id, onboarded.region, onboarded.liquidity) == (
        PAYEE_ID, "asia", "channel",
    )  # fmt: skip
    state = evolve(None, onboarded)
    assert state.status is PayeeStatus.ACTIVE and state.version == 1
    # The event's fields: ids, the wallet and the choice; the idempotency key is not one.
    assert set(msgspec.structs.asdict(onboarded)) == {
        "payee_id", "caller", "request_fingerprint", "region", "wallet_pubkey", "wallet_node",
        "liquidity", "jurisdiction",
    }  # fmt: skip


def test_the_same_key_answers_from_the_state_and_another_request_is_refused() -> None:
    state = replay(decide(None, _onboard(), _ctx()))  # type: ignore[arg-type]
    assert decide(state, _onboard(), _ctx()) == []
    assert decide(state, _onboard(region="eu"), _ctx("f2")) == Refusal(
        "idempotency_key_reused", "idempotency_key"
    )


def test_erase_is_idempotent_and_terminal() -> None:
    state = replay(decide(None, _onboard(), _ctx()))  # type: ignore[arg-type]
    erase = pm.ErasePayee(payee_id=PAYEE_ID)
    events = decide(state, erase, _ctx())
    assert events == [pm.PayeeErased(payee_id=PAYEE_ID, caller=OPERATOR)]
    erased = evolve(state, events[0])  # type: ignore[index]
    assert erased.status is PayeeStatus.ERASED and erased.version == 2
    assert decide(erased, erase, _ctx()) == []
    with pytest.raises(TransitionRefused):
        evolve(erased, pm.PayeeErased(payee_id=PAYEE_ID, caller=OPERATOR))


def test_only_the_first_accepted_payment_is_marked() -> None:
    state = replay(decide(None, _onboard(), _ctx()))  # type: ignore[arg-type]
    assert state is not None
    marker = first_payment(state, "intent-1")
    assert marker == [pm.PayeeFirstPayment(payee_id=PAYEE_ID, intent_id="intent-1")]
    marked = evolve(state, marker[0])
    assert marked.first_payment_intent_id == "intent-1" and marked.status is PayeeStatus.ACTIVE
    assert first_payment(marked, "intent-2") == []


def test_erasing_an_unknown_payee_is_refused() -> None:
    assert decide(None, pm.ErasePayee(payee_id=PAYEE_ID), _ctx()) == Refusal(
        "unknown_payee", "payee_id"
    )


@pytest.mark.parametrize("field", ["name", "email", "contact"])
def test_a_command_with_personal_data_is_refused_by_the_schema(field: str) -> None:
    """Unknown fields are refused at decoding: a name sent to the engine is never stored."""
    body = msgspec.json.encode(
        {
            "type": "OnboardPayee",
            "version": 1,
            "idempotency_key": "k",
            "region": "asia",
            "wallet_pubkey": PUBKEY,
            field: "Ada Lovelace",
        }
    )
    with pytest.raises(msgspec.ValidationError) as raised:
        msgspec.json.decode(body, type=REQUEST_REGISTRY[("OnboardPayee", 1)])
    assert "Ada" not in str(raised.value)


def test_payee_ids_are_their_own_namespace_and_wallet_names_derive_from_them() -> None:
    assert PAYEE_ID.startswith("payee-") and payee_id_for("operator-1", "k1") == PAYEE_ID
    assert payee_id_for("operator-2", "k1") != PAYEE_ID
    name = wallet_node_name(PAYEE_ID)
    assert name.startswith("wallet-") and len(name) == 19


def test_a_submit_without_a_payee_keeps_the_fingerprint_it_had_before_the_field() -> None:
    """Retries across the upgrade that added ``payee_id`` keep matching their intent."""
    from schemas.commands import SubmitPaymentIntent
    from services.engine.ids import fingerprint
    from services.eventstore.hashing import canonical_json

    submit = SubmitPaymentIntent(
        idempotency_key="k", caller=Caller(id="alice", kind="service"), corridor="us-eu",
        amount_msat=1000, max_fee_msat=10, destination=PUBKEY,
    )  # fmt: skip
    before_the_field = msgspec.to_builtins(submit)
    del before_the_field["payee_id"]
    import hashlib

    assert fingerprint(submit) == hashlib.sha256(canonical_json(before_the_field)).hexdigest()
    named = msgspec.structs.replace(submit, payee_id=PAYEE_ID)
    assert fingerprint(named) != fingerprint(submit)


@pytest.mark.parametrize(
    ("name", "email", "field"),
    [("", None, "name"), ("x" * 201, None, "name"), ("Ada\x00", None, "name"),
     ("Ada Lovelace", "not-an-address", "email"), ("Ada Lovelace", "a@" + "b" * 260, "email")],
)  # fmt: skip
def test_personal_data_is_checked_and_errors_never_repeat_it(
    name: str, email: str | None, field: str
) -> None:
    from schemas import errors
    from services.payees.directory import validated

    with pytest.raises(errors.SchemaViolation) as refused:
        validated(PAYEE_ID, name, email)
    assert refused.value.field == field
    assert "Ada" not in refused.value.message and "not-an-address" not in refused.value.message
    kept = validated(PAYEE_ID, "  Ada Lovelace ", "ada@example.org")
    assert kept.name == "Ada Lovelace" and "Ada" not in repr(kept)
