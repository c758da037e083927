"""The observability kit (``docker/observability/``): Prometheus rules and the Grafana dashboard.

* ``promtool check rules`` and ``promtool test rules`` (Debian's ``prometheus`` package)
  on ``alerts.yml``; mutating an alert (never firing, no ``for:``, a guard removed) must
  make its unit tests fail, so each alert is shown both firing and silent.
* The dashboard is type-checked against Grafana's own published schema. Why this way:
  Grafana ships no JSON Schema for dashboards. ``grafana-foundation-sdk`` (PyPI) decodes
  a dashboard leniently (unknown keys dropped, no type checks), and ``grafanalib`` only
  builds dashboards. ``@grafana/schema`` (npm, Apache-2.0) is the TypeScript Grafana
  generates from the CUE kinds it validates dashboards with, panel plugins' options
  included; ``tsc --strict`` over the dashboard written as object literals that must
  ``satisfies`` those types rejects any unknown key, missing required option, wrong type
  or unknown enum value (``schema-check/dashboard.ts``). Both pinned by its lock file:
  ``npm ci --prefix docker/observability/grafana/schema-check``.
* Every panel query, its template variables filled in, is put through ``promtool check
  rules`` as a recording rule: it is valid PromQL. Every metric the rules and queries
  name is one of issue 14's metric names, a recording rule of ``alerts.yml`` or ``up``,
  and the server exports each of those names.
* A real Prometheus (Debian's) scrapes a node's real ``/metrics`` (``server.metrics``),
  loads the rules, computes them, answers every dashboard query with data, and raises no
  alert for a healthy node.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicebot.dialog.scenario import Scenario

from . import observability_kit as kit
from .observability_kit import ISSUE_METRICS, PANEL_TYPES, RULE_TESTS, RULES, RUNBOOKS, metric_names

__all__: list[str] = []


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; CI installs it)")
    return path


def test_metric_names_finds_selectors_only() -> None:
    expr = ('histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{kind="turn", x=~"b|c"}'
            '[5m]))) > on (job) group_left max by (job) (slo:b) * 1e4 > bool up offset 5m')
    assert metric_names(expr) == {"a_bucket", "slo:b", "up"}


def test_rules_pass_promtool_check(promtool: str) -> None:
    run = kit.run(promtool, "check", "rules", str(RULES))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(kit.rules())} rules found" in run.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    run = kit.run(promtool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_has_severity_annotations_runbook_and_both_kinds_of_test() -> None:
    alerts = kit.alerts()
    runbooks = RUNBOOKS.read_text()
    cases = [case for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    assert len(alerts) >= 8
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert f"README.md#{name.lower()}" in rule["annotations"]["runbook"], name
        assert f"\n### {name}\n" in runbooks, f"{name} has no runbook section in README.md"
        expected = [case["exp_alerts"] for case in cases if case["alertname"] == name]
        assert any(expected), f"{name} is never shown firing"
        assert [] in expected, f"{name} is never shown silent"


def _mutations() -> list[tuple[str, str, str]]:
    """(alert, what is broken, the rules file's text with it broken)."""
    text = RULES.read_text()
    out = []
    for name, rule in kit.alerts().items():
        doc = yaml.safe_load(text)
        for group in doc["groups"]:
            for other in group["rules"]:
                if other.get("alert") == name:
                    other["expr"] = "vector(1) < 0"
        out.append((name, "never fires", yaml.safe_dump(doc, sort_keys=False)))
        if "for" in rule:
            doc = yaml.safe_load(text)
            for group in doc["groups"]:
                for other in group["rules"]:
                    if other.get("alert") == name:
                        del other["for"]
            out.append((name, "no for:", yaml.safe_dump(doc, sort_keys=False)))
    for name, old, new in (
        ("VoicebotTurnLatencyOverSLO", '{kind="turn"}', ""),
        ("VoicebotNotReady", "voicebot_draining) == 0", "voicebot_draining) >= 0"),
        ("VoicebotNotReady", "instance:voicebot_utilisation:ratio < 1",
         "instance:voicebot_utilisation:ratio <= 1"),
        ("VoicebotNotReady", "or max by (job, instance) (voicebot_capacity_dialogs) == 0", ""),
        ("VoicebotTargetDown", '{job=~".*voicebot.*"}', ""),
    ):
        assert text.count(old) == 1, old
        out.append((name, f"{old!r} -> {new!r}", text.replace(old, new)))
    return out


def test_rule_unit_tests_catch_a_broken_alert(promtool: str, tmp_path: Path) -> None:
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    uncaught = []
    for name, broken, text in _mutations():
        (tmp_path / RULES.name).write_text(text)
        assert kit.run(promtool, "check", "rules", RULES.name, cwd=tmp_path).returncode == 0
        if kit.run(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path).returncode == 0:
            uncaught.append(f"{name}: {broken}")
    assert not uncaught, "alerts.test.yml passes with these alerts broken: " + "; ".join(uncaught)


def test_dashboard_layout_variables_and_coverage() -> None:
    dashboard = kit.dashboard()
    panels = kit.panels(dashboard)
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert panel["type"] in PANEL_TYPES, panel["title"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] != "row":
            sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
            assert all(s == {"type": "prometheus", "uid": "${datasource}"} for s in sources)
            refs = [target["refId"] for target in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), panel["title"]
            assert panel.get("description"), panel["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["multi"] and variables["scenario"]["multi"]
    queried = set().union(*map(metric_names, kit.dashboard_queries().values()))
    missing = {"voicebot_turn_latency_seconds_bucket", "voicebot_turn_part_seconds_bucket",
               "voicebot_active_dialogs", "voicebot_capacity_dialogs", "voicebot_calls_total",
               "voicebot_cell_restarts_total", "voicebot_cell_up",
               "voicebot_engine_real_time_factor_bucket", "voicebot_rss_bytes",
               "voicebot_cpu_seconds", "voicebot_call_outcomes_total", "voicebot_intents_total",
               "voicebot_fallbacks_total", "voicebot_reprompts_total",
               "voicebot_no_input_timeouts_total"} - queried
    assert not missing, f"no panel shows {sorted(missing)}"


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    queries = kit.dashboard_queries()
    assert len(queries) >= 25
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": record, "expr": expr} for record, expr in queries.items()]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    run = kit.run(promtool, "check", "rules", str(path))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(queries)} rules found" in run.stdout


def test_rules_and_dashboard_name_only_known_metrics() -> None:
    records = kit.records()
    named = {f"rule {rule.get('record') or rule.get('alert')}": metric_names(rule["expr"])
             for rule in kit.rules()}
    named |= {query: metric_names(expr) for query, expr in kit.dashboard_queries().items()}
    unknown = {where: sorted(names - ISSUE_METRICS - records - {"up"})
               for where, names in named.items() if names - ISSUE_METRICS - records - {"up"}}
    assert not unknown, unknown
    assert all(named.values()), "a query that selects no metric"


def test_server_exports_every_metric_name_the_kit_uses() -> None:
    from server.metrics import Metrics

    exported = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        exported |= {family.name + s for s in suffixes.get(family.type, ("",))}
    assert not ISSUE_METRICS - exported, sorted(ISSUE_METRICS - exported)


def test_dashboard_satisfies_grafana_schema(tmp_path: Path) -> None:
    run = kit.typescript_check(kit.dashboard(), tmp_path)
    assert run.returncode == 0, f"{run.stdout}{run.stderr}(lines of {tmp_path / 'check.ts'})"


def test_schema_check_rejects_unknown_keys_and_enum_values(tmp_path: Path) -> None:
    dashboard = kit.dashboard()
    dashboard["sharedCrosshair"] = True  # a key Grafana dropped from the schema
    timeseries = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    timeseries["options"]["legend"]["displayMode"] = "tabel"
    stat = next(p for p in dashboard["panels"] if p["type"] == "stat")
    del stat["options"]["reduceOptions"]
    run = kit.typescript_check(dashboard, tmp_path)
    assert run.returncode != 0
    assert "'\"sharedCrosshair\"' does not exist" in run.stdout, run.stdout
    assert "'\"tabel\"' is not assignable" in run.stdout, run.stdout
    assert "reduceOptions" in run.stdout, run.stdout


@pytest.fixture
def node(bank_card: Scenario) -> Iterator[tuple[str, Any]]:
    """A node's real metrics (two ready cells, one live call) served on loopback."""
    from server.admission import Admission, AdmissionConfig
    from server.metrics import CONTENT_TYPE, Metrics

    metrics = Metrics()
    admission = Admission(AdmissionConfig(dialogs_per_core=2, cores=2))
    metrics.follow(admission, [bank_card])
    live = admission.admit()
    for cell in ("0", "1"):
        metrics.active_dialogs.labels(cell=cell).set(1 if cell == live else 0)
        metrics.cell_info.labels(cell=cell, cpu=cell, pid=str(100 + int(cell))).set(1)
        metrics.cell_restarts.labels(cell=cell)
    for state in ("dropped", "failed", "pending"):
        metrics.record_writes.labels(state=state).set(0)
    metrics.calls.labels(outcome="admitted").inc()
    metrics.turn_latency.labels(kind="turn").observe(0.4)
    metrics.engine_rtf.labels(engine="asr").observe(0.1)

    class Exposition(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = metrics.exposition()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Exposition)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", metrics
    server.shutdown()
    server.server_close()


def _query(url: str, promql: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}), timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", (promql, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def _until(url: str, promql: str, deadline_s: float = 60.0) -> list[dict[str, Any]]:
    """The first non-empty answer to ``promql`` (Prometheus scrapes and evaluates each s)."""
    end = time.monotonic() + deadline_s
    while not (result := _query(url, promql)):
        assert time.monotonic() < end, f"no answer to {promql} in {deadline_s} s"
        time.sleep(0.5)
    return result


@pytest.fixture
def prometheus(node: tuple[str, Any], tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (Debian package `prometheus`; CI installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "voicebot", "static_configs": [{"targets": [node[0]]}]}],
    }))
    with (tmp_path / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_real_prometheus_computes_the_rules_and_every_dashboard_query(
        prometheus: str, node: tuple[str, Any]) -> None:
    metrics = node[1]
    end = time.monotonic() + 60
    while True:  # Prometheus starting, then its first scrape
        try:
            if _query(prometheus, 'up{job="voicebot"} == 1'):
                break
        except OSError:
            pass
        assert time.monotonic() < end, "Prometheus never scraped the node"
        time.sleep(0.5)
    for outcome in ("completed", "completed", "completed", "transferred"):
        metrics.call_counters.ended("bank_card", outcome)

    containment = _until(prometheus, "job:voicebot_containment:ratio_1h > 0")
    assert float(containment[0]["value"][1]) == pytest.approx(0.75)
    utilisation = _until(prometheus, "instance:voicebot_utilisation:ratio")
    assert float(utilisation[0]["value"][1]) == 0.25  # 1 live of 2 cells x 2
    empty = [name for name, expr in kit.dashboard_queries(
        {"instance": ".*", "scenario": ".*", "__rate_interval": "1m", "__interval": "15s",
         "__range": "1h"}).items() if not _query(prometheus, expr)]
    assert not empty, f"dashboard queries with no data from a real node: {empty}"
    assert _query(prometheus, "ALERTS") == [], "a healthy node raised alerts"
