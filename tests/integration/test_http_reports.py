"""The pilot report and the audit export over HTTP (issue 16): operators and auditors only; the
report is the CLI's; the exported bundle verifies offline and stops at the per-request cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.audit.verify import verify_bundle
from services.http.routes import reports
from tests.integration.test_http_api import Api, api_stack, error_of, intent


@pytest.fixture
async def api(tmp_path: Path, identity_home: Path, database_url: str) -> AsyncIterator[Api]:
    async with api_stack(tmp_path, identity_home, database_url, executors=False) as stack:
        yield stack


async def test_pilot_report_and_audit_export_over_http(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api.client("alice") as alice:
        for n in range(3):
            created = await alice.post("/v1/intents", json=intent(),
                                       headers={"Idempotency-Key": f"r-{n}"})  # fmt: skip
            assert created.status_code == 201, created.text
        assert (await alice.get("/v1/pilot/report")).status_code == 403
        refused = await alice.get("/v1/audit/export")
        assert refused.status_code == 403, refused.text
    async with api.client("aud-1") as auditor:
        report = await auditor.get("/v1/pilot/report", params={"window": "1h", "windows": 1})
        assert report.status_code == 200, report.text
        body = report.json()
        assert body["verdict"] == "no-go"  # three intents are too few evidence for a pilot
        assert sum(c["windows"][0]["figures"]["intents"] for c in body["corridors"]) == 3
        bad = await auditor.get("/v1/pilot/report", params={"window": "3w"})
        assert error_of(bad)[0] == 400 and error_of(bad)[2] == "window"

        exported = await auditor.get("/v1/audit/export", params={"from_position": 1})
        assert exported.status_code == 200, exported.text
        assert verify_bundle(exported.content.splitlines(keepends=True)).problems == ()
        assert (
            int(exported.headers["Corridor-To-Position"]) == await api.engine.store.head_position()
        )

        monkeypatch.setattr(reports, "HTTP_EXPORT_EVENTS_MAX", 2)
        capped = await auditor.get("/v1/audit/export", params={"from_position": 2})
        assert capped.headers["Corridor-To-Position"] == "3"
        assert len(capped.content.splitlines()) == 1 + 2  # the manifest and two events
        backwards = await auditor.get("/v1/audit/export",
                                      params={"from_position": 5, "to_position": 2})  # fmt: skip
        assert error_of(backwards) == (400, "invalid_range", "to_position")
