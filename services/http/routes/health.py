"""``/healthz`` (the process serves), ``/readyz`` (and its NATS link is up), ``/metrics``
(a stub until the metrics issue fills it). No key needed (``auth.OPEN_PATHS``)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.enums import MediaType

from services.http.gateway import Gateway, unavailable


@get("/healthz", summary="The process serves", security=[{}])
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@get("/readyz", summary="The process serves and reaches NATS", security=[{}])
async def readyz(gateway: NamedDependency[Gateway]) -> dict[str, Any]:
    if not gateway.connected:
        raise unavailable("not connected to NATS")
    return {"ok": True}


@get("/metrics", summary="Prometheus metrics (none yet)", media_type=MediaType.TEXT, security=[{}])
async def metrics() -> Response[str]:
    return Response("", media_type="text/plain; version=0.0.4")


ROUTES = (healthz, readyz, metrics)
