"""The rendered Kubernetes base of docker/k8s/, read as the cluster would get it.

:func:`render` runs ``kubectl kustomize docker/k8s`` (the kubectl on PATH, or the one
``VOICEBOT_KUBECTL`` names, e.g. an older client to check compatibility) and returns a
:class:`Manifests`: the objects by kind, plus what the tests compare across them (the
server configuration the ConfigMap carries, container ports by name, the preStop delay).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from server.config import ServerConfig, load_config

__all__ = [
    "K8S_DIR",
    "Manifests",
    "cpu_millicores",
    "find_kubectl",
    "labels_match",
    "prestop_delay_s",
    "render",
]

K8S_DIR = Path(__file__).resolve().parents[2] / "docker" / "k8s"
_RENDER_TIMEOUT_S = 120
_SLEEP = re.compile(r"sleep\D{0,3}(\d+(?:\.\d+)?)")
_CPU = re.compile(r"^(\d+)(m?)$")

Obj = dict[str, Any]


def find_kubectl() -> str | None:
    """``VOICEBOT_KUBECTL`` if set, else ``kubectl`` on PATH, else None."""
    return os.environ.get("VOICEBOT_KUBECTL") or shutil.which("kubectl")


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifests:
    objects: tuple[Obj, ...]
    kubectl_stderr: str

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> Obj:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
        return found[0]

    @property
    def pod_spec(self) -> Obj:
        spec: Obj = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    @property
    def pod_labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.one("Deployment")["spec"]["template"]["metadata"]["labels"]
        return labels

    @property
    def container(self) -> Obj:
        containers: list[Obj] = self.pod_spec["containers"]
        assert len(containers) == 1, "one server container per pod"
        return containers[0]

    def container_port(self, name: str) -> int:
        ports = {p["name"]: int(p["containerPort"]) for p in self.container["ports"]}
        assert name in ports, f"no container port named {name!r} (have {sorted(ports)})"
        return ports[name]

    def config_text(self) -> str:
        """The server configuration file the Deployment passes with ``--config``."""
        args = list(self.container.get("command", [])) + list(self.container.get("args", []))
        path = Path(args[args.index("--config") + 1])
        mounts = {m["mountPath"]: m["name"] for m in self.container["volumeMounts"]}
        volume_name = mounts[str(path.parent)]
        volume = next(v for v in self.pod_spec["volumes"] if v["name"] == volume_name)
        config_map = next(c for c in self.of_kind("ConfigMap")
                          if c["metadata"]["name"] == volume["configMap"]["name"])
        text: str = config_map["data"][path.name]
        return text

    def server_config(self, env: Mapping[str, str]) -> ServerConfig:
        """The ConfigMap's configuration through the server's own loader."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "voicebot.yaml"
            path.write_text(self.config_text(), encoding="utf-8")
            return load_config(path, env=env)


def render(kubectl: str, folder: Path = K8S_DIR) -> Manifests:
    """``kubectl kustomize folder``: every object it renders (AssertionError if it fails)."""
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True,
                            text=True, timeout=_RENDER_TIMEOUT_S, check=False)
    assert result.returncode == 0, f"kubectl kustomize failed: {result.stderr}"
    objects = tuple(o for o in yaml.safe_load_all(result.stdout) if o)
    return Manifests(objects=objects, kubectl_stderr=result.stderr)


def labels_match(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A non-empty ``matchLabels`` selector (no expressions) that ``labels`` satisfy."""
    match: Mapping[str, str] = selector.get("matchLabels", selector)
    assert match, "an empty selector selects everything"
    assert not selector.get("matchExpressions"), "only matchLabels is checked here"
    return all(labels.get(k) == v for k, v in match.items())


def prestop_delay_s(container: Obj) -> float:
    """How long the container's preStop hook waits (0 without one)."""
    hook: Obj = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = " ".join(hook.get("exec", {}).get("command", []))
    found = _SLEEP.search(command)
    assert not command or found, f"cannot tell how long preStop {command!r} waits"
    return float(found.group(1)) if found else 0.0


def cpu_millicores(quantity: str | int) -> int:
    """``"2"`` → 2000, ``"500m"`` → 500 (the forms a CPU quantity takes here)."""
    found = _CPU.match(str(quantity))
    assert found, f"unexpected CPU quantity {quantity!r}"
    value = int(found.group(1))
    return value if found.group(2) else value * 1000
