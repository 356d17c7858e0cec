"""``/healthz`` (the process serves), ``/readyz`` (and its NATS link is up), ``/metrics`` (the
process's Prometheus series, ADR 0153: under ``corridor up`` the engine's too). No key needed
(``auth.OPEN_PATHS``)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.http.gateway import Gateway, unavailable


@get("/healthz", summary="The process serves", security=[{}])
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@get("/readyz", summary="The process serves and reaches NATS", security=[{}])
async def readyz(gateway: NamedDependency[Gateway]) -> dict[str, Any]:
    if not gateway.connected:
        raise unavailable("not connected to NATS")
    return {"ok": True}


@get("/metrics", summary="Prometheus metrics", media_type=MediaType.TEXT, security=[{}])
async def metrics() -> Response[bytes]:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


ROUTES = (healthz, readyz, metrics)
