"""The local scale-out proof (``python -m loadtests.scale --short``, what ``make
scale-test`` runs at length): two ``voicebot serve --stack lite`` nodes behind a real
nginx (``docker/nginx/voicebot.conf``), a real Prometheus scraping both, Locust placing
calls through nginx, node A sent SIGTERM while it holds a call.  No call may fail, both
nodes must have admitted calls, A must drain and exit cleanly, and Prometheus must
answer PromQL over both nodes.  Skipped only where the nginx or prometheus binary is
missing (``.ci/run`` installs both from Debian).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.scale_report import nginx_handshakes
from loadtests.scale_rig import (
    find_binary,
    free_port,
    http_status,
    managed,
    nginx_command,
    wait_until,
    write_nginx,
)
from tests.integration.conftest import REPO

NGINX = find_binary("nginx")
PROMETHEUS = find_binary("prometheus")
needs_binaries = pytest.mark.skipif(
    NGINX is None or PROMETHEUS is None,
    reason="needs the nginx and prometheus binaries (apt-get install nginx prometheus)")


def _cpus() -> tuple[str, str]:
    """Node A's and node B's CPU: two different ones where this process may use two."""
    allowed = sorted(os.sched_getaffinity(0))
    return str(allowed[0]), str(allowed[1 % len(allowed)])


@pytest.fixture(scope="module")
def scale_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    """The short run as ``make test`` runs it: its JSON summary, its output, its report."""
    if NGINX is None or PROMETHEUS is None:
        pytest.skip("needs the nginx and prometheus binaries (apt-get install nginx "
                    "prometheus)")
    folder = tmp_path_factory.mktemp("scale")
    report = folder / "scale-test.md"
    cpu_a, cpu_b = _cpus()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.scale", "--short", "--cpus-a", cpu_a,
         "--cpus-b", cpu_b, "--work-dir", str(folder / "run"), "--report", str(report)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.terminate()  # it stops the nodes, nginx, Prometheus and Locust it started
        out, _ = proc.communicate(timeout=120)
    output = f"exit {proc.returncode}\n{out}"
    if not report.with_suffix(".json").exists():
        pytest.fail(f"the scale test wrote no summary:\n{output}")
    summary: dict[str, Any] = json.loads(report.with_suffix(".json").read_text())
    assert proc.returncode == (0 if summary["verdict"] == "pass" else 1), output
    return summary, output, report


@pytest.mark.slow
@needs_binaries
def test_no_call_fails_while_a_node_drains(scale_run: tuple[dict[str, Any], str, Path]
                                           ) -> None:
    summary, output, _ = scale_run
    assert summary["verdict"] == "pass", output
    calls = summary["callers"]["calls"]
    assert summary["calls"] >= 4, output  # every caller placed a call
    assert calls == {"completed": summary["calls"], "refused": 0, "failed": 0}, output
    assert summary["locust"]["failures"] == 0, output
    assert summary["callers"]["turn_errors"] == 0, output


@pytest.mark.slow
@needs_binaries
def test_both_nodes_admitted_and_prometheus_counts_every_call(
        scale_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, output, _ = scale_run
    per_node = summary["nodes"]["per_node"]
    # PromQL over both scrape targets answered, each with its own series.
    assert {"a", "b"} <= set(per_node), output
    assert per_node["a"]["admitted"] >= 1 and per_node["b"]["admitted"] >= 1, output
    assert per_node["a"]["admitted"] + per_node["b"]["admitted"] == summary["calls"], output
    # nginx agrees on where each call went, and moved at least one off the draining A.
    assert summary["nginx"]["upgraded"] == summary["calls"], output
    assert summary["nginx"]["served_by"] == {
        node: round(per_node[node]["admitted"]) for node in ("a", "b")}, output
    assert summary["nginx"]["retried"] >= 1, output
    assert per_node["a"]["refused"]["refused_draining"] >= 1, output
    # A's scrape went down when it left; B still serves.
    assert per_node["a"]["up_now"] == 0 and per_node["b"]["up_now"] == 1, output


@pytest.mark.slow
@needs_binaries
def test_node_a_drained_its_live_calls_and_exited_cleanly(
        scale_run: tuple[dict[str, Any], str, Path]) -> None:
    summary, output, report = scale_run
    drain = summary["drain"]
    assert drain["live_at_sigterm"] >= 1, output
    assert drain["exit_code"] == 0, output
    assert drain["drain_s"] < summary["options"]["drain_timeout_s"], output
    assert any("shutting down with 0 live calls" in line for line in summary["drain_log"]), output
    text = report.read_text()
    assert "**Verdict: pass**" in text and "stack: `lite`" in text and "REAL" in text


def test_access_log_tells_which_node_took_each_call(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(
        '127.0.0.1 [t] "GET / HTTP/1.1" 101 upstream="127.0.0.1:1001" '
        'upstream_status="101" connect_s="0.000" session_s=30.1\n'
        '127.0.0.1 [t] "GET / HTTP/1.1" 101 upstream="127.0.0.1:1001, 127.0.0.1:1002" '
        'upstream_status="503, 101" connect_s="0.001, 0.000" session_s=29.0\n'
        '127.0.0.1 [t] "GET / HTTP/1.1" 101 upstream="127.0.0.1:1001, 127.0.0.1:1002" '
        'upstream_status="502, 101" connect_s="-, 0.000" session_s=28.0\n'
        '127.0.0.1 [t] "GET / HTTP/1.1" 503 upstream="127.0.0.1:1002, 127.0.0.1:1001" '
        'upstream_status="503, 503" connect_s="0.001, 0.001" session_s=0.01\n')
    seen = nginx_handshakes(log, {"a": 1001, "b": 1002})
    assert seen == {"upgraded": 3, "retried": 2, "refused": 1, "served_by": {"a": 1, "b": 2},
                    "first_tries": {"a: 503": 1, "a: 502": 1}}


@pytest.mark.skipif(NGINX is None, reason="needs the nginx binary (apt-get install nginx)")
def test_compose_nginx_config_is_valid(tmp_path: Path) -> None:
    """docker/nginx/ as compose mounts it into /etc/nginx/ (the nodes' names made local:
    ``nginx -t`` resolves upstream hosts)."""
    assert NGINX is not None
    for path in (REPO / "docker" / "nginx").glob("*.conf"):
        shutil.copy(path, tmp_path / path.name)
    upstreams = tmp_path / "voicebot-upstreams.conf"
    text = upstreams.read_text()
    assert "voicebot-1:8765" in text and "voicebot-2:8765" in text
    upstreams.write_text(text.replace("voicebot-1", "127.0.0.1").replace("voicebot-2",
                                                                         "127.0.0.2"))
    checked = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c",
                              str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


class _Node(http.server.BaseHTTPRequestHandler):
    """A stand-in node for nginx's routing alone: 503 ``full`` + Retry-After while its
    server's ``full`` is set, else 200 ``admitted``."""

    def do_GET(self) -> None:
        full = isinstance(self.server, _NodeServer) and self.server.full
        body = b"full\n" if full else b"admitted\n"
        self.send_response(503 if full else 200)
        if full:
            self.send_header("Retry-After", "5")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _NodeServer(http.server.ThreadingHTTPServer):
    full = False


