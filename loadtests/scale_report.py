"""What ``make scale-test`` found, and whether it proves the point.

The figures come from the processes of the run (:mod:`loadtests.scale_rig`): PromQL
over both nodes through Prometheus' HTTP API, nginx's access log (every node a call's
handshake was tried on, and what each answered), Locust's stats CSV and the raw rows of
the callers, and node A's own lines about its drain.  :func:`verdict` names every way a
run fell short; :func:`render` writes the summary as Markdown.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.scale_rig import promql

__all__ = ["DrainRecord", "drain_lines", "live_dialogs", "locust_failures", "nginx_handshakes",
           "node_figures", "render", "verdict"]

_ACCESS = re.compile(r'" (\d{3}) upstream="([^"]*)" upstream_status="([^"]*)"')
_GAUGE = re.compile(r'^voicebot_active_dialogs(?:\{[^}]*\})? (\S+)$', re.MULTILINE)


@dataclass(frozen=True, kw_only=True, slots=True)
class DrainRecord:
    """Node A's drain as the harness saw it (seconds from Locust's start)."""

    sigterm_at_s: float
    live_at_sigterm: int
    exit_code: int | None
    drain_s: float
    """SIGTERM → exit; NaN when it did not exit."""


def live_dialogs(metrics_url: str) -> int:
    """Live dialogs on a node now, from its ``/metrics`` (0 when unreadable)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    return int(sum(float(v) for v in _GAUGE.findall(text) if v != "NaN"))


def node_figures(prom_url: str, *, range_s: int) -> dict[str, Any]:
    """PromQL over both nodes, from the start of the scrapes: calls admitted and refused,
    peak live dialogs, the scrape's ``up``, the drain gauge, turn latency quantiles."""
    r = f"[{range_s}s]"
    nodes: dict[str, dict[str, Any]] = {}

    def each(query: str, key: str, label: str = "") -> None:
        for labels, value in promql(prom_url, query):
            slot = nodes.setdefault(labels.get("node", "?"), {})
            if label:
                slot.setdefault(key, {})[labels.get(label, "?")] = value
            else:
                slot[key] = value

    calls = "voicebot_calls_total"
    turn = 'voicebot_turn_latency_seconds_bucket{kind="turn"}'
    each(f'max by (node) (max_over_time({calls}{{outcome="admitted"}}{r}))', "admitted")
    each(f'max by (node, outcome) (max_over_time({calls}{{outcome=~"refused_.+"}}{r}))',
         "refused", "outcome")
    each(f"max_over_time(sum by (node) (voicebot_active_dialogs){r[:-1]}:1s])", "peak_live")
    each(f'min by (node) (min_over_time(up{{job="voicebot"}}{r}))', "up_min")
    each('max by (node) (up{job="voicebot"})', "up_now")
    each(f"max by (node) (max_over_time(voicebot_draining{r}))", "draining_max")
    each(f"histogram_quantile(0.95, sum by (node, le) (max_over_time({turn}{r})))",
         "turn_p95_s")
    overall = {f"p{q}_s": value for q in (50, 95)
               for _, value in promql(prom_url, f"histogram_quantile({q / 100}, sum by (le) "
                                                f"(max_over_time({turn}{r})))")}
    return {"per_node": nodes, "turn": overall, "range_s": range_s}


def nginx_handshakes(access_log: Path, ports: Mapping[str, int]) -> dict[str, Any]:
    """From nginx's access log: the calls it upgraded, on which node, and how many it
    first tried on a node that refused or was gone (``$upstream_status`` "503, 101")."""
    node_of = {f"127.0.0.1:{port}": node for node, port in ports.items()}
    out: dict[str, Any] = {"upgraded": 0, "retried": 0, "refused": 0,
                           "served_by": dict.fromkeys(ports, 0),
                           "first_tries": {}}
    with contextlib.suppress(OSError):
        for status, addresses, statuses in _ACCESS.findall(access_log.read_text()):
            tried = [a.strip() for a in addresses.split(",")]
            answers = [s.strip() for s in statuses.split(",")]
            if status != "101":
                out["refused"] += 1
                continue
            out["upgraded"] += 1
            node = node_of.get(tried[-1], tried[-1])
            out["served_by"][node] = out["served_by"].get(node, 0) + 1
            if len(answers) > 1:
                out["retried"] += 1
                first = f"{node_of.get(tried[0], tried[0])}: {answers[0]}"
                out["first_tries"][first] = out["first_tries"].get(first, 0) + 1
    return out


def locust_failures(stats_csv: Path) -> dict[str, int]:
    """Locust's requests and failures, its ``call`` entries apart, and the intent checks
    apart: a misheard intent is the recogniser's miss, not a call lost in the rollout."""
    out = {"requests": 0, "failures": 0, "call_requests": 0, "call_failures": 0,
           "intent_mismatches": 0}
    with contextlib.suppress(OSError), stats_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                continue
            requests, failures = int(row["Request Count"]), int(row["Failure Count"])
            if row["Type"] == "intent":
                out["intent_mismatches"] += failures
                continue
            out["requests"] += requests
            out["failures"] += failures
            if row["Name"] == "call":
                out["call_requests"] += requests
                out["call_failures"] += failures
    return out


def drain_lines(log_path: Path) -> list[str]:
    """A node's own lines about its drain (``draining: …``, ``shutting down with …``)."""
    with contextlib.suppress(OSError):
        return [line.strip() for line in log_path.read_text(errors="replace").splitlines()
                if "draining:" in line or "shutting down with" in line]
    return []


