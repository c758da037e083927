"""docker/compose.yaml without a Docker engine: the files it mounts exist, its pieces
point at each other (nginx at the nodes, Prometheus at their admin port, Grafana at
Prometheus and the dashboard), the nodes' configuration loads with the server's own
loader, and a node's stop grace period covers its drain."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config import load_config

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = DOCKER / "compose.yaml"
NODES = ("voicebot-1", "voicebot-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts.append((DOCKER / source, target))
    return mounts


def _duration_s(text: str) -> float:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, f"stop_grace_period {text!r} is not in seconds"
    return float(match.group(1))


def test_the_topology_of_the_scale_test(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*NODES, "nginx", "prometheus", "grafana", "locust-master",
                             "locust-worker"}
    for name, service in services.items():
        for source, _ in _mounts(service):
            assert source.exists(), f"{name} mounts {source}, which is not in the repository"
        build = service.get("build")
        if build is not None:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()


def test_the_nodes_config_loads_and_drains_within_the_grace_period(
        compose: dict[str, Any]) -> None:
    for name in NODES:
        node = compose["services"][name]
        [config_file] = [s for s, t in _mounts(node) if t == "/etc/voicebot/voicebot.yaml"]
        env = {k: str(v) for k, v in node["environment"].items()}
        config = load_config(config_file, env=env)
        assert config.admin_port == 9090 and config.admin_host == "0.0.0.0"
        assert _duration_s(node["stop_grace_period"]) > config.drain_timeout_s
        assert node["cpus"] >= 1
        assert not config.pull_models  # the models are in the image


def test_nginx_sends_calls_to_both_nodes(compose: dict[str, Any]) -> None:
    mounts = dict((t, s) for s, t in _mounts(compose["services"]["nginx"]))
    upstreams = mounts["/etc/nginx/voicebot-upstreams.conf"].read_text(encoding="utf-8")
    servers = re.findall(r"^\s*server\s+([\w.-]+):(\d+)(.*);", upstreams, re.MULTILINE)
    # Each node twice: set aside for a while after a failure, and a backup never set aside.
    assert sorted((h, port) for h, port, opts in servers if "backup" not in opts) == [
        (n, "8765") for n in NODES]
    assert sorted((h, port) for h, port, opts in servers if "backup" in opts) == [
        (n, "8765") for n in NODES]
    main = mounts["/etc/nginx/nginx.conf"].read_text(encoding="utf-8")
    assert "include voicebot.conf;" in main
    assert compose["services"]["nginx"]["ports"] == ["8765:8765"]


def test_prometheus_scrapes_both_admin_ports_with_the_rules(compose: dict[str, Any]) -> None:
    mounts = dict((t, s) for s, t in _mounts(compose["services"]["prometheus"]))
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "voicebot"]
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert sorted(targets) == [f"{n}:9090" for n in NODES]
    assert set(config["rule_files"]) <= set(mounts)
    rules = yaml.safe_load(mounts["/etc/prometheus/rules/alerts.yml"].read_text())
    assert rules["groups"], "the alert rules file has no groups"


def test_grafana_gets_the_datasource_and_the_dashboard(compose: dict[str, Any]) -> None:
    mounts = dict((t, s) for s, t in _mounts(compose["services"]["grafana"]))
    provisioning = mounts["/etc/grafana/provisioning"]
    [source] = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load(
        (provisioning / "dashboards" / "voicebot.yaml").read_text())["providers"]
    dashboards = mounts[provider["options"]["path"]]
    loaded = [json.loads(p.read_text()) for p in dashboards.glob("*.json")]
    assert loaded and all(d["title"] for d in loaded)


def test_locust_places_calls_through_nginx(compose: dict[str, Any]) -> None:
    master = compose["services"]["locust-master"]["command"]
    assert master[master.index("--host") + 1] == "ws://nginx:8765"
    worker = compose["services"]["locust-worker"]["command"]
    assert worker[worker.index("--master-host") + 1] == "locust-master"
