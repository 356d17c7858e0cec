"""Agent signing keys as events under the two-person rule (ADR 0068): a pure aggregate."""

from services.domain.agent_keys.aggregate import (
    AGENT_KEYS_STREAM,
    AgentKeyRecord,
    AgentKeyRegistry,
    decide,
    evolve,
    fold,
)

__all__ = ["AGENT_KEYS_STREAM", "AgentKeyRecord", "AgentKeyRegistry", "decide", "evolve", "fold"]
