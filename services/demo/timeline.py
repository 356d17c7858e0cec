"""What Corridor did about each injected fault, read from the event log alone (a pure fold).

A fault is marked with the log position at which it was injected. Because the demo injects it
with nothing of the workload in flight, every event after that position, until the fault is
lifted, belongs to intents that met the fault: routing decisions that skipped the node
(``IntentRouted.rejected``), intents left without a usable candidate (``IntentFailed``),
attempts on the node that failed or went into doubt and what became of their intents, and
payments that were on the wire through the node when the fault began.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.demo.faults import FaultStep
from services.domain.intent.transitions import STATUS_AFTER, TERMINAL_STATUSES

# The reason the router gives for skipping a node under each fault (services/domain/routing.py).
_SKIP_REASON = {"drain": "insufficient_liquidity", "offline": "unhealthy"}
# The events that end an intent, and the final status each leaves.
_FINAL = {e: str(s) for e, s in STATUS_AFTER.items() if s in TERMINAL_STATUSES}
# Events after which an attempt is no longer on the wire.
_OFF_WIRE = {"PaymentSucceeded", "PaymentAttemptFailed", *_FINAL}


@dataclass(frozen=True, slots=True)
class FaultMark:
    step: FaultStep
    region: str
    log_position: int  # head of the log when the fault was injected


@dataclass
class _Effects:
    routed_around: int = 0
    routed_to: Counter[str] = field(default_factory=Counter)
    no_candidate_failed: int = 0
    dispatched_to_node: int = 0
    attempts_failed: int = 0
    in_doubt: int = 0
    # Intents whose attempt on the node failed or went into doubt: where they went next, and
    # how they ended.
    troubled: set[str] = field(default_factory=set)
    retried_to: Counter[str] = field(default_factory=Counter)
    troubled_final: Counter[str] = field(default_factory=Counter)
    on_the_wire: set[str] = field(default_factory=set)
    on_the_wire_final: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "routed_around": self.routed_around,
            "routed_to": dict(sorted(self.routed_to.items())),
            "no_candidate_failed": self.no_candidate_failed,
            "dispatched_to_node": self.dispatched_to_node,
            "attempts_failed": self.attempts_failed,
            "in_doubt": self.in_doubt,
            "retried_to": dict(sorted(self.retried_to.items())),
            "troubled_final": dict(sorted(self.troubled_final.items())),
            "on_the_wire": len(self.on_the_wire),
            "on_the_wire_final": dict(sorted(self.on_the_wire_final.items())),
        }


def build_timeline(
    events: Iterable[dict[str, Any]], marks: Sequence[FaultMark], *, intents: int
) -> list[dict[str, Any]]:
    """One entry per mark, in order: the fault, and its effects until it was lifted."""
    ordered = sorted(events, key=lambda e: e["position"])
    out = []
    for index, mark in enumerate(marks):
        lifted = _lifted_by(marks, index)
        until_position = lifted.log_position if lifted is not None else None
        last_intent = (lifted.step.after_intent if lifted is not None else intents) - 1
        effects = _effects(ordered, mark, until_position)
        out.append(
            {
                "after_intent": mark.step.after_intent,
                "log_position": mark.log_position,
                "fault": mark.step.kind,
                "node": mark.step.node,
                "what": mark.step.describe(),
                "intents": [mark.step.after_intent, last_intent],
                "effects": effects.as_dict(),
                "corridor_did": _sentence(mark.step, effects, last_intent),
            }
        )
    return out


def _lifted_by(marks: Sequence[FaultMark], index: int) -> FaultMark | None:
    """The mark that ends the fault of ``marks[index]``; None when it lasts to the end.

    An outage ends when its node is back. A hold has done its work by the next fault. A drain
    is never undone, and the effects of a node's return last to the end.
    """
    step = marks[index].step
    for later in marks[index + 1 :]:
        if step.kind == "hold":
            return later
        if step.kind == "offline" and later.step.node == step.node and later.step.kind == "online":
            return later
    return None


def _effects(events: Sequence[dict[str, Any]], mark: FaultMark, until: int | None) -> _Effects:
    node, skip = mark.step.node, _SKIP_REASON.get(mark.step.kind)
    before = [e for e in events if e["position"] <= mark.log_position]
    attempt_node, on_wire = _on_the_wire(before)
    effects = _Effects(on_the_wire={s for s in on_wire if attempt_node[s] == node})
    for event in events[len(before) :]:
        kind, stream, data = event["type"], event["stream_id"], event["data"]
        _follow(effects, kind, stream, data)
        if until is not None and event["position"] > until:
            if kind == "IntentDispatched":
                attempt_node[stream] = data["node"]
            continue
        match kind:
            case "IntentRouted" if skip is not None and any(
                r["node"] == node and r["reason"] == skip for r in data.get("rejected", ())
            ):
                effects.routed_around += 1
                effects.routed_to[_where(data)] += 1
            case "IntentFailed" if skip is not None and _no_candidate(data, mark, skip):
                effects.no_candidate_failed += 1
            case "IntentDispatched":
                attempt_node[stream] = data["node"]
                effects.dispatched_to_node += int(data["node"] == node)
            case "PaymentAttemptFailed" if attempt_node.get(stream) == node:
                effects.attempts_failed += 1
                effects.troubled.add(stream)
            case "PaymentInDoubt" if attempt_node.get(stream) == node:
                effects.in_doubt += 1
                effects.troubled.add(stream)
    return effects


def _follow(effects: _Effects, kind: str, stream: str, data: dict[str, Any]) -> None:
    """What became of intents the fault touched, to the end of the log."""
    if kind in _FINAL:
        if stream in effects.on_the_wire:
            effects.on_the_wire_final[_FINAL[kind]] += 1
        if stream in effects.troubled:
            effects.troubled_final[_FINAL[kind]] += 1
    elif kind == "IntentRouted" and stream in effects.troubled:
        effects.retried_to[_where(data)] += 1


def _where(routed: dict[str, Any]) -> str:
    return f"{routed['region']}/{routed['node']}"


def _on_the_wire(events: Iterable[dict[str, Any]]) -> tuple[dict[str, str], set[str]]:
    """Each stream's attempt node, and the streams with an attempt on the wire at the end."""
    attempt_node: dict[str, str] = {}
    on_wire: set[str] = set()
    for event in events:
        if event["type"] == "IntentDispatched":
            attempt_node[event["stream_id"]] = event["data"]["node"]
            on_wire.add(event["stream_id"])
        elif event["type"] in _OFF_WIRE:
            on_wire.discard(event["stream_id"])
    return attempt_node, on_wire


