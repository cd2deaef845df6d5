"""The deployment files, checked offline: deploy/k8s/ against the Kubernetes JSON schemas that
kubernetes-validate bundles, deploy/docker-compose.yml against the Compose Specification's schema
(tests/unit/deploy/schemas/), deploy/Dockerfile by its instructions; and all of them against the
code: settings that exist, `openmonetize` commands that exist, probes on the port and path each
process really serves, pinned images."""

from __future__ import annotations

import json
import re
import shlex
import socket
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from openmonetize.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
APP_IMAGE = f"openmonetize:{VERSION}"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}

# Where each long-running process listens (the setting naming its port) and what its probes need.
PORT_SETTING = {"api": "API_PORT", "proxy": "PROXY_PORT", "worker": "WORKER_WEB_PORT",
                "sink-ledger": "LEDGER_SINK_METRICS_PORT", "sink-clickhouse": "CLICKHOUSE_SINK_METRICS_PORT"}
HOST_SETTING = {"api": "API_HOST", "proxy": "PROXY_HOST", "worker": "METRICS_HOST",
                "sink-ledger": "METRICS_HOST", "sink-clickhouse": "METRICS_HOST"}
# The readiness path of each HTTP service: what says it can take traffic.
READY_PATH = {"api": "/ready", "proxy": "/ready"}


def served_paths() -> dict[str, set[str]]:
    """The paths each process answers, from the code itself."""
    from api.app import create_app as api_app
    from api.proxy.app import create_app as proxy_app

    settings = Settings(_env_file=None)
    worker_source = (ROOT / "stream_processors" / "app.py").read_text()
    return {
        "api": {route.path for route in api_app(settings).routes if hasattr(route, "path")},
        "proxy": {route.path for route in proxy_app(settings).routes},
        "worker": set(re.findall(r'@app\.page\("([^"]+)"\)', worker_source)),
        # prometheus_client's start_http_server answers /metrics (and every other path)
        "sink-ledger": {"/metrics"},
        "sink-clickhouse": {"/metrics"},
    }


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Everything here must work without a network: a connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a deployment check tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- reading the files ---------------------------------------------------------------------------
def k8s_documents() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


RESOURCES = [(name, doc) for name, doc in k8s_documents() if doc["kind"] != "Kustomization"]
WORKLOADS = [doc for _, doc in RESOURCES if doc["kind"] in ("Deployment", "StatefulSet", "Job")]


def kind(name: str) -> list[dict]:
    return [doc for _, doc in RESOURCES if doc["kind"] == name]


def configmap() -> dict[str, str]:
    [settings] = kind("ConfigMap")
    return settings["data"]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
            pending = ""
    return instructions


def app_services() -> dict[str, dict]:
    """The compose services that run our image."""
    return {name: svc for name, svc in compose()["services"].items() if svc.get("image") == APP_IMAGE}


def service_of(container: dict) -> str | None:
    args = container.get("args", [])
    return args[1] if args[:1] == ["run"] else None


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


# --- schemas -------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", [doc for _, doc in RESOURCES],
                         ids=[f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in RESOURCES])
def test_kubernetes_resource_matches_its_schema(resource):
    # strict: an unknown field (a misspelt probe, say) fails instead of being ignored
    assert kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_the_kubernetes_validator_catches_a_misspelt_field():
    [worker] = kind("StatefulSet")
    broken = json.loads(json.dumps(worker))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_every_manifest_in_the_namespace():
    [(_, kustomization)] = [(n, d) for n, d in k8s_documents() if d["kind"] == "Kustomization"]
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    [namespace] = kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert all(doc["metadata"].get("namespace") == namespace["metadata"]["name"] for _, doc in RESOURCES if doc is not namespace)
    assert kustomization["images"] == [{"name": "openmonetize", "newName": "openmonetize", "newTag": VERSION}]


def test_compose_file_matches_the_compose_specification():
    schema = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []
    broken = compose()
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_compose_dependencies_name_services_that_exist():
    services = compose()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services) - {name}, name


