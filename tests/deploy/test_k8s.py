"""The Kubernetes manifests in deploy/k8s (ADR 0183): each resource validates strictly against
the Kubernetes schemas kubernetes-validate bundles; their `corridor` commands parse; the
settings they name exist; probes ask paths the process serves; every pod runs as the image's
non-root user on a read-only root filesystem; executors are pinned to their region; what a
pod mounts exists; and a NetworkPolicy denies by default."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.artefacts import (
    DOCKERFILE,
    K8S_DIR,
    http_api_paths,
    metrics_probe_status,
    parse_complaint,
    unknown_settings_env,
    unknown_settings_keys,
)

MANIFESTS = sorted(K8S_DIR.glob("*.yaml"))
# Custom resources and chart values: no bundled schema; checked for shape only.
OPERATOR_FILES = {
    "cnpg-cluster.yaml": ("postgresql.cnpg.io/v1", "Cluster"),
    "nats-values.yaml": None,
}
RUN_SH = "/etc/corridor/config/run.sh"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def workloads() -> list[dict[str, Any]]:
    return [d for _, d in documents() if d["kind"] in {"Deployment", "StatefulSet"}]


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (w["metadata"]["name"], c)
        for w in workloads()
        for c in w["spec"]["template"]["spec"]["containers"]
    ]


def corridor_argv(container: dict[str, Any]) -> list[str]:
    command = container.get("command")
    assert command in (None, ["/bin/sh", RUN_SH]), container["name"]
    return list(container["args"])


@pytest.mark.parametrize("name_doc", documents(), ids=lambda d: f"{d[0]}:{d[1]['kind']}/"
                         f"{d[1]['metadata']['name']}")  # fmt: skip
def test_each_resource_validates_strictly(name_doc: tuple[str, dict[str, Any]]) -> None:
    import kubernetes_validate

    _, doc = name_doc
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_manifests_cover_every_corridor_process() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    for needed in ("engine", "projector", "http"):
        assert ("Deployment", needed) in kinds
    executors = [w for w in workloads() if w["metadata"]["name"].startswith("executor-")]
    assert len(executors) == 6, [w["metadata"]["name"] for w in executors]
    assert {"Namespace", "ConfigMap", "Secret", "PodDisruptionBudget", "NetworkPolicy",
            "Service"} <= {k for k, _ in kinds}  # fmt: skip


def test_every_corridor_command_parses() -> None:
    failures = []
    for workload, container in containers():
        argv = corridor_argv(container)
        complaint = parse_complaint(argv)
        if complaint is not None:
            failures.append(f"{workload}: corridor {' '.join(argv)}\n    {complaint}")
    assert not failures, "\n".join(failures)


def test_every_setting_named_exists() -> None:
    names = {e["name"] for _, c in containers() for e in c.get("env", [])}
    assert not unknown_settings_env(names)
    config = next(d for _, d in documents() if d["metadata"]["name"] == "corridor-config")
    assert not unknown_settings_keys(tomllib.loads(config["data"]["corridor.toml"]))


def test_probes_ask_paths_the_process_serves() -> None:
    for workload, container in containers():
        argv = corridor_argv(container)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{workload} {probe}"
            if argv[0] == "http":
                assert get["path"] in http_api_paths()
                assert str(ports[get["port"]]) == argv[argv.index("--http-port") + 1]
            else:
                assert metrics_probe_status(get["path"]) == "200 OK"
                assert ports[get["port"]] == 9100, f"{workload}: metrics_port in corridor.toml"


def test_every_pod_runs_as_the_image_user_read_only_without_privileges() -> None:
    uid_arg = re.search(r"ARG CORRIDOR_UID=(\d+)", DOCKERFILE.read_text())
    assert uid_arg is not None
    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        pod = spec["securityContext"]
        name = workload["metadata"]["name"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == int(uid_arg.group(1)), name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


def test_executors_are_pinned_to_the_region_they_pay_for() -> None:
    for workload in workloads():
        name = workload["metadata"]["name"]
        if not name.startswith("executor-"):
            continue
        spec = workload["spec"]["template"]["spec"]
        argv = spec["containers"][0]["args"]
        region, node = argv[argv.index("--region") + 1], argv[argv.index("--node-name") + 1]
        assert name == f"executor-{node}"
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        expressions = [e for t in terms["nodeSelectorTerms"] for e in t["matchExpressions"]]
        assert expressions == [
            {"key": "topology.kubernetes.io/region", "operator": "In", "values": [region]}
        ], name
        seeds = next(v for v in spec["volumes"] if v["name"] == "seed")["secret"]["items"]
        assert seeds == [{"key": f"executor-{node}.nk", "path": "executor.nk"}], name


def test_what_a_pod_mounts_exists_in_the_manifests() -> None:
    data: dict[tuple[str, str], set[str]] = {}
    for _, doc in documents():
        if doc["kind"] in {"Secret", "ConfigMap"}:
            keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            data[(doc["kind"], doc["metadata"]["name"])] = keys

    def check(kind: str, name: str, keys: list[str]) -> None:
        assert (kind, name) in data, f"{kind} {name} is not defined"
        assert set(keys) <= data[(kind, name)], (
            f"{kind} {name} lacks {set(keys) - data[(kind, name)]}"
        )

    for workload in workloads():
        spec = workload["spec"]["template"]["spec"]
        for volume in spec["volumes"]:
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                if "secret" in source:
                    s = source["secret"]
                    check(
                        "Secret",
                        s.get("secretName") or s["name"],
                        [i["key"] for i in s.get("items", [])],
                    )
                if "configMap" in source:
                    c = source["configMap"]
                    check("ConfigMap", c["name"], [i["key"] for i in c.get("items", [])])
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check("Secret", ref["name"], [ref["key"]])


def test_no_real_secret_is_committed() -> None:
    for _, doc in documents():
        if doc["kind"] == "Secret":
            assert "data" not in doc, doc["metadata"]["name"]
            assert set(doc["stringData"].values()) == {"REPLACE-ME"}, doc["metadata"]["name"]


def test_network_policies_deny_by_default() -> None:
    policies = [d for _, d in documents() if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
            and "egress" not in p["spec"]]  # fmt: skip
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_the_operator_pointers_parse() -> None:
    for name, kind in OPERATOR_FILES.items():
        doc = yaml.safe_load((K8S_DIR / "operators" / name).read_text())
        if kind is not None:
            assert (doc["apiVersion"], doc["kind"]) == kind, name
    values = yaml.safe_load((K8S_DIR / "operators" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"]["replicas"] == 3
    assert values["config"]["jetstream"]["merge"]["sync_interval"] == "always"
    assert sorted(p.name for p in (K8S_DIR / "operators").iterdir()) == sorted(OPERATOR_FILES)


def test_the_manifests_and_the_image_agree_on_the_run_script(tmp_path: Path) -> None:
    """deploy/k8s carries compose/production/run.sh verbatim (one script, two places)."""
    config = next(d for _, d in documents() if d["metadata"]["name"] == "corridor-config")
    compose_run = (K8S_DIR.parents[1] / "compose" / "production" / "run.sh").read_text()

    def body(text: str) -> list[str]:
        return [
            line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]

    assert body(config["data"]["run.sh"]) == body(compose_run)


def test_the_engine_key_reaches_the_engine_0600() -> None:
    """load_signer refuses a group-readable key, and Secret volumes under fsGroup are: an init
    container copies it, mode 0600, to the state volume the engine reads keys from."""
    engine = next(w for w in workloads() if w["metadata"]["name"] == "engine")
    spec = engine["spec"]["template"]["spec"]
    main = spec["containers"][0]
    state = next(m for m in main["volumeMounts"] if m["name"] == "state")["mountPath"]
    assert main["args"][main["args"].index("--state-dir") + 1] == state
    assert not any(m["mountPath"].startswith(state + "/keys") for m in main["volumeMounts"])
    (init,) = spec["initContainers"]
    script = " ".join(init["args"])
    assert f"install -m 0600 /etc/corridor/signing/engine-signing.key {state}/keys/" in script
    assert init["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_engine_checks_callers_against_a_mounted_registry() -> None:
    # On given servers an engine without CORRIDOR_CREDENTIALS_FILE refuses to start (ADR 0061).
    engines = [(w, c) for w, c in containers() if corridor_argv(c)[:1] == ["up"]]
    assert engines
    for workload, container in engines:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        registry = env.get("CORRIDOR_CREDENTIALS_FILE")
        assert registry, f"{workload} names no credential registry"
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert any(registry.startswith(m.rstrip("/") + "/") for m in mounts), workload
