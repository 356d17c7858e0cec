"""Operator actions (ADR 0170): each forwards the NATS command the CLI sends (``corridor
approve|reject|resolve``, ``dlq``, ``policy propose|approve``, ``recon resolve|clear``) with
the authenticated operator's id, and the exception queue from the projection tables.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from litestar import Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from projections.catalog import INTENTS, RECONCILIATION
from projections.exception_queue import exception_queue
from projections.store import ProjectionStore
from schemas.dead_letters import DLQ_LIST_MAX
from services.bus import subjects
from services.http.auth import ApiPrincipal, require
from services.http.bodies import (
    ApproveIntentBody,
    ApprovePolicyBody,
    ClearBreakerBody,
    DropDeadLettersBody,
    ProposePolicyBody,
    RejectIntentBody,
    ReplayDeadLettersBody,
    ResolveIntentBody,
    ResolveMismatchBody,
    fields_of,
)
from services.http.errors import ERROR_RESPONSES
from services.http.gateway import Gateway
from services.http.limits import STUCK_AFTER_S_DEFAULT
from services.liquidity.feed import LiquidityFeed

OPERATORS = ("operator",)
WATCHERS = ("operator", "auditor")


def _operator(request: Request[Any, Any, Any], roles: tuple[str, ...] = OPERATORS) -> str:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    require(principal, roles)
    return principal.id


async def _decide(
    request: Request[Any, Any, Any],
    gateway: NamedDependency[Gateway],
    verb: str,
    intent_id: FromPath[str],
    data: Any,
) -> dict[str, Any]:
    operator = _operator(request)
    body = fields_of(data) | {
        "type": f"{verb.capitalize()}PaymentIntent", "version": 1, "intent_id": intent_id,
        "operator_id": operator,
    }  # fmt: skip
    return await gateway.command(f"{subjects.API_PREFIX}.{verb}.{operator}", body)


@post(
    "/{intent_id:str}/approve",
    responses=ERROR_RESPONSES,
    summary="Release an intent waiting for approval",
    status_code=200,
)
async def approve(
    request: Request[Any, Any, Any], intent_id: FromPath[str],
    data: JSONBody[ApproveIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await _decide(request, gateway, "approve", intent_id, data)


@post(
    "/{intent_id:str}/reject",
    responses=ERROR_RESPONSES,
    summary="Refuse an intent waiting for approval",
    status_code=200,
)
async def reject(
    request: Request[Any, Any, Any], intent_id: FromPath[str],
    data: JSONBody[RejectIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await _decide(request, gateway, "reject", intent_id, data)


@post(
    "/{intent_id:str}/resolve",
    responses=ERROR_RESPONSES,
    summary="End an unproven intent with evidence",
    status_code=200,
)
async def resolve(
    request: Request[Any, Any, Any], intent_id: FromPath[str],
    data: JSONBody[ResolveIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await _decide(request, gateway, "resolve", intent_id, data)


@get("/", responses=ERROR_RESPONSES, summary="Dead letters, oldest first")
async def list_dead_letters(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway],
    from_sequence: Annotated[int, QueryParameter(ge=1)] = 1,
    limit: Annotated[int, QueryParameter(ge=1, le=DLQ_LIST_MAX)] = 20,
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    body = {"type": "ListDeadLetters", "version": 1, "from_sequence": from_sequence,
            "limit": limit}  # fmt: skip
    return await gateway.command(f"{subjects.DLQ_API_PREFIX}.list.{operator}", body)


@post(
    "/replay",
    responses=ERROR_RESPONSES,
    summary="Put dead letters back where they came from (audited)",
    status_code=200,
)
async def replay_dead_letters(
    request: Request[Any, Any, Any],
    data: JSONBody[ReplayDeadLettersBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:
    operator = _operator(request)
    body = fields_of(data) | {"type": "ReplayDeadLetters", "version": 1}
    return await gateway.command(f"{subjects.DLQ_API_PREFIX}.replay.{operator}", body)


@post(
    "/drop",
    responses=ERROR_RESPONSES,
    summary="Delete dead letters for good (audited)",
    status_code=200,
)
async def drop_dead_letters(
    request: Request[Any, Any, Any],
    data: JSONBody[DropDeadLettersBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:
    operator = _operator(request)
    body = fields_of(data) | {"type": "DropDeadLetters", "version": 1}
    return await gateway.command(f"{subjects.DLQ_API_PREFIX}.drop.{operator}", body)


@get("/", responses=ERROR_RESPONSES, summary="The policy in force and pending proposals")
async def show_policy(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]
) -> dict[str, Any]:
    _operator(request, ("caller", "operator", "auditor"))
    return await gateway.command(subjects.POLICY_SHOW, {"type": "GetPolicy", "version": 1})


@post(
    "/proposals",
    responses=ERROR_RESPONSES,
    summary="Propose a policy document (two-person rule)",
    status_code=200,
)
async def propose_policy(
    request: Request[Any, Any, Any],
    data: JSONBody[ProposePolicyBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:
    operator = _operator(request)
    body = fields_of(data) | {"type": "ProposePolicy", "version": 1, "proposer_id": operator}
    return await gateway.command(f"{subjects.POLICY_API_PREFIX}.propose.{operator}", body)


@post(
    "/proposals/{policy_version:int}/approve",
    responses=ERROR_RESPONSES,
    summary="Approve another operator's proposal: it comes into force",
    status_code=200,
)
async def approve_policy(
    request: Request[Any, Any, Any], policy_version: FromPath[int],
    data: JSONBody[ApprovePolicyBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    body = fields_of(data) | {
        "type": "ApprovePolicy", "version": 1, "policy_version": policy_version,
        "approver_id": operator,
    }  # fmt: skip
    return await gateway.command(f"{subjects.POLICY_API_PREFIX}.approve.{operator}", body)


@post(
    "/{node:str}/mismatches/{key:str}/resolve",
    responses=ERROR_RESPONSES,
    summary="Close one open reconciliation item",
    status_code=200,
)
async def resolve_mismatch(
    request: Request[Any, Any, Any], node: FromPath[str], key: FromPath[str],
    data: JSONBody[ResolveMismatchBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    body = fields_of(data) | {
        "type": "ResolveReconciliationMismatch", "version": 1, "node": node, "key": key,
        "operator_id": operator,
    }  # fmt: skip
    return await gateway.command(f"{subjects.RECON_API_PREFIX}.resolve.{operator}", body)


@post(
    "/{node:str}/breaker/clear",
    responses=ERROR_RESPONSES,
    summary="Let a node send again",
    status_code=200,
)
async def clear_breaker(
    request: Request[Any, Any, Any], node: FromPath[str],
    data: JSONBody[ClearBreakerBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    operator = _operator(request)
    body = fields_of(data) | {
        "type": "ClearNodeBreaker", "version": 1, "node": node, "operator_id": operator,
    }  # fmt: skip
    return await gateway.command(f"{subjects.RECON_API_PREFIX}.clear.{operator}", body)


@get(
    "/",
    responses=ERROR_RESPONSES,
    summary="The exception queue: intents on the wire too long or with an anomaly",
)
async def exceptions(
    request: Request[Any, Any, Any], projections: NamedDependency[ProjectionStore],
    liquidity: NamedDependency[LiquidityFeed],
    stuck_after_s: Annotated[int, QueryParameter(ge=1)] = STUCK_AFTER_S_DEFAULT,
) -> dict[str, Any]:  # fmt: skip
    """The rows of ``corridor exceptions`` (``projections.exception_queue``)."""
    _operator(request, WATCHERS)
    await projections.refresh((INTENTS, RECONCILIATION))
    now_ms = time.time_ns() // 1_000_000
    rows = exception_queue(
        await projections.open_intent_docs(),
        await projections.reconciliation_docs(open_only=True),
        now_ms=now_ms,
        stuck_after_ms=stuck_after_s * 1000,
        # The liquidity alerts this gateway's snapshots raise (ADR 0241).
        liquidity_alerts=liquidity.view(now_ms)["alerts"],
    )
    return {"exceptions": rows}


decisions = Router(
    path="/v1/intents", route_handlers=[approve, reject, resolve], tags=["operators"]
)
dead_letters = Router(
    path="/v1/dlq", route_handlers=[list_dead_letters, replay_dead_letters, drop_dead_letters],
    tags=["operators"],
)  # fmt: skip
policy = Router(
    path="/v1/policy", route_handlers=[show_policy, propose_policy, approve_policy],
    tags=["operators"],
)  # fmt: skip
reconciliation = Router(
    path="/v1/recon", route_handlers=[resolve_mismatch, clear_breaker], tags=["operators"]
)
exceptions_router = Router(path="/v1/exceptions", route_handlers=[exceptions], tags=["operators"])
ROUTERS = (decisions, dead_letters, policy, reconciliation, exceptions_router)
