"""The pilot report: per corridor, consecutive windows ending now, judged (ADR 0155)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.errors import CorridorError
from schemas.pilot import Figures, PilotReport, PilotThresholds
from services.domain.pilot.checks import verdict, window_report
from services.domain.pilot.figures import figures
from services.domain.pilot.window import consecutive


class UnknownCorridor(CorridorError):
    """``--corridor`` names a corridor neither configured nor seen in the report's span."""

    code = "unknown_corridor"


def build_report(
    docs: Iterable[dict[str, Any]],
    items: Iterable[dict[str, Any]],
    *,
    now_ms: int,
    window: str,
    window_ms: int,
    count: int,
    nodes_by_corridor: Mapping[str, Iterable[str]],
    thresholds: PilotThresholds,
    thresholds_source: str,
    only: str | None = None,
) -> PilotReport:
    """``docs`` are intent documents (at least those received in the report's span), ``items``
    reconciliation items. A corridor is judged if it is configured (``nodes_by_corridor``,
    whose nodes' reconciliation items count for it) or has intents; ``only`` keeps one."""
    spans = consecutive(end_ms=now_ms, window_ms=window_ms, count=count)
    begin, end = spans[0][0], spans[-1][1]
    intents = [d for d in docs if begin <= int(d["received_at_ms"]) < end]
    all_items = list(items)
    names = sorted(set(nodes_by_corridor) | {str(d["corridor"]) for d in intents})
    if only is not None:
        if only not in names:
            raise UnknownCorridor(f"no corridor {only!r} configured or seen", field="corridor")
        names = [only]
    verdicts = []
    for name in names:
        nodes = set(nodes_by_corridor.get(name, ()))
        ours = [d for d in intents if d["corridor"] == name]
        its_items = [i for i in all_items if i["node"] in nodes]
        windows = [
            window_report(index, lo, hi, _figures(ours, its_items, lo, hi), thresholds)
            for index, (lo, hi) in enumerate(spans, start=1)
        ]
        verdicts.append(verdict(name, windows))
    go = bool(verdicts) and all(v.verdict == "go" for v in verdicts)
    return PilotReport(
        now_ms=now_ms, window=window, window_ms=window_ms, windows=count,
        thresholds_version=thresholds.version, thresholds_source=thresholds_source,
        verdict="go" if go else "no-go", corridors=tuple(verdicts),
        all_corridors=tuple(_figures(intents, all_items, lo, hi) for lo, hi in spans),
    )  # fmt: skip


def _figures(docs: list[dict[str, Any]], items: list[dict[str, Any]], lo: int, hi: int) -> Figures:
    return figures(
        (d for d in docs if lo <= int(d["received_at_ms"]) < hi), items, start_ms=lo, end_ms=hi
    )
