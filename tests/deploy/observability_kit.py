"""What the observability tests read of ``docker/observability/``: the rules, the dashboard
and its queries, the metric names a PromQL expression selects, and the dashboard's
TypeScript type check (see ``test_observability.py`` for why TypeScript)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DASHBOARD", "ISSUE_METRICS", "PANEL_TYPES", "ROOT", "RULES", "RULE_TESTS",
           "RUNBOOKS", "SAMPLE_VARIABLES", "SCHEMA_CHECK", "alerts", "dashboard",
           "dashboard_queries", "metric_names", "panels", "records", "rules", "run",
           "typescript_check"]

ROOT = Path(__file__).resolve().parents[2]
KIT = ROOT / "docker" / "observability"
RULES = KIT / "prometheus" / "alerts.yml"
RULE_TESTS = KIT / "prometheus" / "alerts.test.yml"
DASHBOARD = KIT / "grafana" / "dashboards" / "voicebot.json"
SCHEMA_CHECK = KIT / "grafana" / "schema-check"
RUNBOOKS = KIT / "README.md"

_HISTOGRAMS = ("voicebot_turn_latency_seconds", "voicebot_turn_part_seconds",
               "voicebot_engine_real_time_factor")
ISSUE_METRICS = frozenset({
    *(name + suffix for name in _HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")),
    "voicebot_active_dialogs", "voicebot_calls_total", "voicebot_barge_ins_total",
    "voicebot_rss_bytes", "voicebot_cpu_seconds", "voicebot_cell_up", "voicebot_record_writes",
    "voicebot_capacity_dialogs", "voicebot_ready", "voicebot_draining",
    "voicebot_slo_p95_seconds", "voicebot_cell_restarts_total", "voicebot_call_outcomes_total",
    "voicebot_intents_total", "voicebot_reprompts_total", "voicebot_fallbacks_total",
    "voicebot_no_input_timeouts_total",
})
"""Issue 14's metric names (``server/metrics.py``): what the kit may query."""

SAMPLE_VARIABLES = {"instance": "(node-a:9090|node-b:9090)", "scenario": "(bank_card|loans)",
                    "__rate_interval": "1m", "__interval": "30s", "__range": "6h"}
"""Template variables as Grafana fills them in (a multi-value selection is a regex
alternation)."""

PANEL_TYPES = {"row": "RowPanel", "stat": "StatPanel", "timeseries": "TimeSeriesPanel"}
"""Panel type -> its type in ``schema-check/dashboard.ts``."""

_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "group_left", "group_right",
                       "inf", "nan", "Inf", "NaN"})


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def records() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _concrete(expr: str, variables: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            raise AssertionError(f"unknown template variable ${name} in {expr!r}")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def dashboard_queries(variables: Mapping[str, str] = SAMPLE_VARIABLES) -> dict[str, str]:
    """Record name -> PromQL with ``variables`` filled in, for every panel target and
    query variable (``label_values(m, l)`` becomes ``group by (l) (m)``)."""
    queries: dict[str, str] = {}
    board = dashboard()
    for panel in panels(board):
        for target in panel.get("targets", []):
            queries[f"dashboard_panel_{panel['id']}_{target['refId']}"] = _concrete(
                target["expr"], variables)
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"])
            if not match:
                raise AssertionError(f"variable {variable['name']}: not label_values(m, l)")
            queries[f"dashboard_variable_{variable['name']}"] = (
                f"group by ({match.group(2)}) ({match.group(1)})")
    return queries


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels, keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)  # label matchers, ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"(?<![\w:.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?\b", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        if match.group(0) in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue  # a keyword, a function or an aggregation
        names.add(match.group(0))
    return names


def typescript_check(board: dict[str, Any], folder: Path) -> subprocess.CompletedProcess[str]:
    """``tsc --strict`` over ``board`` written as literals that must satisfy Grafana's
    types (``schema-check/dashboard.ts``); raises if the types are not installed."""
    node, tsc = shutil.which("node"), SCHEMA_CHECK / "node_modules" / "typescript" / "bin" / "tsc"
    if node is None or not tsc.exists():
        raise AssertionError("the dashboard's types are not installed: run `npm ci --prefix "
                             f"{SCHEMA_CHECK.relative_to(ROOT)}` (Node.js and npm)")
    shell = dict(board, panels=[])
    lines = ["import type { DashboardShell, RowPanel, StatPanel, TimeSeriesPanel } from "
             f"{json.dumps(str(SCHEMA_CHECK / 'dashboard'))};",
             f"export const dashboard = {json.dumps(shell, indent=2)} satisfies DashboardShell;"]
    for panel in panels(board):
        kind = PANEL_TYPES.get(panel["type"], "never")
        body = dict(panel, panels=[]) if panel["type"] == "row" else panel
        lines += [f"// panel {panel['id']}: {json.dumps(panel.get('title'))}",
                  f"export const panel{panel['id']} = {json.dumps(body, indent=2)} "
                  f"satisfies {kind};"]
    (folder / "check.ts").write_text("\n".join(lines) + "\n")
    (folder / "tsconfig.json").write_text(json.dumps({"compilerOptions": {
        "strict": True, "noEmit": True, "skipLibCheck": True, "target": "ES2022",
        "module": "ESNext", "moduleResolution": "bundler", "types": []},
        "files": ["check.ts"]}))
    return run(node, str(tsc), "--pretty", "false", "-p", "tsconfig.json", cwd=folder)
