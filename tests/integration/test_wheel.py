"""The wheel works on its own: built from this checkout, installed into a fresh venv
without network, and ``voicebot`` run from an unrelated folder (models list, serve the
``lite`` stack, place a call) with the packaged scenarios, manifest and configs.

The new venv gets its dependencies from this venv's site-packages through a ``.pth``
line: a folder added that way is not itself scanned for ``.pth`` files, so this venv's
editable ``voicebot`` finder stays inactive there and ``voicebot`` must come from the
installed wheel (asserted).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MODELS_DIR, REPO, free_port, stop_server, wait_ready

__all__: list[str] = []

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "voicebot", "server", "scenarios",
           "models/manifest.yaml")
"""What the wheel is built from (a copy: the build writes build/ and *.egg-info)."""


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None,
         timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout_s, check=False)
    assert done.returncode == 0, (f"{command} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` of a copy of the checkout's sources."""
    version = importlib.metadata.version("setuptools")
    if int(version.split(".")[0]) < 77:
        pytest.skip(f"setuptools {version} in this venv cannot build the wheel offline "
                    "(PEP 639 licence needs >= 77): `make install` installs it")
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "-w", dist, src, cwd=src)
    [built] = dist.glob("voicebot-*.whl")
    return built


def test_server_modules_import_each_other_relatively() -> None:
    """server/ installs as voicebot_server: an absolute ``server`` import there would fail
    in the wheel, or load a second copy of a module where both names are importable."""
    absolute = re.compile(r"^\s*(from\s+server(\.|\s+import)|import\s+server\b)", re.M)
    found = [f"{path.relative_to(REPO)}: {match.group(0).strip()}"
             for folder in ("server", "voicebot") for path in sorted((REPO / folder).rglob("*.py"))
             for match in absolute.finditer(path.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def _python_files(folder: Path, package: str) -> set[str]:
    return {f"{package}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.py")
            if "__pycache__" not in p.parts}


def test_the_wheel_holds_two_packages_and_the_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {name.split("/")[0] for name in names}
    info = next(top for top in tops if top.endswith(".dist-info"))
    assert tops == {"voicebot", "voicebot_server", info}  # no server/, no loadtests/
    # Every module of the checkout, in the package it installs as (pyproject lists them).
    assert _python_files(REPO / "voicebot", "voicebot") <= names
    assert _python_files(REPO / "server", "voicebot_server") <= names
    data = {"voicebot_server/models/manifest.yaml", "voicebot/py.typed",
            *(f"voicebot_server/scenarios/{p.name}" for p in (REPO / "scenarios").glob("*.yaml")),
            *(f"voicebot_server/configs/{p.name}"
              for p in (REPO / "server" / "configs").glob("*.yaml")),
            *(f"voicebot_server/demo/{p.name}" for p in (REPO / "server" / "demo").iterdir())}
    assert data <= names
    assert not [n for n in names if "/cache/" in n or n.endswith((".onnx", ".bin"))]
    assert f"{info}/licenses/LICENSE" in names
    with zipfile.ZipFile(wheel) as archive:
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
    assert "voicebot = voicebot_server.cli:main" in entry_points
    assert "License-Expression: Apache-2.0" in metadata


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (--no-deps --no-index) and this venv's
    site-packages on its path through a .pth line."""
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", root, cwd=root)
    python = root / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel, cwd=root)
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                     cwd=root).stdout.strip())
    (site / "voicebot_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("elsewhere")


def _env(venv: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VOICEBOT_", "PYTHON", "VIRTUAL_ENV", "XDG_CACHE_HOME"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return {**env, "VIRTUAL_ENV": str(venv), **extra}


def test_voicebot_comes_from_the_wheel(venv: Path, elsewhere: Path) -> None:
    probe = ("import importlib.util as u, json, voicebot, voicebot_server\n"
             "print(json.dumps([voicebot.__file__, voicebot_server.__file__,\n"
             "                  u.find_spec('server'), u.find_spec('loadtests')]))")
    found = json.loads(_run(venv / "bin" / "python", "-c", probe, cwd=elsewhere,
                            env=_env(venv)).stdout)
    site = venv / "lib"
    assert all(Path(path).is_relative_to(site) for path in found[:2]), found
    assert found[2:] == [None, None]  # the generic names are not installed


def test_models_list_uses_the_packaged_manifest_and_the_user_cache(venv: Path,
                                                                   elsewhere: Path) -> None:
    xdg = elsewhere / "xdg-cache"
    listed = _run(venv / "bin" / "voicebot", "models", "list", cwd=elsewhere,
                  env=_env(venv, XDG_CACHE_HOME=str(xdg)))
    manifest = next((venv / "lib").glob("python*/site-packages/voicebot_server/models/"
                                        "manifest.yaml"))
    assert f"models in {xdg / 'voicebot' / 'models'} (manifest {manifest})" in listed.stderr
    assert "whisper-tiny.en" in listed.stdout and "not installed" in listed.stdout
    listed = _run(venv / "bin" / "voicebot", "models", "list", cwd=elsewhere,
                  env=_env(venv, VOICEBOT_MODELS_DIR=str(MODELS_DIR)))
    assert f"models in {MODELS_DIR} " in listed.stderr
    assert not xdg.exists()  # listing creates nothing


@pytest.fixture(scope="module")
def served(venv: Path, elsewhere: Path) -> Iterator[str]:
    """``voicebot serve --stack lite`` of the installed wheel, from an unrelated folder."""
    if not sorted(MODELS_DIR.glob("minilm-l6/*/minilm-l6-int8.onnx")):
        pytest.skip(f"the lite stack's NLU model is not built in {MODELS_DIR}: run `make test`'s "
                    "set-up (or `voicebot models pull --stack lite`) first")
    port = free_port()
    env = _env(venv, VOICEBOT_MODELS_DIR=str(MODELS_DIR), XDG_CACHE_HOME=str(elsewhere / "xdg"))
    log_path = elsewhere / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([venv / "bin" / "voicebot", "serve", "--stack", "lite",
                                 "--port", str(port), "--no-pull"],
                                cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}", log_path)
        yield f"ws://127.0.0.1:{port}"
    finally:
        stop_server(proc, log_path)


def test_an_installed_server_walks_the_lost_card_flow(venv: Path, elsewhere: Path,
                                                      served: str) -> None:
    done = _run(venv / "bin" / "voicebot", "call", "--url", served, "--text", "I lost my card",
                "--text", "yes", cwd=elsewhere, env=_env(venv), timeout_s=120)
    turns = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert turns[0]["bot_text"].startswith("Hello"), turns
    assert turns[1]["intent"] == "lost_card", turns
    assert "blocked" in (turns[2]["bot_text"] or ""), turns
    assert all(t["latency_ms"] is not None for t in turns), turns
    # The installed server's own loggers (voicebot_server.*) log at the configured INFO.
    log = (elsewhere / "server.log").read_text()
    assert re.search(r"INFO voicebot_server\.serving: voicebot listening", log), log[-2000:]