# --- settings ------------------------------------------------------------------------------------
def test_every_setting_the_deployments_set_is_a_real_setting():
    given = {"deploy/.env.example": set(env_example()), "deploy/k8s/configmap.yaml": set(configmap())}
    for secret in kind("Secret"):
        given[f"secret {secret['metadata']['name']}"] = set(secret["stringData"])
    for workload in WORKLOADS:
        for container in pod_spec(workload)["containers"]:
            given[f"{workload['metadata']['name']} env"] = {e["name"] for e in container.get("env", [])}
    for name, service in app_services().items():
        given[f"compose {name} environment"] = set(service.get("environment", {}))
    given["deploy/Dockerfile ENV"] = {  # less the variables of Python, pip and the shell
        key for instruction, rest in dockerfile() if instruction == "ENV"
        for key in re.findall(r"(\w+)=", rest) if key != "PATH" and not key.startswith(("PYTHON", "PIP_"))}
    unknown = {where: sorted(names - SETTING_NAMES) for where, names in given.items() if names - SETTING_NAMES}
    assert unknown == {}


def test_workloads_read_the_settings_configmap_and_secret():
    [settings], secrets = kind("ConfigMap"), kind("Secret")
    for workload in WORKLOADS:
        for container in pod_spec(workload)["containers"]:
            sources = {(key, ref["name"]) for source in container["envFrom"] for key, ref in source.items()}
            assert sources == {("configMapRef", settings["metadata"]["name"]),
                               ("secretRef", secrets[0]["metadata"]["name"])}, workload["metadata"]["name"]


def test_the_secret_holds_placeholders_and_nothing_else_holds_a_password():
    for secret in kind("Secret"):
        assert all("REPLACE_ME" in value for value in secret["stringData"].values())
    assert not any(re.search(r"://[^/@\s]+:[^/@\s]+@", value) for value in configmap().values())
    assert not SETTING_NAMES & {"DATABASE_URL", "CLICKHOUSE_URL"} & set(configmap())


# --- commands ------------------------------------------------------------------------------------
def cli_resolves(argv: list[str]) -> bool:
    """Whether `openmonetize ARGV` names a command and only options it has."""
    import click

    from openmonetize.cli import main

    command, words = main, list(argv)
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        command = command.commands.get(words.pop(0))
        if command is None:
            return False
    if isinstance(command, click.Group):
        return False
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    return all(word in options for word in words if word.startswith("-"))


def setup_steps(shell: str) -> list[list[str]]:
    steps = [shlex.split(step) for step in shell.split("&&")]
    assert all(step[0] == "openmonetize" for step in steps), shell
    return [step[1:] for step in steps]


def test_every_process_the_deployments_run_is_an_openmonetize_command():
    runs = [container["args"] for workload in WORKLOADS if workload["kind"] != "Job"
            for container in pod_spec(workload)["containers"]]
    runs += [service["command"] for name, service in app_services().items() if name != "migrate"]
    assert {tuple(argv) for argv in runs} == {("run", service) for service in PORT_SETTING}
    assert all(cli_resolves(argv) for argv in runs)
    assert not cli_resolves(["run", "no-such-service"]) and not cli_resolves(["topics", "create", "--nope"])


