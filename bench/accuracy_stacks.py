"""The stacks ``python -m bench accuracy`` measures, read from the same config files a
user serves (``voicebot serve --config server/configs/bench-<stack>.yaml``).

A stack is a server configuration file.  Its engines are built in this process
for the word-error measures (exactly as a cell builds them, from the file's
``engines`` section) and the file is served, unchanged, for the call measures.
``overrides`` (``asr.model=/some/folder``) replace engine options, e.g. to point
at a model folder that is not installed in ``models_dir``; the call measures
then serve a copy of the file with the overrides applied, every relative path
in it made absolute.  The report lists every override.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from server.config import ServerConfig, load_config
from server.paths import default_configs_dir
from voicebot.dialog.loader import load_scenario
from voicebot.dialog.scenario import Scenario
from voicebot.engines.registry import EngineOptions, build_engine
from voicebot.errors import ConfigError
from voicebot.vad.endpointer import EndpointConfig

__all__ = ["CONFIGS_DIR", "Stack", "endpoint_config", "load_stack", "parse_overrides",
           "served_config_text"]

log = logging.getLogger(__name__)

CONFIGS_DIR = default_configs_dir()
_PATH_KEYS = ("scenarios_dir", "models_dir", "manifest", "tls_cert_file", "tls_key_file")
_MODEL_KEYS = ("model", "voice", "model_path")


@dataclass(frozen=True, slots=True)
class Stack:
    """One stack: its name, its config file, the loaded configuration, any overrides."""

    name: str
    config_path: Path
    config: ServerConfig
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        asr = self.config.engines.options.get("asr", {})
        window = asr.get("encoder_window", "30s") if self.config.engines.asr == "whisper" else None
        return f"{self.name} ({self.config.engines.asr}" + (f", {window} window)" if window
                                                             else ")")

    def engine_options(self, kind: str) -> EngineOptions:
        """What the server passes the ``kind`` engine (app.py / cells), overrides applied."""
        c = self.config
        return EngineOptions(threads=c.engine_threads, models_dir=c.models_dir,
                             options=dict(c.engines.options.get(kind, {})), manifest=c.manifest)

    def build(self, kind: str) -> Any:
        """Build the stack's ``kind`` engine as the server does."""
        return build_engine(kind, self.config.engines.names()[kind], self.engine_options(kind))

    def scenario(self) -> Scenario:
        return load_scenario(self.config.scenarios_dir / f"{self.config.default_scenario}.yaml")

    def install_models(self) -> list[str]:
        """Pull the manifest models the stack names that ``models_dir`` lacks (what
        ``voicebot models pull NAME`` does); returns the names pulled."""
        from voicebot.modelhub.manifest import load_manifest
        from voicebot.modelhub.store import inspect_model, pull

        c = self.config
        manifest = load_manifest(c.manifest)
        pulled: list[str] = []
        for options in c.engines.options.values():
            for key in _MODEL_KEYS:
                value = options.get(key)
                entry = manifest.find(value) if isinstance(value, str) else None
                if entry is None or not entry.downloadable \
                        or inspect_model(entry, c.models_dir).complete:
                    continue
                log.info("pulling %s into %s", entry.name, c.models_dir)
                pull(manifest, entry.name, c.models_dir)
                pulled.append(entry.name)
        return pulled

    def models(self) -> dict[str, str]:
        """Engine name and model of each kind, as configured (after overrides)."""
        out: dict[str, str] = {}
        for kind, name in self.config.engines.names().items():
            options = self.config.engines.options.get(kind, {})
            shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
            out[kind] = f"{name}" + (f" ({shown})" if shown else "")
        return out


def parse_overrides(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["asr.model=/x", "asr.fallback=false"]`` → ``{"asr": {"model": "/x",
    "fallback": False}}`` (values read as YAML scalars, model paths made absolute)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        kind, dot, option = key.partition(".")
        if not sep or not dot or kind not in ("vad", "asr", "nlu", "tts") or not option:
            raise ConfigError(f"an override is KIND.OPTION=VALUE (kind vad|asr|nlu|tts), "
                              f"not {item!r}")
        typed: Any = value
        if option in _MODEL_KEYS and "/" in value:
            typed = str(Path(value).expanduser().resolve())
        else:
            typed = yaml.safe_load(value) if value else value  # 0, false, 1.5 as in YAML
        out.setdefault(kind, {})[option] = typed
    return out


def load_stack(name_or_path: str, *, overrides: Mapping[str, Mapping[str, Any]] | None = None,
               configs_dir: Path = CONFIGS_DIR) -> Stack:
    """A stack by name (``lite`` → ``configs_dir/bench-lite.yaml``) or config file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = configs_dir / f"bench-{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("bench-") for p in configs_dir.glob("bench-*.yaml"))
        raise ConfigError(f"no stack config {path} (known stacks: {', '.join(known)})")
    config = load_config(path)
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    if overrides:
        options = {k: dict(v) for k, v in config.engines.options.items()}
        for kind, values in overrides.items():
            options.setdefault(kind, {}).update(values)
        config = replace(config, engines=replace(config.engines, options=options))
    name = path.stem.removeprefix("bench-")
    return Stack(name=name, config_path=path.resolve(), config=config, overrides=overrides)


def served_config_text(stack: Stack) -> str:
    """The YAML to serve: the stack's file as is, or with its overrides applied and
    its relative paths made absolute (so it can be written anywhere)."""
    raw = stack.config_path.read_text(encoding="utf-8")
    if not stack.overrides:
        return raw
    data: dict[str, Any] = yaml.safe_load(raw) or {}
    base = stack.config_path.parent
    for key in _PATH_KEYS:
        if key in data:
            data[key] = str((base / str(data[key])).resolve())
    engines = data.setdefault("engines", {})
    options = engines.setdefault("options", {})
    for kind, values in list(options.items()):
        for key in _MODEL_KEYS:
            value = values.get(key)
            if isinstance(value, str) and "/" in value and not value.startswith("synthetic:"):
                values[key] = str((base / value).resolve())
        options[kind] = values
    for kind, values in stack.overrides.items():
        options.setdefault(kind, {}).update(values)
    if "scenarios_dir" not in data:
        data["scenarios_dir"] = str(stack.config.scenarios_dir)
    if "models_dir" not in data:
        data["models_dir"] = str(stack.config.models_dir)
    header = f"# {stack.config_path} with overrides {stack.overrides}\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def endpoint_config(scenario: Scenario) -> EndpointConfig:
    """The endpointing a call of ``scenario`` gets (voicebot.session: defaults, then the
    scenario's ``settings.endpointing``)."""
    return EndpointConfig().updated(scenario.settings.endpointing)
