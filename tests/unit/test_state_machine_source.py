"""The intent state machine has one source, ``services/domain/intent/transitions.py``.

A module that spells its own status set (``frozenset({"dispatched", "in_flight"})``) or its
own event-to-status map (``{"IntentSettled": "settled", ...}``) drifts the day a status or an
event is added: it did in four places before (issue 14). The scan below fails on any such
literal outside ``transitions.py``; the other tests pin what the derived maps mean.
"""

from __future__ import annotations

import ast
from pathlib import Path

from services.domain.intent.status import IntentStatus
from services.domain.intent.transitions import (
    AWAITING_EVIDENCE_STATUSES,
    OFF_THE_WIRE_EVENTS,
    STATUS_AFTER,
    TRANSITIONS,
)

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("services", "projections", "schemas", "tests")
THE_SOURCE = REPO / "services" / "domain" / "intent" / "transitions.py"

_STATUS_NAMES = {s.name for s in IntentStatus}
_STATUS_VALUES = {s.value for s in IntentStatus}
# Words intent statuses share with payment results (a node's, the simulator's): a set of only
# these is a payment's vocabulary, not the intent machine's.
_SHARED_WITH_PAYMENTS = {"succeeded", "failed", "in_flight"}
_INTENT_EVENTS = {event for _, event in TRANSITIONS}


def _is_member(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in {"S", "IntentStatus", "Status"}
        and node.attr in _STATUS_NAMES
    )


def _is_status(node: ast.AST) -> bool:
    return _is_member(node) or (isinstance(node, ast.Constant) and node.value in _STATUS_VALUES)


def _collection(node: ast.AST) -> list[ast.expr] | None:
    if isinstance(node, ast.Set | ast.Tuple | ast.List):
        return list(node.elts)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"frozenset", "set", "tuple"}
        and len(node.args) == 1
    ):
        return _collection(node.args[0])
    return None


def redefinitions(source: str) -> list[str]:
    """Where ``source`` spells intent-machine knowledge of its own: ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        elts = _collection(node)
        if elts is not None and sum(_is_member(e) for e in elts) >= 2:
            found.append(f"{node.lineno}: a set of IntentStatus members")
        if isinstance(node, ast.Dict):
            members = [*node.values, *(k for k in node.keys if k is not None)]
            if sum(_is_member(e) for e in members) >= 2:
                found.append(f"{node.lineno}: a map over IntentStatus members")
            mapped = [
                v
                for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value in _INTENT_EVENTS and _is_status(v)
            ]
            if len(mapped) >= 2:
                found.append(f"{node.lineno}: an event-to-status map")
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            elts = _collection(node.value)
            words = [e.value for e in elts or () if isinstance(e, ast.Constant)]
            if (
                elts is not None
                and len(elts) >= 2
                and len(words) == len(elts)
                and set(words) <= _STATUS_VALUES
                and not set(words) <= _SHARED_WITH_PAYMENTS
            ):
                found.append(f"{node.lineno}: a named set of status strings")
    return found


def test_no_module_but_transitions_spells_a_status_set_or_an_event_map() -> None:
    offenders = {}
    for root in SCANNED:
        for path in sorted((REPO / root).rglob("*.py")):
            if path in (THE_SOURCE, Path(__file__).resolve()):
                continue
            found = redefinitions(path.read_text(encoding="utf-8"))
            if found:
                offenders[str(path.relative_to(REPO))] = found
    assert not offenders, (
        f"import the sets and maps from services/domain/intent/transitions.py instead: {offenders}"
    )


def test_the_scan_catches_each_form_it_replaced() -> None:
    # What state.py, pilot_metrics.py, the executor's engine client and an e2e test spelled.
    replaced = {
        "state.py": "ON_THE_WIRE = frozenset({IntentStatus.DISPATCHED, IntentStatus.IN_FLIGHT})",
        "pilot_metrics.py": '_T = {"IntentSettled": "settled", "IntentFailed": "failed"}',
        "engine_client.py": '_ON_THE_WIRE = frozenset({"dispatched", "in_flight"})',
        "e2e": 'TERMINAL = ("settled", "failed", "rejected", "cancelled", "expired")',
        "enum map": "X = {S.ROUTED: 1, S.DISPATCHED: 2}",
    }
    for name, source in replaced.items():
        assert redefinitions(source), name
    # A payment's results and an invoice's states are not the intent machine's.
    assert not redefinitions('RESULTS = ("in_flight", "succeeded", "failed")')
    assert not redefinitions('INVOICE = ("open", "settled", "canceled", "expired")')
    assert not redefinitions('assert state in ("settled", "failed")')


def test_the_transition_table_has_the_status_sets() -> None:
    # The source itself is where they are: the scan finds them there and only there.
    assert redefinitions(THE_SOURCE.read_text(encoding="utf-8"))


def test_status_after_is_the_map_the_projections_spelled() -> None:
    # projections/pilot_metrics.py's own maps before they were derived (issue 14).
    spelled = {
        "IntentSettled": "settled", "IntentFailed": "failed", "IntentCancelled": "cancelled",
        "IntentExpired": "expired", "IntentRejected": "rejected", "IntentReceived": "received",
        "IntentPolicyChecked": "policy_checked", "IntentApprovalRequested": "awaiting_approval",
        "IntentApproved": "policy_checked", "IntentRouted": "routed",
        "IntentDispatched": "dispatched", "PaymentInFlightReported": "in_flight",
        "PaymentInDoubt": "in_flight", "PaymentSucceeded": "succeeded",
    }  # fmt: skip
    assert {e: str(s) for e, s in STATUS_AFTER.items()} == spelled
    # Annotations keep the status, whatever it is: no one status after them.
    for annotation in ("OutcomeIgnored", "PaymentAttemptFailed", "IntentEscalated"):
        assert annotation not in STATUS_AFTER


def test_off_the_wire_events_clear_what_the_exception_queue_cleared() -> None:
    cleared = {"IntentSettled", "IntentFailed", "IntentCancelled", "IntentExpired",
               "IntentRejected", "IntentRouted"}  # fmt: skip
    assert cleared <= OFF_THE_WIRE_EVENTS
    # The others cannot follow a dispatch at all, so the queue never sees them for its items.
    for event in OFF_THE_WIRE_EVENTS - cleared:
        assert all((status, event) not in TRANSITIONS for status in AWAITING_EVIDENCE_STATUSES), (
            event
        )
