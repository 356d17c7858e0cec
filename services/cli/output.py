"""How the CLI prints data: tables with a header row for people, JSON as-is for scripts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO


def print_json(data: Any, *, out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(data, indent=2) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, a header row first; the last column is not padded."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    assert all(len(row) == len(headers) for row in cells), "every row needs every column"
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, out: TextIO | None = None
) -> None:
    (out or sys.stdout).write(table(headers, rows))


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """``key  value`` lines, keys aligned; pairs whose value is None are left out."""
    shown = [(k, v) for k, v in pairs if v is not None]
    if not shown:
        return ""
    width = max(len(k) for k, _ in shown)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in shown)


def utc(ms: int | None) -> str | None:
    """Epoch milliseconds as ``2024-05-01 12:00:00Z``, the way every table shows times."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def records_table(records: Sequence[Mapping[str, Any]]) -> str:
    """A table of dicts whose keys are not known in advance (e.g. ``failures`` in a reply):
    the columns are the union of keys, in order of first appearance; nested values as JSON."""
    headers: list[str] = []
    for record in records:
        headers.extend(k for k in record if k not in headers)
    rows = [[_cell(record.get(h)) for h in headers] for record in records]
    return table([h.upper() for h in headers], rows)


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return value
