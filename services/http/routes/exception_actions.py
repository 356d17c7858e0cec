"""The exception queue's actions over HTTP (ADR 0161), for operators: acknowledge an anomaly
with the reason and evidence, and reprocess an intent awaiting evidence (its node asked again;
resolved only on the node's proof, so twice is once). Reconciliation items are resolved with
``/v1/recon/...`` and re-checked by the stack's reconciler loop."""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Router, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from projections.catalog import INTENTS
from projections.intents import exception_of
from projections.store import ProjectionStore
from schemas import limits
from services.bus import subjects
from services.http.auth import ApiPrincipal, require
from services.http.errors import ERROR_RESPONSES, ApiError
from services.http.gateway import Gateway
from services.http.limits import STUCK_AFTER_S_DEFAULT
from services.reconciliation.reprocess import AWAITING_EVIDENCE_KINDS, reprocess_intent

OPERATORS: Final = ("operator",)


class AcknowledgeBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.REASON_CHARS_MAX)]
    evidence: Annotated[str, msgspec.Meta(max_length=limits.EVIDENCE_CHARS_MAX)] = ""


def _operator(request: Request[Any, Any, Any]) -> str:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    require(principal, OPERATORS)
    return principal.id


@post("/{intent_id:str}/acknowledge", responses=ERROR_RESPONSES, status_code=200,
      summary="Acknowledge an intent's anomalies, with the reason and evidence")  # fmt: skip
async def acknowledge(
    request: Request[Any, Any, Any], intent_id: FromPath[str],
    data: JSONBody[AcknowledgeBody], gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    body = {"type": "AcknowledgeAnomaly", "version": 1, "intent_id": intent_id,
            "operator_id": operator, "reason": data.reason, "evidence": data.evidence}  # fmt: skip
    return await gateway.command(f"{subjects.API_PREFIX}.acknowledge.{operator}", body)


@post("/{intent_id:str}/reprocess", responses=ERROR_RESPONSES, status_code=200,
      summary="Ask the intent's node again; resolve only on its proof (twice is once)")  # fmt: skip
async def reprocess(
    request: Request[Any, Any, Any], intent_id: FromPath[str],
    projections: NamedDependency[ProjectionStore], gateway: NamedDependency[Gateway],
    deps: NamedDependency[Any],
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    await projections.refresh((INTENTS,))
    doc = await projections.intent_doc(intent_id)
    now_ms = time.time_ns() // 1_000_000
    rows = [] if doc is None else exception_of(
        doc, now_ms=now_ms, stuck_after_ms=STUCK_AFTER_S_DEFAULT * 1000
    )  # fmt: skip
    targets = [r for r in rows if r["kind"] in AWAITING_EVIDENCE_KINDS]
    if not targets:
        detail = "nothing awaits the node's evidence: already final or not on the wire"
        return {"id": intent_id, "action": "none", "detail": detail}
    target = targets[0]
    if deps.state_dir is None:
        raise ApiError(503, "unavailable", "this server does not know the nodes' endpoints")

    async def lookup(payment_hash: str) -> Any:
        from services.executor.nodes import adapter_for, resolve_node

        node = resolve_node(f"sim://{target['node']}", region=target["region"],
                            state_dir=deps.state_dir, name=target["node"])  # fmt: skip
        adapter = adapter_for(node.uri)
        try:
            return await adapter.lookup_payment(payment_hash)
        finally:
            await adapter.close()

    async def send(body: dict[str, Any]) -> dict[str, Any]:
        return await gateway.ask(f"{subjects.API_PREFIX}.resolve.{operator}",
                                 {**body, "version": 1, "operator_id": operator})  # fmt: skip

    async def reread(ident: str) -> dict[str, Any] | None:
        await projections.refresh((INTENTS,))
        return await projections.intent_doc(ident)

    return await reprocess_intent(target, doc, lookup=lookup, send=send, reread=reread)


actions = Router(path="/v1/exceptions", route_handlers=[acknowledge, reprocess],
                 tags=["operators"])  # fmt: skip
ROUTES: Final = (actions,)
