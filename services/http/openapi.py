"""The OpenAPI document, as served at ``/openapi.json``, checked in at ``docs/api/openapi.json``
(``make schemas`` or ``python -m services.http.openapi`` rewrites it; a test fails when stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final, cast

DOCUMENT: Final = Path(__file__).resolve().parents[2] / "docs" / "api" / "openapi.json"


def document() -> dict[str, Any]:
    from services.http.app import HttpDeps, build_app

    # The document depends on the routes only: no connection is opened to build it.
    app = build_app(cast(HttpDeps, _NoDeps()))
    doc: dict[str, Any] = app.openapi_schema.to_schema()
    return doc


class _NoDeps:
    gateway = None
    projections = None
    registry = None


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(render())
    print(f"wrote {DOCUMENT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
