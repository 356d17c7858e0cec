"""``/v1/channels``: channel opens and closes on our nodes, for operators (ADR 0234, 0238).

Each forwards the NATS command ``corridor channels open|close`` sends, on the authenticated
operator's subject (``channel_open|channel_close.<operator>``), with the ``Idempotency-Key``
header as its key: the same key and body give the recorded operation (200,
``Idempotent-Replayed: true``), another body under it is refused (409
``idempotency_key_reused``). An open waiting in tier ``approval`` is approved or declined by
another operator (ADR 0236) at ``/v1/channels/{op_id}/approve|reject``.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from services.bus import subjects
from services.http.auth import require
from services.http.bodies import (
    ApproveIntentBody,
    CloseChannelBody,
    OpenChannelBody,
    RejectIntentBody,
    fields_of,
)
from services.http.errors import ERROR_RESPONSES
from services.http.gateway import Gateway
from services.http.routes.intents import REPLAYED, IdempotencyKey, principal_of, read_view

OPERATORS = ("operator",)
READERS = ("operator", "auditor")


async def _request(
    request: Request[Any, Any, Any],
    gateway: Gateway,
    verb: str,
    command: str,
    idempotency_key: str,
    data: Any,
) -> Response[dict[str, Any]]:
    principal = principal_of(request)
    require(principal, OPERATORS)
    body = fields_of(data) | {
        "type": command, "version": 1, "idempotency_key": idempotency_key,
    }  # fmt: skip
    reply = await gateway.command(f"{subjects.API_PREFIX}.{verb}.{principal.id}", body)
    if reply.get("duplicate"):
        return Response(reply, status_code=200, headers={"Idempotent-Replayed": "true"})
    return Response(reply, status_code=201)


@post(
    "/open",
    responses={**ERROR_RESPONSES, 200: REPLAYED},
    summary="Open a channel from one of our nodes",
    description="201 with the operation (state requested, or rejected with a reason such as "
    "fee_over_budget). Above the auto limit it waits for another operator's approval.",
    status_code=201,
)
async def open_channel(
    request: Request[Any, Any, Any],
    data: JSONBody[OpenChannelBody],  # type: ignore[valid-type]
    idempotency_key: IdempotencyKey,
    gateway: NamedDependency[Gateway],
) -> Response[dict[str, Any]]:
    return await _request(request, gateway, "channel_open", "OpenChannel", idempotency_key, data)


@post(
    "/close",
    responses={**ERROR_RESPONSES, 200: REPLAYED},
    summary="Close a channel of one of our nodes cooperatively",
    status_code=201,
)
async def close_channel(
    request: Request[Any, Any, Any],
    data: JSONBody[CloseChannelBody],  # type: ignore[valid-type]
    idempotency_key: IdempotencyKey,
    gateway: NamedDependency[Gateway],
) -> Response[dict[str, Any]]:
    return await _request(request, gateway, "channel_close", "CloseChannel", idempotency_key, data)


@get(
    "/{op_id:str}",
    responses=ERROR_RESPONSES,
    summary="A channel operation's state and events",
)
async def read(
    request: Request[Any, Any, Any], op_id: FromPath[str], gateway: NamedDependency[Gateway]
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, READERS)
    return await read_view(gateway, principal, op_id)


async def _decide(
    request: Request[Any, Any, Any], gateway: Gateway, verb: str, op_id: str, data: Any
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, OPERATORS)
    body = fields_of(data) | {
        "type": f"{verb.capitalize()}PaymentIntent", "version": 1, "intent_id": op_id,
        "operator_id": principal.id,
    }  # fmt: skip
    return await gateway.command(f"{subjects.API_PREFIX}.{verb}.{principal.id}", body)


@post(
    "/{op_id:str}/approve",
    responses=ERROR_RESPONSES,
    summary="Approve an open waiting for approval (not the requester: two_person_rule)",
    status_code=200,
)
async def approve(
    request: Request[Any, Any, Any], op_id: FromPath[str],
    data: JSONBody[ApproveIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await _decide(request, gateway, "approve", op_id, data)


@post(
    "/{op_id:str}/reject",
    responses=ERROR_RESPONSES,
    summary="Decline an open waiting for approval",
    status_code=200,
)
async def reject(
    request: Request[Any, Any, Any], op_id: FromPath[str],
    data: JSONBody[RejectIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await _decide(request, gateway, "reject", op_id, data)


router = Router(
    path="/v1/channels",
    route_handlers=[open_channel, close_channel, read, approve, reject],
    tags=["channels"],
)
