"""The lock files, pyproject.toml and the installed venv agree, and runtime code needs no extras.

`make install` installs requirements/dev.lock with hashes and nothing else; `make lock` rewrites
both lock files from the ranges in pyproject.toml. These tests fail when someone edits one side
and not the other, when the venv was not built from the lock, or when code that `pip install .`
ships imports a package only the simulator, the dev stack or the tests bring.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "corridor"
# Folders of `services` that only the simulator, the dev stack, the demo and the bench use; their
# imports may come from the extras. Everything else ships in `pip install .`.
EXTRAS_ONLY_PACKAGES = frozenset({"sim", "devstack", "demo", "bench"})
RUNTIME_ROOTS = ("services", "schemas", "projections")
FIRST_PARTY = frozenset(RUNTIME_ROOTS)

_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)"
    r"(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$"
)


@dataclass
class Pin:
    name: str
    version: Version
    marker: Marker | None
    via: list[str] = field(default_factory=list)

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> dict[str, Pin]:
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        match = _PIN.match(raw)
        if match:
            marker = match["marker"]
            current = Pin(
                name=canonicalize_name(match["name"]),
                version=Version(match["version"]),
                marker=Marker(marker) if marker else None,
            )
            pins[current.name] = current
        elif current is not None and line.startswith("#"):
            text = line.lstrip("#").strip()
            text = text.removeprefix("via").strip()
            if text:
                current.via.append(text)
    return pins


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _requirements(group: str | None) -> list[Requirement]:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    raw = project["dependencies"] if group is None else project["optional-dependencies"][group]
    reqs = [Requirement(r) for r in raw]
    return [r for r in reqs if canonicalize_name(r.name) != PROJECT]


def runtime_requirements() -> list[Requirement]:
    return _requirements(None)


def all_requirements() -> list[Requirement]:
    extras = pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    reqs = runtime_requirements()
    for group in extras:  # type: ignore[attr-defined]
        reqs.extend(_requirements(group))
    return reqs


def _direct(pins: dict[str, Pin]) -> set[str]:
    return {name for name, pin in pins.items() if any(v.startswith(PROJECT) for v in pin.via)}


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [("dev.lock", all_requirements), ("runtime.lock", runtime_requirements)],
)
def test_the_lock_pins_exactly_what_pyproject_asks_for(lock: str, wanted: object) -> None:
    pins = read_lock(ROOT / "requirements" / lock)
    reqs = wanted()  # type: ignore[operator]
    names = {canonicalize_name(r.name) for r in reqs}
    assert _direct(pins) == names, (
        f"pyproject.toml and requirements/{lock} disagree: run `make lock`"
    )
    for req in reqs:
        pin = pins[canonicalize_name(req.name)]
        assert req.specifier.contains(pin.version, prereleases=True), (
            f"{lock} pins {pin.name}=={pin.version}, outside pyproject's {req}: run `make lock`"
        )


def test_every_pin_carries_hashes() -> None:
    for lock in ("dev.lock", "runtime.lock"):
        text = (ROOT / "requirements" / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for block in blocks:
            if _PIN.match(block.splitlines()[0]):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"


def test_the_runtime_lock_carries_no_servers_simulator_or_test_tools() -> None:
    runtime = set(read_lock(ROOT / "requirements" / "runtime.lock"))
    extras_only = {
        canonicalize_name(r.name)
        for group in ("sim", "devstack", "dev")
        for r in _requirements(group)
    } - {canonicalize_name(r.name) for r in runtime_requirements()}
    # cryptography is also a runtime need of pyln-proto, so it may appear through that.
    assert runtime & extras_only <= {"cryptography", "bitstring"}, runtime & extras_only


def test_exactly_one_distribution_provides_coincurve() -> None:
    for lock in ("dev.lock", "runtime.lock"):
        pins = read_lock(ROOT / "requirements" / lock)
        providers = {name for name in pins if name.startswith("coincurve")}
        assert providers == {"coincurve"}, f"{lock}: {providers}"
    installed = importlib.metadata.packages_distributions().get("coincurve", [])
    assert sorted(set(installed)) == ["coincurve"], installed


def test_the_venv_was_installed_from_the_lock() -> None:
    pins = read_lock(ROOT / "requirements" / "dev.lock")
    wrong = []
    for pin in pins.values():
        if not pin.applies():
            continue
        try:
            have = Version(importlib.metadata.version(pin.name))
        except importlib.metadata.PackageNotFoundError:
            wrong.append(f"{pin.name} missing (lock: {pin.version})")
            continue
        if have != pin.version:
            wrong.append(f"{pin.name} {have} (lock: {pin.version})")
    assert not wrong, "the venv differs from requirements/dev.lock (`make install`): " + ", ".join(
        wrong
    )


def test_pip_check_is_clean() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _runtime_modules() -> list[Path]:
    files: list[Path] = []
    for root in RUNTIME_ROOTS:
        for path in sorted((ROOT / root).rglob("*.py")):
            rel = path.relative_to(ROOT / root).parts
            if root == "services" and rel[0] in EXTRAS_ONLY_PACKAGES:
                continue
            files.append(path)
    return files


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _closure(pins: dict[str, Pin]) -> set[str]:
    return {name for name, pin in pins.items() if pin.applies()}


def test_code_that_pip_install_ships_imports_only_runtime_dependencies() -> None:
    allowed = _closure(read_lock(ROOT / "requirements" / "runtime.lock"))
    providers = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    offenders = []
    for path in _runtime_modules():
        for name in sorted(_top_level_imports(path) - stdlib - FIRST_PARTY):
            dists = {canonicalize_name(d) for d in providers.get(name, [name])}
            if not dists & allowed:
                offenders.append(f"{path.relative_to(ROOT)} imports {name} ({', '.join(dists)})")
    assert not offenders, "runtime code imports an extra-only package:\n" + "\n".join(offenders)
