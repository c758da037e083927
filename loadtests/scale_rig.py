"""The rig of ``make scale-test``: its processes and their configuration.

The processes (voicebot nodes, nginx, Prometheus, Locust) each start in their own
session with their log in the run's folder, and are stopped (then killed with their
whole group) when their block ends, even on failure.

nginx runs as the user running the test, with every path (pid, temp, logs) in the run's
folder; its main config includes the repository's ``docker/nginx/voicebot.conf`` as
compose does, and writes the two deployment files beside it (the upstream nodes on
loopback ports, the listen line).  Prometheus scrapes both nodes' ``/metrics`` on their
call ports (served to loopback peers) every second, into a TSDB in the run's folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ROOT", "Managed", "find_binary", "free_port", "http_status", "managed",
           "nginx_command", "prometheus_command", "promql", "tail", "wait_until",
           "write_nginx", "write_prometheus"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
NGINX_SITE = ROOT / "docker" / "nginx" / "voicebot.conf"
# Each node's two entries, as in docker/nginx/voicebot-upstreams.conf (voicebot.conf says why).
UPSTREAM_PARAMS = ("max_fails=1 fail_timeout=10s", "backup max_fails=0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else in the sbin folders a non-root PATH leaves out."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


def http_status(url: str, *, timeout_s: float = 2.0) -> int:
    """The HTTP status of GET ``url``; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def tail(path: Path, *, lines: int = 40) -> str:
    """The last ``lines`` lines of a log, headed by its path."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"--- {path}: {exc}"
    return "\n".join([f"--- {path} (last {len(text)} lines)", *text])


@dataclass(frozen=True, kw_only=True, slots=True)
class Managed:
    """A started process and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def exited(self) -> bool:
        return self.proc.poll() is not None


@contextlib.contextmanager
def managed(name: str, command: Sequence[str], *, log_dir: Path,
            env: Mapping[str, str] | None = None, stop_grace_s: float = 10.0,
            stop_signal: int = signal.SIGTERM) -> Iterator[Managed]:
    """``command`` running until the block ends; then ``stop_signal`` to it, and after
    ``stop_grace_s`` SIGKILL to its whole process group (a node's cells too)."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(list(command), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env or os.environ),
                                start_new_session=True)
    log.info("started %s (pid %d): %s", name, proc.pid, " ".join(command))
    try:
        yield Managed(name=name, proc=proc, log_path=log_path)
    finally:
        _stop(proc, stop_signal, stop_grace_s)


def _stop(proc: subprocess.Popen[bytes], stop_signal: int, grace_s: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # Whatever is left of its group (a node's cells, nginx's workers) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def wait_until(what: str, check: Callable[[], bool], *, timeout_s: float,
               alive: Sequence[Managed] = (), interval_s: float = 0.25) -> None:
    """Poll ``check`` until it holds; RuntimeError (naming the logs) when one of
    ``alive`` exits first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not check():
        for process in alive:
            if process.exited():
                raise RuntimeError(f"{process.name} exited ({process.proc.returncode}) while "
                                   f"waiting for {what}:\n{tail(process.log_path)}")
        if time.monotonic() > deadline:
            logs = "\n".join(tail(p.log_path) for p in alive)
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{logs}")
        time.sleep(interval_s)


# ---------------------------------------------------------------------- nginx


def write_nginx(folder: Path, *, listen_port: int, upstream_ports: Sequence[int]) -> Path:
    """nginx's main config in ``folder`` (with its temp and log paths there) including
    ``docker/nginx/voicebot.conf``, and that file's two deployment files beside it."""
    for sub in ("logs", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "voicebot-upstreams.conf").write_text("".join(
        f"server 127.0.0.1:{port} {params};\n"
        for params in UPSTREAM_PARAMS for port in upstream_ports))
    (folder / "voicebot-listen.conf").write_text(f"listen 127.0.0.1:{listen_port};\n")
    # As root, nginx would hand its workers to `nobody`, who cannot enter the run's folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {kind}_temp_path {folder / 'tmp' / kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = folder / "nginx.conf"
    main.write_text(
        f"# written by loadtests/scale_rig.py\n{user}worker_processes 1;\n"
        f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'logs' / 'error.log'} info;\n"
        "events {\n    worker_connections 1024;\n}\n"
        f"http {{\n{temps}    include {NGINX_SITE};\n"
        f"    access_log {folder / 'logs' / 'access.log'} voicebot_upstream;\n}}\n")
    return main


def nginx_command(binary: str, main: Path) -> list[str]:
    return [binary, "-p", str(main.parent), "-c", str(main), "-g", "daemon off;"]


# ----------------------------------------------------------------- Prometheus


def write_prometheus(folder: Path, *, targets: Mapping[str, int]) -> Path:
    """A scrape config: every node's ``/metrics`` each second, labelled ``node``."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = "".join(
        f"      - targets: ['127.0.0.1:{port}']\n        labels: {{node: '{node}'}}\n"
        for node, port in targets.items())
    path = folder / "prometheus.yml"
    path.write_text(
        "# written by loadtests/scale_rig.py\n"
        "global: {scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}\n"
        "scrape_configs:\n  - job_name: voicebot\n    metrics_path: /metrics\n"
        f"    static_configs:\n{jobs}")
    return path


def prometheus_command(binary: str, config: Path, *, port: int) -> list[str]:
    return [binary, f"--config.file={config}",
            f"--storage.tsdb.path={config.parent / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]


def promql(base_url: str, query: str, *, timeout_s: float = 5.0
           ) -> list[tuple[dict[str, str], float]]:
    """An instant PromQL query through Prometheus' HTTP API: (labels, value) per series."""
    url = f"{base_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {query!r}: {body.get('error')}")
    return [(dict(series["metric"]), float(series["value"][1]))
            for series in body["data"]["result"]]
