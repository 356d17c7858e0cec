"""A caller's webhook endpoints over HTTP (ADR 0175): register (the secret is in this one reply),
list, remove, and the history a receiver catches up from after an outage. Registration goes to
the engine as the key's identity, as ``corridor webhooks`` sends it over NATS; the history is
read from the log (the gateway's credential reads no events), the caller's own only."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from schemas.webhook_messages import SETTLEMENT_EVENT_TYPES
from services.engine.event_codec import to_recorded
from services.eventstore.port import EventStore
from services.http.auth import ApiPrincipal, require
from services.http.errors import ERROR_RESPONSES, refusal
from services.http.gateway import Gateway
from services.webhooks import operations
from services.webhooks.history import HISTORY_ENTRIES_MAX
from services.webhooks.payload import from_recorded

OWNERS: Final = ("caller", "agent")


class RegisterWebhookBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    event_types: Annotated[list[Annotated[str, msgspec.Meta(max_length=64)]],
                           msgspec.Meta(min_length=1, max_length=16)]  # fmt: skip
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


def _owner(request: Request[Any, Any, Any]) -> str:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    require(principal, OWNERS)
    return principal.id


def _asker(gateway: Gateway) -> operations.Request:
    async def ask(subject: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await gateway.ask(subject, body)
        if not reply.get("ok"):
            raise refusal(reply)
        return reply

    return ask


@post("/", responses=ERROR_RESPONSES, summary="Register an endpoint (the secret is shown once)",
      status_code=201)  # fmt: skip
async def register(
    request: Request[Any, Any, Any], data: JSONBody[RegisterWebhookBody],
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await operations.register(
        _asker(gateway), caller_id=_owner(request), url=data.url,
        event_types=data.event_types, idempotency_key=data.idempotency_key,
    )  # fmt: skip


@get("/", responses=ERROR_RESPONSES, summary="Your endpoints (never their secrets)")
async def list_endpoints(
    request: Request[Any, Any, Any], gateway: NamedDependency[Gateway]
) -> dict[str, Any]:
    return await operations.list_endpoints(_asker(gateway), caller_id=_owner(request))


@delete("/{endpoint_id:str}", responses=ERROR_RESPONSES, summary="Remove an endpoint",
        status_code=200)  # fmt: skip
async def remove(
    request: Request[Any, Any, Any], endpoint_id: FromPath[str],
    gateway: NamedDependency[Gateway],
) -> dict[str, Any]:  # fmt: skip
    return await operations.remove(
        _asker(gateway), caller_id=_owner(request), endpoint_id=endpoint_id
    )


@get("/history", responses=ERROR_RESPONSES, summary="Your settlement events from a position")
async def history(
    request: Request[Any, Any, Any], events: NamedDependency[Any],
    from_position: Annotated[int, QueryParameter(ge=1)] = 1,
    limit: Annotated[int, QueryParameter(ge=1, le=HISTORY_ENTRIES_MAX)] = 100,
) -> Response[dict[str, Any]]:  # fmt: skip
    """Each entry carries the ``webhook_id`` and payload its delivery carries, so a receiver
    dedupes history and deliveries by the id; ask again from ``next_position``."""
    owner = _owner(request)
    store: EventStore = events
    entries: list[dict[str, Any]] = []
    after = from_position - 1
    next_position = None
    # Pages of the log from the position; only this owner's settlement events are kept.
    while next_position is None:
        page = await store.read_from(
            after_position=after, through_position=await store.head_position(),
            types=SETTLEMENT_EVENT_TYPES, limit=500,
        )  # fmt: skip
        if not page:
            break
        for stored in page:
            if stored.metadata.get("owner") != owner:
                continue
            if len(entries) == limit:
                next_position = stored.position
                break
            message = from_recorded(msgspec.to_builtins(to_recorded(stored)))
            if message is not None:
                entries.append(message.as_history_entry())
        after = page[-1].position
    return Response({"entries": entries, "next_position": next_position})


webhooks = Router(path="/v1/webhooks", route_handlers=[register, list_endpoints, remove, history],
                  tags=["webhooks"])  # fmt: skip
ROUTES: Final = (webhooks,)
