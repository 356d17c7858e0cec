"""Every deployment runs a reconciler beside each executor (ADR 0189): the same node, region and
node files; the node's own reconciler credential; the read-only auditor database role, never
the engine's (ADR 0163). Compose (both files) and Kubernetes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.artefacts import COMPOSE_DIR, COMPOSE_FILES
from tests.deploy.test_compose import corridor_argv, services
from tests.deploy.test_k8s import documents, workloads


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _target(argv: list[str]) -> tuple[str, str, str]:
    """(node name, region, node URI) of an executor's or reconciler's command."""
    return _flag(argv, "--node-name"), _flag(argv, "--region"), _flag(argv, "--node")


def _is_reconciler(argv: list[str]) -> bool:
    return argv[:2] == ["recon", "run"]


def _is_executor(argv: list[str]) -> bool:
    return argv[:1] == ["executor"]


def _every_ok(argv: list[str]) -> bool:
    return "--every" in argv and float(_flag(argv, "--every")) > 0


# --- compose -----------------------------------------------------------------------------


def _compose_roles(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Executors and reconcilers of ``path``, each by node name: (argv, service)."""
    executors, reconcilers = {}, {}
    for service in services(path).values():
        argv = corridor_argv(service) or []
        if _is_executor(argv):
            executors[_flag(argv, "--node-name")] = (argv, service)
        elif _is_reconciler(argv):
            reconcilers[_flag(argv, "--node-name")] = (argv, service)
    return executors, reconcilers


def _node_mounts(service: dict[str, Any]) -> set[str]:
    """The volumes a service mounts under /nodes (a CLN socket, an LND node's files)."""
    return {str(v) for v in service.get("volumes", []) if ":/nodes/" in str(v)}


def _node_secrets(argv: list[str]) -> set[str]:
    return set(re.findall(r"/run/secrets/(\w+)", _flag(argv, "--node")))


def _secret_file(path: Path, container_path: str) -> str:
    """The host file behind ``/run/secrets/NAME`` in ``path``'s top-level secrets."""
    name = container_path.removeprefix("/run/secrets/")
    secrets: dict[str, Any] = yaml.safe_load(path.read_text())["secrets"]
    return Path(secrets[name]["file"]).name


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_runs_a_reconciler_for_every_executor_node(path: Path) -> None:
    executors, reconcilers = _compose_roles(path)
    assert len(executors) == 6, sorted(executors)
    assert sorted(reconcilers) == sorted(executors)
    for node, (argv, service) in reconcilers.items():
        executor_argv, executor = executors[node]
        assert _target(argv) == _target(executor_argv), node
        assert _every_ok(argv), f"{node}: a reconciler runs one pass and exits without --every"
        assert _node_mounts(service) == _node_mounts(executor), node
        assert _node_secrets(argv) <= set(service.get("secrets", [])), node


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_reconcilers_use_their_node_credential_and_the_auditor_role(path: Path) -> None:
    _, reconcilers = _compose_roles(path)
    engine_env = services(path)["engine"]["environment"]
    assert reconcilers
    for node, (_, service) in reconcilers.items():
        env = service["environment"]
        creds = env["CORRIDOR_CREDS"]
        seed = _secret_file(path, creds) if creds.startswith("/run/secrets/") else Path(creds).name
        assert seed == f"reconciler-{node}.nk", node
        if "DATABASE_URL" in env:  # regtest: the URL itself
            assert "DATABASE_URL_FILE" not in env, node
            assert urlsplit(env["DATABASE_URL"]).username == "corridor_auditor", node
            assert env["DATABASE_URL"] != engine_env.get("DATABASE_URL"), node
        else:  # production: run.sh reads it from the secret file
            url_file = env["DATABASE_URL_FILE"]
            assert url_file != engine_env["DATABASE_URL_FILE"], node
            assert url_file.removeprefix("/run/secrets/") in service["secrets"], node
            assert _secret_file(path, url_file) == "database-auditor.url", node


