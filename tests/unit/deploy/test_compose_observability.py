"""deploy/docker-compose.yml's `observability` profile, checked offline (no Docker here): Prometheus
scrapes every OpenMonetize process on the port deploy/.env.example gives it, and Grafana loads
deploy/grafana/openmonetize.json from Prometheus. The profile leaves a plain `up` unchanged."""

from __future__ import annotations

from pathlib import PurePosixPath

import yaml

from tests.unit.deploy.test_manifests import DEPLOY, PORT_SETTING, compose, env_example


def _bind_mounts(service: dict) -> dict[str, str]:
    """Container path -> the host path (relative to deploy/) of each bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container, *_ = volume.split(":")
        if host.startswith("."):
            mounts[container] = host
    return mounts


def _scrape_targets() -> dict[str, tuple[str, int]]:
    """Job -> (compose service, port) of each target in the Prometheus config."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets[job["job_name"]] = (host, int(port))
        for dns in job.get("dns_sd_configs", []):
            (name,) = dns["names"]
            targets[job["job_name"]] = (name, dns["port"])
    return targets


def test_the_profile_holds_prometheus_and_grafana_only():
    services = compose()["services"]
    in_profile = {name for name, service in services.items() if "observability" in service.get("profiles", [])}
    assert in_profile == {"prometheus", "grafana"}
    assert all("profiles" not in service for name, service in services.items() if name not in in_profile)


def test_prometheus_scrapes_every_process_on_its_metrics_port():
    services = compose()["services"]
    processes = {name for name, service in services.items() if service.get("command", [None])[0] == "run"}
    assert processes == set(PORT_SETTING), "a process was added or removed: scrape it and name its port setting"
    targets = _scrape_targets()
    assert {service for service, _ in targets.values()} == processes
    env = env_example()
    for job, (service, port) in targets.items():
        assert service in services, f"job {job} scrapes {service}, which the compose file does not run"
        assert port == int(env[PORT_SETTING[service]]), f"job {job}: {service} serves /metrics on its {PORT_SETTING[service]}"
    config = _bind_mounts(services["prometheus"])
    assert (DEPLOY / config["/etc/prometheus/prometheus.yml"]).resolve() == DEPLOY / "prometheus" / "prometheus.yml"


def test_grafana_loads_the_dashboard_from_prometheus():
    services = compose()["services"]
    mounts = _bind_mounts(services["grafana"])
    provisioning = DEPLOY / mounts["/etc/grafana/provisioning"]
    (dashboard_path,) = [path for path, host in mounts.items() if host == "./grafana/openmonetize.json"]
    providers = yaml.safe_load((provisioning / "dashboards" / "openmonetize.yml").read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == [str(PurePosixPath(dashboard_path).parent)]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]  # the dashboard's ${datasource} picks it
    host, port = source["url"].removeprefix("http://").split(":")
    assert host == "prometheus" and f"{port}:{port}" in services["prometheus"]["ports"]
