"""The operator console (ADR 0158): one page at ``/console`` (the login page, the only console
path open without a key) whose script renders every view from the JSON API with the key the
operator typed, kept in the tab's sessionStorage. The reads below exist for it: who the key
is, corridor figures with a latency histogram, intents waiting for approval, node health.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated, Any, Final

from litestar import Request, Response, Router, get
from litestar.di import NamedDependency
from litestar.enums import MediaType
from litestar.params import QueryParameter

from projections.catalog import INTENTS
from projections.store import ProjectionStore
from services.domain.pilot.figures import figures
from services.domain.pilot.window import parse_window
from services.http.auth import ApiPrincipal, require
from services.http.errors import ERROR_RESPONSES
from services.http.node_health import NodeHealthFeed
from services.liquidity.feed import LiquidityFeed

WATCHERS: Final = ("operator", "auditor")
# Latency histogram bucket bounds, milliseconds (the last bucket is everything above).
LATENCY_BUCKETS_MS: Final = (50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
APPROVALS_SHOWN_MAX: Final = 100


def _page() -> str:
    return resources.files("services.http.console").joinpath("console.html").read_text()


@get("/console", media_type=MediaType.HTML, security=[{}], include_in_schema=False)
async def console_page() -> Response[str]:
    # No data in it: everything it shows it fetches with the operator's key.
    return Response(_page(), media_type=MediaType.HTML, headers={
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline' 'self'; "
        "style-src 'unsafe-inline' 'self'; img-src 'self' data:; frame-ancestors 'none'",
        "Cache-Control": "no-store",
    })  # fmt: skip


def _principal(request: Request[Any, Any, Any]) -> ApiPrincipal:
    principal = request.user
    assert isinstance(principal, ApiPrincipal), "ApiKeyMiddleware sets the user"
    return principal


@get("/me", responses=ERROR_RESPONSES, summary="Who this API key is")
async def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal = _principal(request)
    return {"role": principal.role, "id": principal.id, "kind": principal.kind}


def histogram(latencies_ms: list[int]) -> list[dict[str, Any]]:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    for value in latencies_ms:
        index = next((i for i, b in enumerate(LATENCY_BUCKETS_MS) if value <= b), -1)
        counts[index] += 1
    bounds: list[int | None] = [*LATENCY_BUCKETS_MS, None]
    return [{"le_ms": b, "count": c} for b, c in zip(bounds, counts, strict=True)]


@get("/overview", responses=ERROR_RESPONSES, summary="Per corridor: figures and latencies")
async def overview(
    request: Request[Any, Any, Any], projections: NamedDependency[ProjectionStore],
    window: Annotated[str, QueryParameter(max_length=8)] = "24h",
) -> dict[str, Any]:  # fmt: skip
    """Intents received in the last ``window``, per corridor: the pilot figures
    (``services/domain/pilot``) and a histogram of settlement latency."""
    require(_principal(request), WATCHERS)
    window_ms = parse_window(window)
    await projections.refresh((INTENTS,))
    now_ms = time.time_ns() // 1_000_000
    docs = await projections.intent_docs(
        received_from_ms=now_ms - window_ms, received_to_ms=now_ms + 1
    )
    corridors = []
    for corridor in sorted({str(d["corridor"]) for d in docs}):
        mine = [d for d in docs if d["corridor"] == corridor]
        latencies = [
            int(d["settled_at_ms"]) - int(d["received_at_ms"])
            for d in mine if d["settled_at_ms"] is not None
        ]  # fmt: skip
        corridors.append({"corridor": corridor, "figures": figures(mine),
                          "latency_histogram": histogram(latencies)})  # fmt: skip
    return {"window": window, "as_of_ms": now_ms, "corridors": corridors}


@get("/approvals", responses=ERROR_RESPONSES, summary="Intents waiting for an operator")
async def approvals(
    request: Request[Any, Any, Any], projections: NamedDependency[ProjectionStore]
) -> dict[str, Any]:
    require(_principal(request), WATCHERS)
    await projections.refresh((INTENTS,))
    waiting = await projections.intents_in_state("awaiting_approval", limit=APPROVALS_SHOWN_MAX)
    return {"intents": [
        {k: d[k] for k in ("intent_id", "caller_id", "caller_kind", "on_behalf_of", "corridor",
                           "amount_msat", "tier", "policy_version", "received_at_ms")}
        for d in waiting
    ]}  # fmt: skip


@get("/nodes", responses=ERROR_RESPONSES, summary="Node health and liquidity, per region")
async def nodes(
    request: Request[Any, Any, Any], node_health: NamedDependency[NodeHealthFeed]
) -> dict[str, Any]:
    require(_principal(request), WATCHERS)
    return {"nodes": node_health.snapshot(time.time_ns() // 1_000_000)}


@get("/liquidity", responses=ERROR_RESPONSES, summary="Channels, targets and alerts per region")
async def liquidity(
    request: Request[Any, Any, Any], liquidity: NamedDependency[LiquidityFeed],
    projections: NamedDependency[ProjectionStore],
) -> dict[str, Any]:  # fmt: skip
    """What ``corridor liquidity`` shows (ADR 0240, 0241), from the snapshots this gateway
    heard; the forecast from the intents settled in the outflow window."""
    from services.domain.liquidity.forecast import outflows

    require(_principal(request), WATCHERS)
    now_ms = time.time_ns() // 1_000_000
    window_ms = liquidity.outflow_window_ms
    await projections.refresh((INTENTS,))
    docs = await projections.intent_docs(
        received_from_ms=now_ms - 2 * window_ms, received_to_ms=now_ms + 1
    )
    return liquidity.view(now_ms, outflows(docs, now_ms=now_ms, window_ms=window_ms))


console_reads = Router(path="/v1/console", route_handlers=[overview, approvals, nodes, liquidity],
                       tags=["console"])  # fmt: skip
identity = Router(path="/v1", route_handlers=[me], tags=["identity"])
ROUTES: Final = (console_page, console_reads, identity)
