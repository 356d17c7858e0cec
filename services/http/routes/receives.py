"""``/v1/receives``: create a receive intent and read it (ADR 0220, 0238).

The NATS ``CreateReceiveIntent`` with the ``Idempotency-Key`` header as its key, forwarded as
the key's identity, exactly as ``corridor receive`` sends it; the same key and body give the
original reply (200, ``Idempotent-Replayed: true``), another body under it is 409. A read is the
engine's view (``GetPaymentIntent`` answers receive ids too): state, events, the invoice.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from services.bus import subjects
from services.http.auth import require
from services.http.bodies import ReceiveBody, fields_of
from services.http.errors import ERROR_RESPONSES
from services.http.gateway import Gateway
from services.http.routes.intents import (
    READERS,
    REPLAYED,
    IdempotencyKey,
    caller_of,
    principal_of,
    read_view,
)

# Who receives: a caller, into its own account (agents sign their commands: they use NATS).
RECEIVERS = ("caller",)


@post(
    "/",
    responses={**ERROR_RESPONSES, 200: REPLAYED},
    summary="Create a receive intent (an invoice on one of our nodes)",
    description="201 with the engine's reply when new; the invoice follows on the receive "
    "(GET /v1/receives/{intent_id}, state issued). The same key and body again give the "
    "original reply (200); the same key with another body is 409 idempotency_mismatch.",
    status_code=201,
)
async def create(
    request: Request[Any, Any, Any],
    data: JSONBody[ReceiveBody],  # type: ignore[valid-type]
    idempotency_key: IdempotencyKey,
    gateway: NamedDependency[Gateway],
) -> Response[dict[str, Any]]:
    principal = principal_of(request)
    require(principal, RECEIVERS)
    body = fields_of(data)
    body.update(
        type="CreateReceiveIntent", version=1, idempotency_key=idempotency_key,
        caller=caller_of(principal, body.get("caller")),
    )  # fmt: skip
    reply = await gateway.command(f"{subjects.API_PREFIX}.receive.{principal.id}", body)
    if reply.get("duplicate"):
        return Response(reply, status_code=200, headers={"Idempotent-Replayed": "true"})
    return Response(reply, status_code=201)


@get(
    "/{intent_id:str}",
    responses=ERROR_RESPONSES,
    summary="A receive's state and events: its invoice once issued, paid or expired",
)
async def read(
    request: Request[Any, Any, Any], intent_id: FromPath[str], gateway: NamedDependency[Gateway]
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, READERS)
    return await read_view(gateway, principal, intent_id)


router = Router(path="/v1/receives", route_handlers=[create, read], tags=["receives"])
