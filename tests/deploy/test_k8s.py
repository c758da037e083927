"""docker/k8s/: the kustomize base renders with ``kubectl kustomize``, every object is valid
against the Kubernetes JSON schemas (strict: no unknown field) and the ServiceMonitor
against prometheus-operator's, and the properties a contact center relies on hold:
Guaranteed QoS, probes, a grace period that covers the drain, selectors that select,
an autoscaler that grows fast and shrinks slowly on a metric the adapter can compute.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from server.config import load_config
from server.metrics import Metrics
from voicebot.errors import ConfigError

from .k8s_manifests import (
    K8S_DIR,
    Manifests,
    cpu_millicores,
    find_kubectl,
    labels_match,
    prestop_delay_s,
    render,
)

_ENV = {"VOICEBOT_NATIVE_TOKEN": "t" * 32}
# prometheus-operator's kinds: not in the Kubernetes schemas, checked against models
# generated from its CRDs (a PrometheusRule may be added to the base for the alerts).
_CRD_MODELS: dict[str, Any] = {"ServiceMonitor": ServiceMonitor,
                               "PrometheusRule": PrometheusRule}
_KINDS = {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
          "Service", "ServiceMonitor", "PrometheusRule"}
_ALERTS = K8S_DIR.parent / "observability" / "prometheus" / "alerts.yml"
_SCHEMA_VERSIONS = ("1.25.0", latest_version())  # HPA v2 and PDB policy/v1 GA since 1.23


@pytest.fixture(scope="module")
def k8s() -> Manifests:
    kubectl = find_kubectl()
    if kubectl is None:
        pytest.skip("no kubectl (PATH or VOICEBOT_KUBECTL): cannot render docker/k8s")
    return render(kubectl)


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((K8S_DIR / name).read_text(encoding="utf-8"))
    return loaded


def test_the_base_renders_every_object_namespace_agnostic_and_labelled(k8s: Manifests) -> None:
    kinds = {o["kind"] for o in k8s.objects}
    assert _KINDS <= kinds
    assert kinds <= _KINDS | set(_CRD_MODELS), "a new custom kind needs its schema check here"
    for obj in k8s.objects:
        assert "namespace" not in obj["metadata"], obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "voicebot"
    # Generated: its name carries the content hash, so a config change rolls the pods.
    assert k8s.one("ConfigMap")["metadata"]["name"].startswith("voicebot-config-")


@pytest.mark.parametrize("version", _SCHEMA_VERSIONS)
def test_every_core_object_is_valid_against_the_kubernetes_schemas(
        k8s: Manifests, version: str) -> None:
    checked = [o for o in k8s.objects if o["kind"] not in _CRD_MODELS]
    for obj in [*checked, _example("ingress-nginx.example.yaml")]:
        kubernetes_validate.validate(obj, version, strict=True)
    # Strict mode does refuse what the API server would: an unknown field.
    bad = {**k8s.one("Service"), "spec": {**k8s.one("Service")["spec"], "idleTimeout": 600}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, version, strict=True)


def test_custom_objects_are_valid_against_the_prometheus_operator_crds(
        k8s: Manifests) -> None:
    for obj in (o for o in k8s.objects if o["kind"] in _CRD_MODELS):
        model = _CRD_MODELS[obj["kind"]].model_validate(obj)
        # The models (generated from the CRDs) ignore unknown fields: a round trip that
        # loses nothing shows there was none.
        assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == obj
    monitor = k8s.one("ServiceMonitor")
    endpoint = monitor["spec"]["endpoints"][0]
    with pytest.raises(ValueError, match="interval"):
        ServiceMonitor.model_validate({**monitor, "spec": {
            **monitor["spec"], "endpoints": [{**endpoint, "interval": "15 s"}]}})


def test_the_prometheusrule_carries_exactly_the_observability_kits_rules(
        k8s: Manifests) -> None:
    """alerts.yml is the source (promtool-tested); `make k8s-rules` regenerates the wrap."""
    rules = yaml.safe_load(_ALERTS.read_text(encoding="utf-8"))
    assert k8s.one("PrometheusRule")["spec"]["groups"] == rules["groups"], (
        "docker/k8s/prometheusrule.yaml is out of date: run `make k8s-rules`")


def test_the_configmap_is_a_server_configuration_matching_the_pod(k8s: Manifests) -> None:
    config = k8s.server_config(_ENV)
    assert (config.host, config.admin_host) == ("0.0.0.0", "0.0.0.0")
    assert config.port == k8s.container_port("ws")
    assert config.admin_port == k8s.container_port("metrics")
    assert config.pull_models is False  # models come with the image
    # No endpoint anonymous; the token read from the environment (the Secret), not the file.
    assert not config.auth.disabled
    assert config.auth.anonymous_endpoints == ()
    assert _ENV["VOICEBOT_NATIVE_TOKEN"] not in k8s.config_text()
    with pytest.raises(ConfigError, match="VOICEBOT_NATIVE_TOKEN"):
        k8s.server_config({})  # no Secret: the server refuses to start, never serves open
    assert "cpus" not in yaml.safe_load(k8s.config_text()), "cells follow the CPU quota"


def test_pods_are_guaranteed_qos_with_whole_cpus(k8s: Manifests) -> None:
    spec = k8s.pod_spec
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], container["name"]
        assert {"cpu", "memory"} <= set(resources["limits"])
        assert cpu_millicores(resources["limits"]["cpu"]) % 1000 == 0, "whole CPUs"


def test_probes_liveness_healthz_readiness_readyz_on_the_admin_port(k8s: Manifests) -> None:
    container = k8s.container
    admin_port = k8s.server_config(_ENV).admin_port
    paths = {}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        port = get["port"]
        assert (k8s.container_port(port) if isinstance(port, str) else port) == admin_port
        paths[probe] = get["path"]
    assert paths == {"livenessProbe": "/healthz", "readinessProbe": "/readyz",
                     "startupProbe": "/healthz"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "model load time"


def test_the_grace_period_covers_prestop_and_the_drain(k8s: Manifests) -> None:
    delay_s = prestop_delay_s(k8s.container)
    drain_s = k8s.server_config(_ENV).drain_timeout_s
    assert delay_s >= 5, "endpoints and load balancers need a moment to stop new calls"
    assert k8s.pod_spec["terminationGracePeriodSeconds"] > delay_s + drain_s


def test_rolling_updates_add_a_pod_before_removing_one(k8s: Manifests) -> None:
    spec = k8s.one("Deployment")["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "replicas" not in spec, "the HPA owns the replica count"


def test_pods_run_unprivileged_with_a_read_only_root(k8s: Manifests) -> None:
    pod, container = k8s.pod_spec, k8s.container
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A Service named voicebot would inject VOICEBOT_PORT=tcp://... into the pods, which
    # the server reads as its port.
    assert pod["enableServiceLinks"] is False
    # What the server writes is on emptyDir volumes.
    config = k8s.server_config(_ENV)
    empty = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = {Path(m["mountPath"]) for m in container["volumeMounts"] if m["name"] in empty}
    for path in (config.data_dir, config.models_dir / "prompt-cache", Path("/tmp")):
        assert path in writable, f"{path} is not writable"


def test_secrets_come_by_reference_only(k8s: Manifests) -> None:
    env = {e["name"]: e for e in k8s.container["env"]}
    for name in ("VOICEBOT_NATIVE_TOKEN", "VOICEBOT_RECORDS"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["key"], ref["optional"]) == (name, True)
    literal = [e["name"] for e in env.values() if "value" in e]
    assert not [n for n in literal if any(w in n for w in ("TOKEN", "SECRET", "PASSWORD",
                                                           "RECORDS"))]
    assert not k8s.of_kind("Secret"), "secrets are created out of band, never in the base"


def test_selectors_select_the_pods(k8s: Manifests) -> None:
    pod_labels = k8s.pod_labels
    assert labels_match(k8s.one("Deployment")["spec"]["selector"], pod_labels)
    assert labels_match(k8s.one("PodDisruptionBudget")["spec"]["selector"], pod_labels)
    assert k8s.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    service = k8s.one("Service")
    assert labels_match(service["spec"]["selector"], pod_labels)
    assert service["spec"]["type"] == "ClusterIP"
    for port in service["spec"]["ports"]:
        k8s.container_port(port["targetPort"])  # names a container port


def test_the_servicemonitor_scrapes_the_admin_metrics_every_15s(k8s: Manifests) -> None:
    monitor, service = k8s.one("ServiceMonitor"), k8s.one("Service")
    assert labels_match(monitor["spec"]["selector"], service["metadata"]["labels"])
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in ports
    assert (endpoint["path"], endpoint["interval"]) == ("/metrics", "15s")
    target = ports[endpoint["port"]]["targetPort"]
    assert k8s.container_port(target) == k8s.server_config(_ENV).admin_port


def _rate_pods_per_s(policy: dict[str, Any], replicas: int) -> float:
    pods = policy["value"] if policy["type"] == "Pods" else replicas * policy["value"] / 100
    return float(pods) / float(policy["periodSeconds"])


def test_the_autoscaler_grows_fast_and_shrinks_slowly(k8s: Manifests) -> None:
    hpa = k8s.one("HorizontalPodAutoscaler")["spec"]
    deployment = k8s.one("Deployment")
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert hpa["minReplicas"] >= 2
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "voicebot_dialog_utilization"
    up, down = hpa["behavior"]["scaleUp"], hpa["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert down["stabilizationWindowSeconds"] >= 300
    replicas = hpa["minReplicas"]
    fastest_down = max(_rate_pods_per_s(p, replicas) for p in down["policies"])
    slowest_up = min(_rate_pods_per_s(p, replicas) for p in up["policies"])
    assert fastest_down < slowest_up


def _adapter_rule() -> dict[str, Any]:
    (rule,) = _example("prometheus-adapter-values.yaml")["rules"]["custom"]
    assert isinstance(rule, dict)
    return rule


def test_the_adapter_rule_serves_the_hpa_metric_from_real_series(k8s: Manifests) -> None:
    rule = _adapter_rule()
    hpa_metric = k8s.one("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]
    assert rule["name"]["as"] == hpa_metric["name"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    exposed = {f.name for f in text_string_to_metric_families(
        Metrics().exposition().decode())}
    assert {"voicebot_active_dialogs", "voicebot_capacity_dialogs"} <= exposed


def test_the_adapter_query_computes_dialogs_per_capacity(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian package prometheus): cannot evaluate the query")
    query = (_adapter_rule()["metricsQuery"].replace("<<.GroupBy>>", "pod")
             .replace("<<.LabelMatchers>>", 'namespace="calls",pod=~"vb-a|vb-b|vb-c"'))
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
        {"record": "adapter:voicebot_dialog_utilization", "expr": query}]}]}), encoding="utf-8")
    # vb-a: 2 cells, 3 + 5 live of 16; vb-b: full; vb-c: no ready cell, no call; the other
    # namespace's series are not asked for.
    series = [("active", "calls", "vb-a", "0", 3), ("active", "calls", "vb-a", "1", 5),
              ("capacity", "calls", "vb-a", "", 16), ("active", "calls", "vb-b", "0", 16),
              ("capacity", "calls", "vb-b", "", 16), ("active", "calls", "vb-c", "0", 0),
              ("capacity", "calls", "vb-c", "", 0), ("capacity", "other", "vb-a", "", 1)]
    names = {"active": "voicebot_active_dialogs", "capacity": "voicebot_capacity_dialogs"}
    inputs = [{"series": f'{names[kind]}{{namespace="{ns}",pod="{pod}"'
                         + (f',cell="{cell}"' if cell else "") + "}",
               "values": str(value)} for kind, ns, pod, cell, value in series]
    expected = [{"labels": f'adapter:voicebot_dialog_utilization{{pod="{pod}"}}', "value": value}
                for pod, value in (("vb-a", 0.5), ("vb-b", 1.0), ("vb-c", 0.0))]
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": inputs, "promql_expr_test": [
            {"expr": "adapter:voicebot_dialog_utilization", "eval_time": "0s",
             "exp_samples": expected}]}]}), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", "test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ingress_example_outlasts_a_call_and_routes_to_the_call_port(
        k8s: Manifests) -> None:
    ingress = _example("ingress-nginx.example.yaml")
    drain_s = k8s.server_config(_ENV).drain_timeout_s
    notes = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(notes[f"nginx.ingress.kubernetes.io/{key}"]) > drain_s
    assert "http_503" in notes["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = k8s.one("Service")
    assert backend["name"] == service["metadata"]["name"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == backend["port"]["name"])
    assert k8s.container_port(port["targetPort"]) == k8s.server_config(_ENV).port


def test_the_pods_match_the_image(k8s: Manifests) -> None:
    """The image's user, and where it keeps scenarios, manifest and models."""
    dockerfile = (K8S_DIR.parent / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\d+)(?::(\d+))?\s*$", dockerfile, flags=re.MULTILINE)
    assert users, "the image runs as a numeric user"
    uid, gid = users[-1]
    security = k8s.pod_spec["securityContext"]
    assert str(security["runAsUser"]) == uid
    assert str(security["runAsGroup"]) == (gid or uid)
    image = load_config(K8S_DIR.parent / "voicebot.yaml", env=_ENV)
    pod = k8s.server_config(_ENV)
    for key in ("scenarios_dir", "manifest", "models_dir", "stack"):
        assert getattr(pod, key) == getattr(image, key), key
