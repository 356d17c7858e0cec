"""What the deployment tests share: where the artefacts are, the external tools they need (skipped
loudly locally, a failure under CI=true, as tests/unit/test_alert_rules.py does for promtool),
and the cross-checks every artefact passes (its `corridor` commands parse, the settings it
names exist, its probes are served)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, NoReturn

import pytest

from services.cli.main import build_parser
from services.settings import Settings

ROOT: Final = Path(__file__).resolve().parents[2]
DOCKERFILE: Final = ROOT / "Dockerfile"
COMPOSE_DIR: Final = ROOT / "compose"
COMPOSE_FILES: Final = (COMPOSE_DIR / "regtest.yaml", COMPOSE_DIR / "production.yaml")
K8S_DIR: Final = ROOT / "deploy" / "k8s"
BIN: Final = Path(sys.executable).parent

# Environment variables Corridor reads outside the CORRIDOR_ settings model, with the reader.
OTHER_CORRIDOR_ENV: Final = {
    "CORRIDOR_CREDS": "services/bus/jetstream.py credential_options",
    "CORRIDOR_CONFIG": "services/settings.py settings_customise_sources",
}


class DeployCheckNotRun(UserWarning):
    """A tool a deployment check needs was missing, so the check did not run."""


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def tool_or_skip(name: str, where: str) -> str:
    """The tool's path; a failure under CI=true, a loud skip otherwise."""
    found = str(BIN / name) if (BIN / name).exists() else shutil.which(name)
    if found is not None:
        return found
    reason = f"{name} not found ({where})"
    if under_ci():
        pytest.fail(f"deployment check cannot run under CI=true: {reason}")
    skip_loudly(reason)


def skip_loudly(reason: str) -> NoReturn:
    message = f"DEPLOYMENT CHECK NOT RUN: {reason}"
    warnings.warn(message, DeployCheckNotRun, stacklevel=2)
    pytest.skip(message)


def parse_complaint(argv: list[str]) -> str | None:
    """None if ``corridor argv`` parses with the real parser, else argparse's complaint."""
    parser: argparse.ArgumentParser = build_parser(argv)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue() else "exit"
    return None


def unknown_settings_env(names: Iterable[str]) -> list[str]:
    """The CORRIDOR_* names among ``names`` that no setting or reader answers to."""
    known = {f"CORRIDOR_{field.upper()}" for field in Settings.model_fields}
    known |= set(OTHER_CORRIDOR_ENV)
    return sorted(n for n in names if n.startswith("CORRIDOR_") and n not in known)


def unknown_settings_keys(keys: Iterable[str]) -> list[str]:
    known = set(Settings.model_fields)
    return sorted(k for k in keys if k not in known)


def metrics_probe_status(path: str) -> str:
    """The status line the engine's and executors' metrics server answers ``path`` with."""
    from services.metrics.server import wsgi_app

    seen: list[str] = []

    def start_response(status: str, _headers: Any) -> None:
        seen.append(status)

    wsgi_app(lambda: None)({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response)
    return seen[0]


def http_api_paths() -> set[str]:
    """The paths the HTTP API serves without a key (its probes among them)."""
    from services.http.routes.health import ROUTES

    return {p for route in ROUTES for p in route.paths}
