"""A throwaway PostgreSQL server for tests: ``with postgres_server() as url: ...``.

The server binaries of the Debian package ``postgresql`` (``/usr/lib/postgresql/*/bin``:
``initdb``, ``pg_ctl``) make a cluster in a temporary folder (trust authentication,
superuser ``voicebot``), serve it on 127.0.0.1 at a free port (its socket in that
folder), and stop it (``pg_ctl stop -m immediate``) and delete the folder afterwards.
PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` OS
user and both commands run through ``runuser -u postgres --``. Without the binaries the
test is skipped with the package to install.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["SKIP_REASON", "find_bindir", "fresh_database", "postgres_server"]

SKIP_REASON = ("PostgreSQL server binaries (initdb, pg_ctl) not found under "
               "/usr/lib/postgresql/*/bin: install the Debian package 'postgresql' "
               "(apt-get install postgresql)")


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/VERSION/bin`` with ``initdb`` and ``pg_ctl``."""
    def version(path: Path) -> tuple[int, ...]:
        digits = path.parent.name.split(".")
        return tuple(int(d) for d in digits if d.isdigit())

    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin")
             if (d / "initdb").is_file() and (d / "pg_ctl").is_file()]
    return max(found, key=version) if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(command: list[str], *, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}\n"
                           f"{result.stderr}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a PostgreSQL server; yield ``postgresql://voicebot@127.0.0.1:PORT/postgres``."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(SKIP_REASON)
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if owner is None or runuser is None:
            pytest.skip("running as root needs the 'postgres' OS user and runuser "
                        "(the Debian package 'postgresql' creates the user)")
        prefix = [runuser, "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="voicebot-pg-"))
    data, log = base / "data", base / "server.log"
    if owner is not None:
        os.chown(base, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
              "voicebot", "-E", "UTF8", "--locale=C", "--no-sync"], what="initdb")
        options = (f"-k {base} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c shared_buffers=16MB -c max_connections=40")
        started = True
        _run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
             what=f"pg_ctl start (log {log})")
        yield f"postgresql://voicebot@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*pg_ctl, "stop", "-m", "immediate", "-w"], capture_output=True,
                           timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(url: str) -> str:
    """Create an empty database on the server of ``url``; its URL."""
    import psycopg

    name = f"records_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"