def _no_candidate(data: dict[str, Any], mark: FaultMark, skip: str) -> bool:
    """Routing found no usable candidate, and refused the faulted node for the fault's reason."""
    reason = str(data.get("reason"))
    if not reason.startswith("no_route_candidate"):
        return False
    failures = data.get("failures")
    if failures:  # IntentFailed names every refused candidate
        return any(f["node"] == mark.step.node and f["reason"] == skip for f in failures)
    # Older events spell the candidates in the reason: "no_route_candidate(us:unhealthy,...)".
    return f"{mark.region}:{skip}" in reason


def _counts(counter: Counter[str], *, preposition: str = "") -> str:
    return ", ".join(f"{n} {preposition}{key}" for key, n in counter.most_common())


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _sentence(step: FaultStep, e: _Effects, last_intent: int) -> str:
    node = step.node
    parts = []
    if e.on_the_wire:
        parts.append(
            f"{_n(len(e.on_the_wire), 'payment')} on the wire through {node}: never re-sent "
            f"elsewhere ({_counts(e.on_the_wire_final) or 'still open'})"
        )
    if step.kind == "online":
        parts.append(f"routing went back to {node}: {_n(e.dispatched_to_node, 'intent')} sent")
    elif step.kind in _SKIP_REASON:
        reason = _SKIP_REASON[step.kind].replace("_", " ")
        where = _counts(e.routed_to, preposition="to ")
        parts.append(
            f"routing skipped {node} ({reason}) for {_n(e.routed_around, 'intent')}"
            + (f": {where}" if where else "")
        )
    if e.no_candidate_failed:
        parts.append(f"{_n(e.no_candidate_failed, 'intent')} had no usable candidate and failed")
    if e.attempts_failed:
        retried = _counts(e.retried_to, preposition="to ")
        parts.append(
            f"{_n(e.attempts_failed, 'attempt')} on {node} failed with the node's proof that it "
            f"did not pay, then re-routed ({retried or 'nowhere'}); "
            f"{_counts(e.troubled_final) or 'none final'}"
        )
    elif step.kind == "hold":
        parts.append(f"no payment went through {node} while the hold was set")
    if e.in_doubt:
        parts.append(f"{_n(e.in_doubt, 'attempt')} on {node} in doubt: held, never re-sent")
    first = step.after_intent
    if last_intent < first:
        span = "no intent came after it"
    else:
        span = f"intent {first}" if last_intent == first else f"intents {first}-{last_intent}"
    return f"{span}: " + "; ".join(parts)