@contextlib.contextmanager
def _node() -> Iterator[_NodeServer]:
    server = _NodeServer(("127.0.0.1", 0), _Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> tuple[int, str, str | None]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(), response.headers["Retry-After"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers["Retry-After"]


@pytest.mark.skipif(NGINX is None, reason="needs the nginx binary (apt-get install nginx)")
def test_nginx_refuses_with_503_never_502_and_uses_the_node_again(tmp_path: Path) -> None:
    """Node A gone, node B full: every call is refused with a 503 and Retry-After (B's
    own or nginx's), never a 502, although one 503 sets B's first entry aside; as soon as
    B has room, its backup entry takes the next call."""
    assert NGINX is not None
    port, gone = free_port(), free_port()
    with _node() as node_b:
        node_b.full = True
        conf = write_nginx(tmp_path / "nginx", listen_port=port,
                           upstream_ports=(gone, node_b.server_address[1]))
        with managed("nginx", nginx_command(NGINX, conf), log_dir=tmp_path) as nginx:
            wait_until("nginx", lambda: http_status(
                f"http://127.0.0.1:{port}/nginx/healthz") == 200, timeout_s=30,
                alive=(nginx,))
            refused = [_get(f"http://127.0.0.1:{port}/") for _ in range(4)]
            node_b.full = False
            admitted = [_get(f"http://127.0.0.1:{port}/") for _ in range(3)]
    assert [status for status, _, _ in refused] == [503] * 4, refused
    assert all(retry == "5" for _, _, retry in refused), refused
    assert {body for _, body, _ in refused} <= {"full\n", "no node\n"}
    assert admitted == [(200, "admitted\n", None)] * 3
    assert http_status(f"http://127.0.0.1:{port}/nginx/healthz") == 0  # nginx is gone