def test_the_setup_job_is_the_same_in_compose_and_kubernetes_and_uses_real_commands():
    [job] = kind("Job")
    [container] = pod_spec(job)["containers"]
    assert container["command"] == ["sh", "-c"] == compose()["services"]["migrate"]["entrypoint"]
    assert container["args"] == compose()["services"]["migrate"]["command"]
    steps = setup_steps(container["args"][0])
    assert [step[0] for step in steps] == ["topics", "migrate", "admin", "catalog"]
    assert all(cli_resolves(step) for step in steps), steps
    # every other app service waits for it
    for name, service in app_services().items():
        if name != "migrate":
            assert service["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}, name


# --- probes and ports ----------------------------------------------------------------------------
def test_kubernetes_probes_hit_the_port_and_paths_each_process_serves():
    paths, settings = served_paths(), configmap()
    for workload in WORKLOADS:
        for container in pod_spec(workload)["containers"]:
            service = service_of(container)
            if service is None:
                continue
            ports = {port["name"]: port["containerPort"] for port in container["ports"]}
            assert list(ports.values()) == [int(settings[PORT_SETTING[service]])], service
            assert settings[HOST_SETTING[service]] == "0.0.0.0", service  # reachable from the kubelet
            probes = {key: container[key]["httpGet"] for key in ("startupProbe", "livenessProbe", "readinessProbe")
                      if key in container}
            assert {"livenessProbe", "readinessProbe"} <= probes.keys(), service
            for key, probe in probes.items():
                assert probe["port"] in ports, (service, key)
                assert probe["path"] in paths[service], (service, key, probe["path"])
            if service in READY_PATH:
                assert probes["readinessProbe"]["path"] == READY_PATH[service]
                assert probes["livenessProbe"]["path"] == "/health"
            annotations = workload["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == settings[PORT_SETTING[service]]
            assert annotations["prometheus.io/path"] in paths[service]


def test_services_hpas_and_budgets_point_at_real_pods():
    pods = {w["metadata"]["name"]: w for w in WORKLOADS}
    for service in kind("Service"):
        [target] = [w for w in WORKLOADS if w["spec"]["template"]["metadata"]["labels"].items()
                    >= service["spec"]["selector"].items()]
        port_names = {p["name"] for c in pod_spec(target)["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names, service["metadata"]["name"]
    scaled = {hpa["spec"]["scaleTargetRef"]["name"] for hpa in kind("HorizontalPodAutoscaler")}
    assert scaled == {"api", "proxy"} and all(pods[name]["kind"] == "Deployment" for name in scaled)
    for budget in kind("PodDisruptionBudget"):
        matched = [w for w in WORKLOADS if w["spec"]["template"]["metadata"]["labels"].items()
                   >= budget["spec"]["selector"]["matchLabels"].items()]
        assert [w["kind"] for w in matched] == ["StatefulSet"]


def test_every_container_has_requests_and_limits_and_runs_unprivileged():
    for workload in WORKLOADS:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_workers_keep_their_state_and_divide_the_partitions():
    [worker] = kind("StatefulSet")
    partitions = int(configmap()["KAFKA_PARTITIONS"])
    assert 1 <= worker["spec"]["replicas"] <= partitions and partitions % worker["spec"]["replicas"] == 0
    [claim] = worker["spec"]["volumeClaimTemplates"]
    [container] = pod_spec(worker)["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == configmap()["STACK_DIR"]  # the worker's RocksDB lives there
    [pod_budget] = kind("PodDisruptionBudget")
    assert pod_budget["spec"]["maxUnavailable"] == 1


def test_compose_healthchecks_hit_the_port_and_path_each_process_serves():
    paths, settings = served_paths(), env_example()
    for name, service in app_services().items():
        if name == "migrate":
            continue
        test = " ".join(service["healthcheck"]["test"])
        [(port, path)] = re.findall(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", test)
        assert port == settings[PORT_SETTING[name]], name
        assert path in paths[name], name
        assert path == READY_PATH.get(name, path), name
        published = [p.split(":")[-1] for p in service.get("ports", [])]
        assert all(p == port for p in published), name


def test_the_dockerfile_listens_everywhere_on_the_ports_of_the_example_settings():
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(rest for ins, rest in dockerfile() if ins == "ENV")))
    assert {env[HOST_SETTING[s]] for s in PORT_SETTING} == {"0.0.0.0"}
    [exposed] = [rest.split() for ins, rest in dockerfile() if ins == "EXPOSE"]
    assert sorted(exposed) == sorted(env_example()[PORT_SETTING[s]] for s in PORT_SETTING)
    assert env["STACK_DIR"] == configmap()["STACK_DIR"]


# --- images --------------------------------------------------------------------------------------
PINNED = re.compile(r"^[\w./-]+:v?\d+(\.\d+)+([-.][\w.]+)?$")  # v: Prometheus tags v3.5.0


def test_every_image_is_pinned_and_ours_is_this_version():
    images = {svc["image"] for svc in compose()["services"].values()}
    images |= {c["image"] for w in WORKLOADS for c in pod_spec(w)["containers"]}
    assert all(PINNED.match(image) for image in images), sorted(images)
    assert {c["image"] for w in WORKLOADS for c in pod_spec(w)["containers"]} == {APP_IMAGE}
    assert app_services().keys() == {"migrate", *PORT_SETTING}


def test_the_dockerfile_builds_a_pinned_non_root_image_of_every_package():
    instructions = dockerfile()
    [base] = [rest for ins, rest in instructions if ins == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+", base)
    stages = [rest for ins, rest in instructions if ins == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # two stages, the same pinned base
    [user] = [rest for ins, rest in instructions if ins == "USER"]
    assert not user.startswith(("0", "root"))
    assert ("ENTRYPOINT", '["openmonetize"]') in instructions
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {rest.split()[0] for ins, rest in instructions if ins == "COPY" and not rest.startswith("--from")}
    assert {p.rstrip("*") for p in packages} <= copied
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert not {p.rstrip("*") for p in packages} & set(ignored)
