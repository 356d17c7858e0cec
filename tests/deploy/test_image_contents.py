"""The image's contents without a container engine (issue 17, ADR 0180): the wheel built as the
Dockerfile builds it, installed with the runtime lock (hashes required) into a fresh venv by an
unprivileged user, runs the Dockerfile's ENTRYPOINT and CMD exactly as written, each command
the deployments run (`--help`), and imports every runtime module. A module that needs a package
outside the runtime lock fails here, not in production."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.artefacts import DOCKERFILE, ROOT, skip_loudly, under_ci
from tests.deploy.test_dockerfile import exec_form, final_stage

RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
# What the Dockerfile copies into the build context, no more (.dockerignore).
SOURCES = ("pyproject.toml", "README.md", "services", "schemas", "projections")
# The Dockerfile's COPY of the venv names this directory; the test installs to the same path
# under its temp dir.
VENV = "opt/corridor"
# Modules that need an extra the runtime lock leaves out, by the package they import and why
# it is not in the image. Everything else under services/, schemas/, projections/ must import.
NEEDS_AN_EXTRA = {
    "services.sim": "bolt11 (extra `sim`): the simulated network, never in a deployment",
    "services.demo": "the simulated network (extra `sim`)",
}
# The commands compose/ and deploy/k8s run; each must load its plugin in the image.
DEPLOYED_COMMANDS = (["up"], ["executor"], ["projections", "run"], ["http"], ["creds", "add"])
# Building the wheel and installing ~40 locked wheels from pip's cache takes 20-40 s here.
STEP_TIMEOUT_S = 120
PYPI = ("pypi.org", 443)


def _unprivileged_user() -> str | None:
    """None when not root (the current user installs); else one that exists, as the dev
    stack's PostgreSQL picks one (services/devstack/postgres.py)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    pytest.fail("running as root and no unprivileged user (postgres/nobody) exists")


def _as(user: str | None, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    # runuser by its path: the image's PATH given to the command has no sbin.
    prefix = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--"] if user else []
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*prefix, *argv], capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False,
        **kwargs,
    )  # fmt: skip


def _build_lock() -> str:
    """The build backend's lock, made by the Dockerfile's own awk program from the dev lock."""
    program = re.search(r"RUN awk '([^']+)'", DOCKERFILE.read_text())
    assert program is not None, "the Dockerfile no longer extracts the build lock with awk"
    made = subprocess.run(
        ["awk", program.group(1), str(ROOT / "requirements" / "dev.lock")], capture_output=True,
        text=True, timeout=10, check=True,
    )  # fmt: skip
    names = sorted(line.split("==")[0] for line in made.stdout.splitlines() if "==" in line)
    assert names == ["setuptools", "wheel"], made.stdout
    return made.stdout


