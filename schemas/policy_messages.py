"""Commands and events of the policy document aggregate (the two-person rule).

``policy_version`` is the document's version; ``version`` stays the wire schema version of the
message, as everywhere else in ``schemas``.
"""

from __future__ import annotations

from typing import Literal

from schemas.common import CallerId, Message, Reason
from schemas.events import EventData
from schemas.policy_document import PolicyDocument, PolicyVersion


class ProposePolicy(Message, frozen=True, kw_only=True):
    """An operator proposes a new policy document. It is not in force until approved."""

    policy_version: PolicyVersion
    document: PolicyDocument
    proposer_id: CallerId
    note: Reason = ""
    version: Literal[1] = 1


class ApprovePolicy(Message, frozen=True, kw_only=True):
    """A second operator, not the proposer, puts a proposed document in force."""

    policy_version: PolicyVersion
    approver_id: CallerId
    note: Reason = ""
    version: Literal[1] = 1


class GetPolicy(Message, frozen=True, kw_only=True):
    """Query: the policy document in force in the running engine and pending proposals."""

    version: Literal[1] = 1


class ListCorridors(Message, frozen=True, kw_only=True):
    """Query: the running engine's corridors and their route candidates, in order."""

    version: Literal[1] = 1


class PolicyProposed(EventData, frozen=True, kw_only=True):
    """``proposed_at_ms`` is ``None`` only in events logged before the field existed."""

    policy_version: int
    document: PolicyDocument
    proposer_id: str
    note: str = ""
    proposed_at_ms: int | None = None


class PolicyActivated(EventData, frozen=True, kw_only=True):
    """From this event on, ``policy_version`` judges every new intent."""

    policy_version: int
    proposer_id: str
    approver_id: str
    previous_version: int | None = None
    note: str = ""


PolicyCommand = ProposePolicy | ApprovePolicy
PolicyEvent = PolicyProposed | PolicyActivated

PolicyQuery = GetPolicy | ListCorridors

POLICY_COMMAND_TYPES: tuple[type[PolicyCommand], ...] = (ProposePolicy, ApprovePolicy)
POLICY_QUERY_TYPES: tuple[type[PolicyQuery], ...] = (GetPolicy, ListCorridors)
POLICY_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls for cls in (PolicyProposed, PolicyActivated)
}
