"""``/healthz`` (the process serves), ``/readyz`` (and its NATS link is up), ``/metrics``
(a stub until the metrics issue fills it). No key needed (``auth.OPEN_PATHS``)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.enums import MediaType

from services.http.errors import ApiError
from services.http.gateway import Gateway


@get("/healthz", summary="The process serves", include_in_schema=True)
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@get("/readyz", summary="The process serves and reaches NATS")
async def readyz(gateway: Gateway) -> dict[str, Any]:
    if not gateway.connected:
        raise ApiError(503, "unavailable", "not connected to NATS", headers={"Retry-After": "2"})
    return {"ok": True}


@get("/metrics", summary="Prometheus metrics (none yet)", media_type=MediaType.TEXT)
async def metrics() -> Response[str]:
    return Response("", media_type="text/plain; version=0.0.4")


ROUTES = (healthz, readyz, metrics)