def verdict(s: dict[str, Any]) -> str:
    """``pass``, or every way the run fell short of the proof."""
    problems = []
    calls = s["callers"].get("calls", {})
    if not s["calls"]:
        problems.append("Locust placed no call")
    if calls.get("refused") or calls.get("failed"):
        failures = "; ".join(s["callers"].get("failures", []))
        problems.append(f"{calls.get('refused')} calls refused (reasons in the table), "
                        f"{calls.get('failed')} failed{': ' + failures if failures else ''}")
    if s["locust"]["failures"] or s["callers"].get("turn_errors"):
        problems.append(f"Locust counted {s['locust']['failures']} failures; turns without a "
                        f"reply: {s['callers'].get('turn_errors')}")
    admitted = {n: s["nodes"]["per_node"].get(n, {}).get("admitted", 0.0) for n in "ab"}
    for node, count in admitted.items():
        if not count:
            problems.append(f"Prometheus shows no call admitted on node {node.upper()}")
    if sum(admitted.values()) != s["calls"]:
        problems.append(f"admitted on A + B = {sum(admitted.values()):.0f} (Prometheus) but "
                        f"Locust placed {s['calls']} calls")
    drain = s["drain"]
    if drain["live_at_sigterm"] < 1:
        problems.append("node A held no live call at SIGTERM: the drain proved nothing")
    if drain["exit_code"] != 0:
        problems.append(f"node A exit code {drain['exit_code']} after SIGTERM")
    if not any("shutting down with 0 live calls" in line for line in s["drain_log"]):
        problems.append("node A did not finish all its live calls before exiting")
    if not s["nginx"]["retried"]:
        problems.append("no call was offered to node A while it drained or after it left: "
                        "nginx's retry was not exercised")
    if s["nodes"]["per_node"].get("a", {}).get("up_min") != 0:
        problems.append("Prometheus never saw node A's scrape go down")
    return "FAIL: " + "; ".join(problems) if problems else "pass"


def _ms(seconds: float | None, *, scale: float = 1000.0) -> str:
    return "n/a" if seconds is None or math.isnan(seconds) else f"{seconds * scale:.0f}"


def render(s: dict[str, Any]) -> str:
    """The summary as Markdown: the run, a table per node, the callers' side, verdict."""
    o, drain, per = s["options"], s["drain"], s["nodes"]["per_node"]
    lines = [
        f"# voicebot scale-out test — {s['date']}", "",
        f"- machine: {s['cpu']}, {os.cpu_count()} CPUs; node A on CPU {o['cpus_a']}, "
        f"node B on CPU {o['cpus_b']}, nginx / Prometheus / Locust unpinned",
        f"- stack: `{s['stack']}` — models {s['models']}",
        f"- load: {o['users']} Locust callers ({o['protocol']}) through nginx (least_conn, "
        f"503/refused handshakes retried on the next node) placing calls for "
        f"{o['duration_s']:.0f} s, the calls in progress then finishing; "
        f"each node admits {o['users']} dialogs per core, SLO p95 {o['slo_p95_ms']:.0f} ms",
        f"- SIGTERM to node A at {drain['sigterm_at_s']:.1f} s with "
        f"{drain['live_at_sigterm']} live call(s); its drain took {drain['drain_s']:.1f} s "
        f"(drain_timeout_s {o['drain_timeout_s']:.0f}), exit code {drain['exit_code']}",
        "", "| node | calls admitted | refused (reason) | peak live calls | handshakes served "
        "(nginx) | turn p95 ms (server) | scrape up at the end |",
        "|---|---|---|---|---|---|---|"]
    for node in sorted(set(per) | {"a", "b"}):
        f = per.get(node, {})
        refused = ", ".join(f"{v:.0f} {k.removeprefix('refused_')}"
                            for k, v in sorted(f.get("refused", {}).items())) or "0"
        lines.append(f"| {node.upper()} | {f.get('admitted', 0):.0f} | {refused} | "
                     f"{f.get('peak_live', 0):.0f} | "
                     f"{s['nginx']['served_by'].get(node, 0)} | {_ms(f.get('turn_p95_s'))} | "
                     f"{'up' if f.get('up_now') else 'down'} |")
    c, callers = s["callers"].get("calls", {}), s["callers"]
    turn = callers.get("turn", {})
    retried = ", ".join(f"{n}x {k}" for k, n in sorted(s["nginx"]["first_tries"].items()))
    lines += [
        "", f"- calls placed by Locust: {s['calls']} ({c.get('completed', 0)} completed, "
        f"{c.get('refused', 0)} refused, {c.get('failed', 0)} failed); Locust failures: "
        f"{s['locust']['failures']} of {s['locust']['requests']} requests; turns without a "
        f"reply: {callers.get('turn_errors', 0)}; intents heard as meant: "
        f"{callers.get('intents', {}).get('as_expected', 0)}/"
        f"{callers.get('intents', {}).get('checked', 0)} (not a call failure)",
        f"- handshakes nginx moved to another node: {s['nginx']['retried']}"
        f"{f' (first try: {retried})' if retried else ''}; refused by nginx: "
        f"{s['nginx']['refused']}",
        f"- turn latency at the callers: p50 {_ms(turn.get('p50_ms'), scale=1)} ms, "
        f"p95 {_ms(turn.get('p95_ms'), scale=1)} ms over {turn.get('n', 0)} turns; "
        f"at the servers (Prometheus histogram): p50 {_ms(s['nodes']['turn'].get('p50_s'))}"
        f" ms, p95 {_ms(s['nodes']['turn'].get('p95_s'))} ms",
        f"- `voicebot_draining` on A: {_ms(per.get('a', {}).get('draining_max'), scale=1)} "
        "(1: Prometheus saw A draining; n/a: not exported)",
        *(f"- node A log: `{line}`" for line in s["drain_log"]),
        f"- raw: {s['work_dir']}", "", f"**Verdict: {s['verdict']}**", ""]
    return "\n".join(lines)
