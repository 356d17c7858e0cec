"""The checked-in OpenAPI document (docs/api/openapi.json) is the one the routes produce."""

from __future__ import annotations

from services.http.openapi import DOCUMENT, render


def test_the_checked_in_openapi_document_is_current() -> None:
    assert DOCUMENT.read_text() == render(), (
        "docs/api/openapi.json is stale: run `make schemas` (python -m services.http.openapi)"
    )


def test_every_route_but_the_open_ones_needs_the_api_key() -> None:
    import json

    from services.http.auth import OPEN_PATHS

    document = json.loads(render())
    assert document["security"] == [{"ApiKey": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            open_route = operation.get("security") == [{}]
            assert open_route == (path in OPEN_PATHS), path