def _interpreter_for(user: str | None) -> str:
    """A Python of this suite's major.minor (the image's, ADR 0180) that ``user`` may run and
    make a venv with: this one, unless it lives where the user cannot reach (pyenv under
    /root), then the system's."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
                  f"/usr/local/bin/{version}", f"/usr/bin/{version}"]  # fmt: skip
    for candidate in candidates:
        if Path(candidate).name == version or Path(candidate).exists():
            probe = _as(user, [candidate, "-c", "import ensurepip, venv"])
            if probe.returncode == 0:
                return candidate
    pytest.fail(f"no {version} that {user or 'this user'} may run with venv and ensurepip")


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(PYPI, timeout=5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def image_root() -> Iterator[tuple[Path, str | None]]:
    """A temp dir holding the built wheel, the locked wheels and a venv the unprivileged user
    installed; yields it and that user."""
    user = _unprivileged_user()
    with tempfile.TemporaryDirectory(prefix="corridor-image-") as name:
        root = Path(name)
        root.chmod(0o755)  # the unprivileged user reads the wheels and owns only the venv
        context = root / "context"
        for item in SOURCES:
            source = ROOT / item
            if source.is_dir():
                shutil.copytree(source, context / item,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
            else:
                context.mkdir(exist_ok=True)
                shutil.copy(source, context / item)
        wheels = root / "wheels"
        pip_root = [sys.executable, "-m", "pip"]
        built = _as(None, [*pip_root, "wheel", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(wheels), str(context)])  # fmt: skip
        assert built.returncode == 0, built.stdout + built.stderr
        build_lock = root / "build.lock"
        build_lock.write_text(_build_lock())
        # A copy the unprivileged user can read: CI's clone sits in a private (0700) directory.
        runtime_lock = root / "runtime.lock"
        shutil.copy(RUNTIME_LOCK, runtime_lock)
        for lock in (build_lock, RUNTIME_LOCK):
            fetched = _as(None, [sys.executable, "-m", "pip", "download", "--require-hashes",
                                 "--no-deps", "--dest", str(wheels), "-r", str(lock)])  # fmt: skip
            if fetched.returncode != 0:
                reason = "the locked wheels are neither in pip's cache nor reachable on PyPI"
                if _pypi_reachable():
                    pytest.fail(fetched.stdout + fetched.stderr)
                if under_ci():
                    pytest.fail(f"image contents cannot be checked under CI=true: {reason}")
                skip_loudly(reason)
        venv = root / VENV
        venv.parent.mkdir(parents=True)
        if user is not None:
            shutil.chown(venv.parent, user)
        base_python = _interpreter_for(user)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root),
               "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
        pip = [str(venv / "bin" / "pip")]
        offline = ["--no-index", "--find-links", str(wheels)]
        # The Dockerfile's builder steps, in its order, offline from the wheels fetched above.
        for argv in (
            [base_python, "-m", "venv", str(venv)],
            [*pip, "install", *offline, "--require-hashes", "--no-deps", "-r", str(build_lock)],
            [*pip, "install", *offline, "--require-hashes", "--no-deps", "--no-build-isolation",
             "-r", str(runtime_lock)],
            [*pip, "install", "--no-index", "--no-deps", *map(str, wheels.glob("corridor-*.whl"))],
            [*pip, "uninstall", "--yes", "setuptools", "wheel"],
            [*pip, "check"],
        ):  # fmt: skip
            step = _as(user, argv, env=env, cwd=root)
            assert step.returncode == 0, f"{argv[:3]}: {step.stdout}{step.stderr}"
        yield root, user


def _image_env(root: Path) -> dict[str, str]:
    """The final stage's ENV, with /opt/corridor under the temp dir."""
    env = {"PATH": f"{root / VENV / 'bin'}:/usr/bin:/bin", "HOME": str(root)}
    for word, args in final_stage(DOCKERFILE.read_text()):
        if word == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                if key != "PATH":
                    env[key] = value.replace("/var/lib/corridor", str(root))
    return env


def test_the_entrypoint_and_cmd_run_as_written(image_root: tuple[Path, str | None]) -> None:
    root, user = image_root
    stage = final_stage(DOCKERFILE.read_text())
    entrypoint = [exec_form(a) for w, a in stage if w == "ENTRYPOINT"][-1]
    cmd = [exec_form(a) for w, a in stage if w == "CMD"][-1]
    ran = _as(user, [*entrypoint, *cmd], env=_image_env(root), cwd=root)
    assert ran.returncode == 0, ran.stderr
    assert "Corridor: an event-sourced Lightning settlement engine" in ran.stdout
    assert shutil.which(entrypoint[0], path=str(root / VENV / "bin")) is not None


@pytest.mark.parametrize("command", DEPLOYED_COMMANDS, ids=" ".join)
def test_each_deployed_command_loads(
    image_root: tuple[Path, str | None], command: list[str]
) -> None:
    root, user = image_root
    ran = _as(user, ["corridor", *command, "--help"], env=_image_env(root), cwd=root)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("usage: corridor " + " ".join(command)), ran.stdout[:200]


IMPORT_ALL = """
import importlib, json, pkgutil, sys
failed = {}
for package in ("services", "schemas", "projections"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "python": sys.executable}))
"""


def test_every_runtime_module_imports(image_root: tuple[Path, str | None]) -> None:
    root, user = image_root
    ran = _as(user, ["python", "-c", IMPORT_ALL], env=_image_env(root), cwd=root)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout.splitlines()[-1])
    assert result["python"].startswith(str(root / VENV)), result["python"]
    unexpected = {
        name: why for name, why in result["failed"].items()
        if not any(name == p or name.startswith(p + ".") for p in NEEDS_AN_EXTRA)
    }  # fmt: skip
    assert not unexpected, json.dumps(unexpected, indent=1)
    # And the list stays true: each entry still needs its extra, or it leaves the list.
    stale = [p for p in NEEDS_AN_EXTRA
             if not any(n == p or n.startswith(p + ".") for n in result["failed"])]  # fmt: skip
    assert not stale, f"these import without an extra now; drop them from NEEDS_AN_EXTRA: {stale}"