def test_the_regtest_auditor_url_carries_the_password_postgres_sets() -> None:
    sql = (COMPOSE_DIR / "regtest" / "postgres-init.sql").read_text()
    password = re.search(r"CREATE ROLE corridor_auditor\b.*PASSWORD '([^']+)'", sql)
    assert password is not None, "the auditor role has no password: it cannot log in"
    _, reconcilers = _compose_roles(COMPOSE_DIR / "regtest.yaml")
    for _, service in reconcilers.values():
        assert urlsplit(service["environment"]["DATABASE_URL"]).password == password.group(1)


# --- Kubernetes --------------------------------------------------------------------------


def _k8s_roles() -> tuple[dict[str, Any], dict[str, Any]]:
    executors, reconcilers = {}, {}
    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        argv = list(spec["containers"][0]["args"])
        if _is_executor(argv):
            executors[_flag(argv, "--node-name")] = (argv, workload)
        elif _is_reconciler(argv):
            reconcilers[_flag(argv, "--node-name")] = (argv, workload)
    return executors, reconcilers


def _node_sources(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The node's files a pod mounts: corridor-nodes keys but keysend's, and the PVCs."""
    keys, claims = set(), set()
    for volume in spec["volumes"]:
        secret = volume.get("secret", {})
        if secret.get("secretName") == "corridor-nodes":
            keys |= {i["key"] for i in secret["items"] if not i["key"].startswith("keysend-")}
        if "persistentVolumeClaim" in volume:
            claims.add(volume["persistentVolumeClaim"]["claimName"])
    return keys, claims


def test_k8s_runs_a_reconciler_for_every_executor_node_pinned_like_it() -> None:
    executors, reconcilers = _k8s_roles()
    assert len(executors) == 6, sorted(executors)
    assert sorted(reconcilers) == sorted(executors)
    for node, (argv, workload) in reconcilers.items():
        executor_argv, executor = executors[node]
        assert workload["metadata"]["name"] == f"reconciler-{node}"
        assert workload["spec"]["replicas"] == 1, node
        assert _target(argv) == _target(executor_argv), node
        assert _every_ok(argv), node
        spec, executor_spec = (
            workload["spec"]["template"]["spec"],
            executor["spec"]["template"]["spec"],
        )
        assert spec["affinity"] == executor_spec["affinity"], (
            f"{node}: not pinned like its executor"
        )
        assert _node_sources(spec) == _node_sources(executor_spec), node


def test_k8s_reconcilers_use_their_node_credential_and_the_auditor_url() -> None:
    _, reconcilers = _k8s_roles()
    assert reconcilers
    for node, (_, workload) in reconcilers.items():
        spec = workload["spec"]["template"]["spec"]
        container = spec["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        seed = next(v for v in spec["volumes"] if v["name"] == "seed")
        (item,) = seed["secret"]["items"]
        assert item["key"] == f"reconciler-{node}.nk", node
        mount = next(m for m in container["volumeMounts"] if m["name"] == "seed")
        assert env["CORRIDOR_CREDS"]["value"] == f"{mount['mountPath']}/{item['path']}", node
        ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("corridor-database", "auditor-url"), node


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _egress_ports(labels: dict[str, str]) -> set[tuple[str, int]]:
    """(namespace, port) pairs the policies in namespace corridor let a pod reach."""
    allowed = set()
    for _, doc in documents():
        if doc["kind"] != "NetworkPolicy" or not _selects(doc["spec"]["podSelector"], labels):
            continue
        for rule in doc["spec"].get("egress", []):
            for peer in rule.get("to", []):
                namespace = (peer.get("namespaceSelector", {}).get("matchLabels", {})
                             .get("kubernetes.io/metadata.name", "*"))  # fmt: skip
                allowed |= {(namespace, p["port"]) for p in rule.get("ports", [])}
    return allowed


def test_k8s_network_policies_let_a_reconciler_reach_nats_postgres_and_its_node() -> None:
    _, reconcilers = _k8s_roles()
    assert reconcilers
    for node, (argv, workload) in reconcilers.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        allowed = _egress_ports(labels)
        assert {("nats", 4222), ("cnpg", 5432)} <= allowed, f"{node}: {allowed}"
        if _flag(argv, "--node").startswith("lnd://"):
            assert ("lightning", 10009) in allowed, f"{node}: {allowed}"
