"""Executor errors: one root, one subclass per code (what went wrong, never a secret)."""

from __future__ import annotations


class ExecutorError(Exception):
    code = "executor_error"


class BadWorkOrder(ExecutorError):
    """The message on the dispatch subject is not an ``IntentDispatched`` work order."""

    code = "bad_work_order"


class WorkOrderTooNew(BadWorkOrder):
    """A work order of a version newer than this executor knows (a rolling upgrade is under
    way): never paid by this executor, never terminated either; redelivered with back-off."""

    code = "work_order_version_too_new"


class NodeUriError(ExecutorError):
    """``--node`` names no node we can reach (bad URI, unknown sim node, missing adapter)."""

    code = "bad_node_uri"


class NodeUnreachable(ExecutorError):
    """The node did not answer a lookup; nothing can be decided for this delivery."""

    code = "node_unreachable"


class EngineUnavailable(ExecutorError):
    """The engine did not commit or answer within the retry budget; try the delivery later."""

    code = "engine_unavailable"


class OutcomeRefused(ExecutorError):
    """The engine refused an outcome or a status query with ``error_code``.

    ``final`` only where the executor knows the refusal is for good and nothing was paid: a
    status query answered ``not_found`` before any send (ADR 0063), and the order is then
    terminated. Any other refusal is not understood: the order is held and retried, since its
    payment may have left (ADR 0072)."""

    code = "outcome_refused"

    def __init__(self, error_code: str, message: str, *, final: bool = False) -> None:
        super().__init__(f"{error_code}: {message}")
        self.error_code = error_code
        self.final = final
