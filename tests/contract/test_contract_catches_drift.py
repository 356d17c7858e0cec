"""The contract suite is the guard against a twin that drifts (ADR 0090): each deliberately
wrong in-memory store here fails the contract body that covers what it gets wrong."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from services.eventstore.memory import InMemoryEventStore, _Row
from services.eventstore.port import AppendFence, ConcurrencyConflict, IdempotencyClaim, NewEvent
from tests.contract import test_event_store_contract as contract
from tests.contract.conftest import StoreEnv


class _NoSpendFence(InMemoryEventStore):
    def _rows_for(self, events: Sequence[NewEvent], fence: AppendFence | None) -> list[_Row]:
        if fence is not None:  # judges only the policy, as if the spend fence were forgotten
            fence = AppendFence(
                policy_stream=fence.policy_stream, policy_version=fence.policy_version
            )
        return super()._rows_for(events, fence)


class _ClaimsAfterVersions(InMemoryEventStore):
    async def append(
        self,
        events: Sequence[NewEvent],
        claims: Sequence[IdempotencyClaim] = (),
        fence: AppendFence | None = None,
    ) -> int | None:
        self._rows_for(events, fence)  # a version conflict surfaces before the claim's
        return await super().append(events, claims, fence)


def _env(store: InMemoryEventStore) -> StoreEnv:
    async def nothing(*_: object) -> None:
        return None

    return StoreEnv("broken", store, nothing, nothing)


@pytest.mark.parametrize(
    ("store", "body"),
    [
        (_NoSpendFence, contract.test_a_caller_whose_spend_moved_unseen_fails_the_append),
        (_ClaimsAfterVersions, contract.test_a_claim_conflict_is_found_before_a_version_conflict),
    ],
    ids=["spend-fence-skipped", "claims-checked-late"],
)
async def test_a_drifting_twin_fails_the_contract(
    store: type[InMemoryEventStore], body: Callable[[StoreEnv], Awaitable[None]]
) -> None:
    # A wrong answer fails an assertion, a missing refusal fails ``pytest.raises``, a refusal
    # of the wrong kind escapes it.
    with pytest.raises((AssertionError, pytest.fail.Exception, ConcurrencyConflict)):
        await body(_env(store()))


async def test_keys_in_insertion_order_fail_the_jsonb_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A twin that kept keys as written, instead of as jsonb orders them.
    monkeypatch.setattr("services.eventstore.memory._jsonb_order", lambda value: value)
    with pytest.raises(AssertionError):
        await contract.test_payloads_come_back_as_jsonb_keeps_them(_env(InMemoryEventStore()))
