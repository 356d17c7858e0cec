"""Commands and events of payees (issue 19, ADR 0270): contractors and employees we pay, each
with a wallet they own (we never hold their keys).

An operator onboards a payee (``OnboardPayee``); the engine records ``PayeeOnboarded`` on the
payee's own stream ``payee-<uuid5(operator, key)>``, which is also the payee id. No command or
event here has a field for a name or contact details: those live in the erasable table
``payee_personal_data`` (ADR 0270), written by the edge, never by the engine, and these
messages forbid unknown fields, so a name sent here is refused rather than logged.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from schemas import limits
from schemas.common import Caller, Message, NodePubkey, Region
from schemas.events import EventData

# A payee's stream, and its id: this prefix and a UUID of (operator, key) (ADR 0270).
PAYEE_STREAM_PREFIX: Final = "payee-"
PAYEE_ID_PATTERN: Final = r"^payee-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# A simulated wallet node's name, as our node names (``channel_messages.NODE_NAME_PATTERN``).
WALLET_NODE_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"

IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.IDEMPOTENCY_KEY_CHARS_MAX)
]
PayeeId = Annotated[str, msgspec.Meta(pattern=PAYEE_ID_PATTERN)]
WalletNode = Annotated[str, msgspec.Meta(pattern=WALLET_NODE_PATTERN)]
# ISO 3166-1 alpha-2, upper case, as the policy document's jurisdictions: a country, which
# policy judges; not a person's address.
Jurisdiction = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")]
# How the payee's wallet gets inbound liquidity: a channel we open from the region's node at
# onboarding (an ``OpenChannel`` operator intent, ADR 0234), or a just-in-time channel opened
# on the first payment (LSPS2, bLIP-52).
Liquidity = Literal["channel", "jit"]
PayeeStatus = Literal["active", "erased"]


class OnboardPayee(Message, frozen=True, kw_only=True):
    version: Literal[1] = 1
    idempotency_key: IdempotencyKey
    region: Region
    # The payee's wallet node: its key (the destination of the payee's invoices) and, on the
    # simulated network, its node name; ``None`` for a wallet outside the simulator.
    wallet_pubkey: NodePubkey
    wallet_node: WalletNode | None = None
    liquidity: Liquidity = "channel"
    jurisdiction: Jurisdiction | None = None


class ErasePayee(Message, frozen=True, kw_only=True):
    version: Literal[1] = 1
    payee_id: PayeeId


class PayeeOnboarded(EventData, frozen=True, kw_only=True):
    """A payee exists: no personal data, only what routes and checks payments (ADR 0270)."""

    payee_id: str
    caller: Caller  # the operator who onboarded them
    request_fingerprint: str
    region: str
    wallet_pubkey: str
    wallet_node: str | None = None
    liquidity: Liquidity = "channel"
    jurisdiction: str | None = None


class PayeeFirstPayment(EventData, frozen=True, kw_only=True):
    """The first payment intent naming this payee that policy did not refuse (ADR 0272):
    recorded in the same append as that intent's events, so "first" survives restarts."""

    payee_id: str
    intent_id: str


class PayeeErased(EventData, frozen=True, kw_only=True):
    """The payee's personal data is to be erased and they can no longer be paid. Also the list
    of erasures to apply again after a backup is restored (ADR 0270)."""

    payee_id: str
    caller: Caller  # the operator who erased them


PAYEE_COMMAND_TYPES: Final = (OnboardPayee, ErasePayee)
PayeeCommand = OnboardPayee | ErasePayee
PAYEE_EVENT_TYPES: dict[str, type[EventData]] = {
    cls.__name__: cls for cls in (PayeeOnboarded, PayeeFirstPayment, PayeeErased)
}


def is_payee_stream(stream_id: str) -> bool:
    return stream_id.startswith(PAYEE_STREAM_PREFIX)
