"""``corridor --help``, ``corridor CMD --help`` and light commands import no heavy module.

Each case runs in a fresh interpreter (a test process has imported everything already) and
reports ``sys.modules`` after ``main`` returns: the assertion is on modules, not on time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "services" / "policy" / "default.yaml"

# Top-level packages a light command must not load: the network clients, the event loop
# replacement, and pydantic (settings are read by `up` and the long-running commands only).
HEAVY_PACKAGES = ("grpc", "asyncpg", "nats", "uvloop", "pydantic", "pydantic_settings")
# Inside our own tree: the simulator beyond its CLI registration, and the node adapters.
ALLOWED_OWN = {"services.sim", "services.sim.cli", "services.lightning", "services.lightning.port"}

_PROBE = """
import contextlib, io, json, sys
from services.cli.main import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def _loaded(*argv: str) -> tuple[int, list[str], str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=REPO,
        timeout=60, check=True,
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["modules"], report["out"]


def _heavy(modules: list[str]) -> list[str]:
    heavy = [m for m in modules if m.split(".")[0] in HEAVY_PACKAGES]
    heavy += [
        m
        for m in modules
        if m.startswith(("services.sim.", "services.lightning.")) and m not in ALLOWED_OWN
    ]
    return sorted(heavy)


LIGHT_COMMANDS = [
    ["--help"],
    *([cmd, "--help"] for cmd in ("up", "submit", "get", "approve", "reject", "cancel",
                                  "watch", "replay", "exceptions", "corridors")),
    ["sim", "--help"],
    ["sim", "up", "--help"],
    ["sim", "fault", "fail-route", "--help"],
    ["policy", "--help"],
    ["policy", "show", "--help"],
    ["policy", "check", str(DEFAULT_POLICY)],
    ["demo", "--help"],
    ["bench", "--help"],
    ["executor", "--help"],
    ["creds", "--help"],
    ["creds", "add", "--help"],
    ["agents", "--help"],
    ["agents", "register", "--help"],
    ["audit", "export", "--help"],
    ["audit", "verify", "--help"],
]  # fmt: skip


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=lambda a: " ".join(a).replace("/", "_"))
def test_light_commands_import_no_heavy_module(argv: list[str]) -> None:
    code, modules, _ = _loaded(*argv)
    assert code == 0
    assert _heavy(modules) == []


def test_help_lists_every_group_and_the_exit_codes() -> None:
    code, modules, out = _loaded("--help")
    assert code == 0
    for group in ("submit", "watch", "corridors", "sim", "executor", "policy", "demo", "bench"):
        assert f"\n    {group}" in out
    assert "exit codes:" in out and "130" in out
    # The top-level help names the plugin groups without importing their modules.
    assert not {"services.sim.cli", "services.policy.cli", "services.executor.cli"} & set(modules)


def test_policy_check_reports_an_invalid_file_without_a_stack(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_POLICY.read_text().replace("cap_ppm: 10_000", "cap_ppm: -5"))
    code, modules, out = _loaded("policy", "check", str(bad), "--json")
    assert code == 1
    assert json.loads(out)["error"]["field"] == "fees.cap_ppm"
    assert _heavy(modules) == []
