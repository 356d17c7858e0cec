"""The composition root of the HTTP API: ``build_app`` wires the routers to their
dependencies. A later router (webhooks, the console...) is one more entry in ``ROUTERS`` or
``extra``; it is behind the API key unless its path is in ``auth.OPEN_PATHS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from projections.store import ProjectionStore
from services.eventstore.port import EventStore
from services.http import errors
from services.http.auth import ApiKeyMiddleware
from services.http.gateway import Gateway
from services.http.limits import BODY_BYTES_MAX
from services.http.node_health import NodeHealthFeed
from services.http.routes import (
    channels,
    console,
    exception_actions,
    health,
    intents,
    operations,
    receives,
    reports,
    webhooks,
)
from services.identity.lookup import RegistryFile
from services.liquidity.feed import LiquidityFeed

API_TITLE: Final = "Corridor"
API_VERSION: Final = "1"
ROUTERS: Final[Sequence[Any]] = (
    *health.ROUTES,
    intents.router,
    *operations.ROUTERS,
    *console.ROUTES,
    *reports.ROUTES,
    *webhooks.ROUTES,
    *exception_actions.ROUTES,
    receives.router,  # ADR 0238
    channels.router,
)


@dataclass(frozen=True)
class HttpDeps:
    """What the routes use: the engine over NATS, the read models, the API keys."""

    gateway: Gateway
    projections: ProjectionStore
    registry: RegistryFile
    # The log itself, for audit exports (None: the export answers 503).
    events: EventStore | None = None
    # The stack's state dir: where the nodes' endpoints are, for an exception's reprocess.
    state_dir: Path | None = None
    # The executors' health reports, for the console's nodes page.
    node_health: NodeHealthFeed = field(default_factory=NodeHealthFeed)
    # The executors' channel snapshots, for the console's liquidity tables (ADR 0240).
    liquidity: LiquidityFeed = field(default_factory=LiquidityFeed)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title=API_TITLE, version=API_VERSION, path="/",
        description="Corridor's HTTP API: payment intents and operator actions, forwarded to "
        "the engine's NATS API as the identity of the API key (Authorization: Bearer).",
        render_plugins=[JsonRenderPlugin(path="/openapi.json")],
        components=Components(
            security_schemes={"ApiKey": SecurityScheme(type="http", scheme="bearer")}
        ),
        security=[{"ApiKey": []}],
    )  # fmt: skip


def _events(deps: HttpDeps) -> EventStore:
    if deps.events is None:
        raise errors.ApiError(503, "unavailable", "this server has no event store")
    return deps.events


def build_app(deps: HttpDeps, *, extra: Sequence[Any] = ()) -> Litestar:
    return Litestar(
        route_handlers=[*ROUTERS, *extra],
        dependencies={
            "gateway": Provide(lambda: deps.gateway, sync_to_thread=False),
            "projections": Provide(lambda: deps.projections, sync_to_thread=False),
            "node_health": Provide(lambda: deps.node_health, sync_to_thread=False),
            "liquidity": Provide(lambda: deps.liquidity, sync_to_thread=False),
            "events": Provide(lambda: _events(deps), sync_to_thread=False),
            "deps": Provide(lambda: deps, sync_to_thread=False),
        },
        middleware=[DefineMiddleware(ApiKeyMiddleware, registry=deps.registry)],
        exception_handlers=errors.HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=BODY_BYTES_MAX,
        openapi_config=openapi_config(),
        # The process's logging is ours (services/logging.py, JSON lines); Litestar's default
        # config would install its own format on the standard-library loggers.
        logging_config=None,
        debug=False,
    )
