"""`make release` (ADR 0185), offline: the wheel, image context and SBOM from HEAD, a signed
manifest that `corridor release verify` accepts, and the same bytes from the same commit."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from tests.e2e.test_cli import REPO, _env, run_cli


def _make_release(tmp_path: Path, name: str, key: Path) -> Path:
    out = tmp_path / name
    done = subprocess.run(
        ["make", "--no-print-directory", "release", f"RELEASE_DIR={out}",
         f"RELEASE_BUILD={tmp_path / (name + '-build')}", f"RELEASE_KEY={key}"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "signature good" in done.stdout
    return out


def test_make_release_builds_signs_and_reproduces(tmp_path: Path) -> None:
    key = tmp_path / "release.key"
    made = run_cli("release", "keygen", "--out", str(key), "--json")
    assert made.returncode == 0, made.stderr
    first = _make_release(tmp_path, "one", key)
    manifest = json.loads((first / "manifest.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert manifest["git_commit"] == head.stdout.strip()
    names = sorted(a["name"] for a in manifest["artefacts"])
    version = manifest["version"]
    assert names == [
        f"corridor-{version}-image-context.tar.gz",
        f"corridor-{version}-py3-none-any.whl",
        f"corridor-{version}-sbom.cdx.json",
        "release-keys.json",
    ]
    sbom = json.loads((first / f"corridor-{version}-sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and any(
        c["name"] == "msgspec" for c in sbom["components"]
    )
    with tarfile.open(first / f"corridor-{version}-image-context.tar.gz") as context:
        members = set(context.getnames())
    assert {"pyproject.toml", "requirements/runtime.lock", "Makefile"} <= members
    assert not any(m.startswith((".venv/", ".corridor/", "dist/")) for m in members)

    verified = run_cli("release", "verify", "--dir", str(first), "--keyring", f"{key}.pub.json")
    assert verified.returncode == 0, verified.stderr

    second = _make_release(tmp_path, "two", key)
    for path in sorted(first.iterdir()):
        assert (second / path.name).read_bytes() == path.read_bytes(), path.name
