"""Who may read an intent (ADR 0061). Pure: the reader's identity against the intent's state.

- Operators, auditors and the engine itself read every intent.
- A caller or an agent reads the intents it submitted (the intent's ``caller.id``).
- An executor reads the status, never the history, of an intent some attempt of which was
  dispatched to its node: it asks before it sends, and an earlier attempt's node may still
  need to know that the intent moved on.
"""

from __future__ import annotations

from services.domain.intent.state import PaymentIntent
from services.domain.principal import Principal


def may_read(reader: Principal, state: PaymentIntent, *, history: bool) -> bool:
    """``history``: the full view (``GetPaymentIntent``); otherwise the status only."""
    match reader.role:
        case "engine" | "operator" | "auditor":
            return True
        case "caller" | "agent":
            return reader.id == state.caller.id
        case "executor":
            return not history and any(node == reader.id for _, node in state.tried_nodes)
    return False
