"""``/v1/intents``: submit, read, cancel, and an intent's timeline (ADR 0170).

A submit is the NATS ``SubmitPaymentIntent`` with the ``Idempotency-Key`` header as its key,
forwarded as the key's identity; the engine answers idempotency: the same key and body give the
original reply (200, ``Idempotent-Replayed: true``), the same key with another body
``409 idempotency_mismatch``.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody

from projections.catalog import INTENTS
from projections.store import ProjectionStore
from services.bus import subjects
from services.http.auth import ApiPrincipal, require
from services.http.bodies import CancelIntentBody, SubmitIntentBody, fields_of
from services.http.errors import ERROR_RESPONSES, ApiError
from services.http.gateway import Gateway
from services.http.limits import IDEMPOTENCY_KEY_CHARS_MAX

# Who submits and cancels: a caller. Agents sign each command with their own key (ADR 0066),
# which a gateway cannot do for them: they use NATS.
SUBMITTERS = ("caller",)
READERS = ("caller", "agent", "operator", "auditor")
# Who reads every intent (services.domain.intent.access.may_read); the others their own.
READ_ALL = ("operator", "auditor")

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key", min_length=1, max_length=IDEMPOTENCY_KEY_CHARS_MAX,
        description="The command's idempotency key: the same key and body give the same reply.",
    ),
]  # fmt: skip


def principal_of(request: Request[Any, Any, Any]) -> ApiPrincipal:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    return principal


def caller_of(principal: ApiPrincipal, given: Any) -> dict[str, Any]:
    """The payload's caller: the one given (the engine refuses one that is not the key's,
    ``identity_mismatch``), else the key's own id and registered kind."""
    if given is not None:
        return dict(given)
    return {"id": principal.id, "kind": principal.kind or "service"}


REPLAYED = ResponseSpec(
    data_container=dict[str, Any], generate_examples=False,
    description="The original reply: the same Idempotency-Key and body were sent before "
    "(header Idempotent-Replayed: true)",
)  # fmt: skip


@post(
    "/",
    responses={**ERROR_RESPONSES, 200: REPLAYED},
    summary="Submit a payment intent",
    description="201 with the engine's reply when new; the same key and body again give the "
    "original reply (200); the same key with another body is 409 idempotency_mismatch.",
    status_code=201,
)
async def submit(
    request: Request[Any, Any, Any],
    data: JSONBody[SubmitIntentBody],  # type: ignore[valid-type]
    idempotency_key: IdempotencyKey,
    gateway: NamedDependency[Gateway],
) -> Response[dict[str, Any]]:
    principal = principal_of(request)
    require(principal, SUBMITTERS)
    body = fields_of(data)
    body.update(
        type="SubmitPaymentIntent", version=1, idempotency_key=idempotency_key,
        caller=caller_of(principal, body.get("caller")),
    )  # fmt: skip
    reply = await gateway.command(f"{subjects.API_PREFIX}.submit.{principal.id}", body)
    if reply.get("duplicate"):
        return Response(reply, status_code=200, headers={"Idempotent-Replayed": "true"})
    return Response(reply, status_code=201)


@get(
    "/{intent_id:str}",
    responses=ERROR_RESPONSES,
    summary="An intent's state and events (the engine's view)",
)
async def read(
    request: Request[Any, Any, Any], intent_id: FromPath[str], gateway: NamedDependency[Gateway]
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, READERS)
    return await read_view(gateway, principal, intent_id)


async def read_view(gateway: Gateway, principal: ApiPrincipal, intent_id: str) -> dict[str, Any]:
    """The engine's view of an intent, a receive or a channel operation, read as the key's
    role and id (the engine decides what that identity may see)."""
    subject = f"{subjects.API_GET}.{principal.role}.{principal.id}"
    return await gateway.command(
        subject, {"type": "GetPaymentIntent", "version": 1, "intent_id": intent_id}
    )


@get(
    "/{intent_id:str}/timeline",
    responses=ERROR_RESPONSES,
    summary="An intent's audit timeline (the read model)",
)
async def timeline(
    request: Request[Any, Any, Any],
    intent_id: FromPath[str],
    projections: NamedDependency[ProjectionStore],
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, READERS)
    await projections.refresh((INTENTS,))
    doc = await projections.intent_doc(intent_id)
    # Someone else's intent reads as missing, as on NATS: its existence is not disclosed.
    if doc is None or (principal.role not in READ_ALL and doc.get("caller_id") != principal.id):
        raise ApiError(404, "not_found", f"no payment intent {intent_id}", field="intent_id")
    return {
        "intent_id": intent_id, "state": doc.get("state"), "position": doc.get("position"),
        "timeline": doc.get("timeline") or [],
    }  # fmt: skip


@post(
    "/{intent_id:str}/cancel",
    responses=ERROR_RESPONSES,
    summary="Cancel an intent not yet dispatched",
    status_code=200,
)
async def cancel(
    request: Request[Any, Any, Any],
    intent_id: FromPath[str],
    data: JSONBody[CancelIntentBody],  # type: ignore[valid-type]
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:
    principal = principal_of(request)
    require(principal, SUBMITTERS)
    body = fields_of(data) | {
        "type": "CancelPaymentIntent", "version": 1, "intent_id": intent_id,
        "caller": caller_of(principal, None),
    }  # fmt: skip
    return await gateway.command(f"{subjects.API_PREFIX}.cancel.{principal.id}", body)


router = Router(
    path="/v1/intents", route_handlers=[submit, read, timeline, cancel], tags=["intents"]
)
