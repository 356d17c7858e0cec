"""Read-only reports over HTTP for operators and auditors: the pilot report (ADR 0155) and a
range of the log as an audit bundle (ADR 0150), as ``corridor pilot report`` and ``corridor
audit export`` give them."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from projections.catalog import INTENTS, RECONCILIATION
from projections.store import ProjectionStore
from schemas.errors import CorridorError
from services.eventstore.port import EventStore
from services.http.auth import ApiPrincipal, require
from services.http.errors import ERROR_RESPONSES, ApiError

WATCHERS: Final = ("operator", "auditor")
# One HTTP export holds at most this many events: an auditor pages by position; the CLI's
# `corridor audit export` takes larger ranges to a file.
HTTP_EXPORT_EVENTS_MAX: Final = 100_000


def _watcher(request: Request[Any, Any, Any]) -> None:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    require(principal, WATCHERS)


@get("/report", responses=ERROR_RESPONSES, summary="Pilot go/no-go per corridor (ADR 0155)")
async def pilot_report(
    request: Request[Any, Any, Any], projections: NamedDependency[ProjectionStore],
    window: Annotated[str, QueryParameter(max_length=8)] = "7d",
    windows: Annotated[int, QueryParameter(ge=1, le=12)] = 2,
    corridor: Annotated[str | None, QueryParameter(max_length=64)] = None,
) -> dict[str, Any]:  # fmt: skip
    from services.pilot.cli import configured_corridors
    from services.pilot.cli import pilot_report as build

    _watcher(request)
    await projections.refresh((INTENTS, RECONCILIATION))
    try:
        report = await build(
            projections, window=window, windows=windows, now_ms=time.time_ns() // 1_000_000,
            corridor=corridor, nodes_by_corridor=configured_corridors(),
        )  # fmt: skip
    except CorridorError as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    result: dict[str, Any] = msgspec.to_builtins(report)
    return result


@get("/export", responses=ERROR_RESPONSES, summary="A range of the log as an audit bundle")
async def audit_export(
    # Any: the port is a Protocol, which the dependency check cannot test an instance against.
    request: Request[Any, Any, Any], events: NamedDependency[Any],
    from_position: Annotated[int, QueryParameter(ge=1)] = 1,
    to_position: Annotated[int | None, QueryParameter(ge=1)] = None,
) -> Response[bytes]:  # fmt: skip
    """The bundle of ``corridor audit export`` (verify it offline with ``corridor audit
    verify``), at most ``HTTP_EXPORT_EVENTS_MAX`` events per request."""
    from services.audit.export import ExportError, export_bundle

    _watcher(request)
    store: EventStore = events
    if to_position is not None and to_position < from_position:
        raise ApiError(
            400, "invalid_range", "to_position is before from_position", field="to_position"
        )
    head = await store.head_position()
    last = min(head, to_position or head, from_position + HTTP_EXPORT_EVENTS_MAX - 1)
    with tempfile.TemporaryDirectory(prefix="corridor-export-") as folder:
        out = Path(folder) / "bundle.jsonl"
        try:
            await export_bundle(
                store, out, from_position=from_position, to_position=last,
                now_ms=time.time_ns() // 1_000_000,
            )  # fmt: skip
        except ExportError as exc:
            raise ApiError(400, "invalid_range", str(exc), field="from_position") from None
        data = await asyncio.to_thread(out.read_bytes)
    name = f"corridor-audit-{from_position}-{last}.jsonl"
    return Response(data, media_type="application/x-ndjson", headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "Corridor-To-Position": str(last),
    })  # fmt: skip


pilot = Router(path="/v1/pilot", route_handlers=[pilot_report], tags=["reports"])
audit = Router(path="/v1/audit", route_handlers=[audit_export], tags=["reports"])
ROUTES: Final = (pilot, audit)
