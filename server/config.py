"""Server configuration: defaults < stack < YAML config file < environment < CLI flags.

The stack (server/stacks.py; ``stack:`` in the file, env ``VOICEBOT_STACK``, flag
``--stack``: the last of these set wins) supplies the engines and their options;
the file's ``engines:`` section then overrides pieces of it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from voicebot.engines.registry import ENGINE_NAMES
from voicebot.errors import ConfigError

from .auth import AuthConfig, parse_auth_config
from .call_webhook import CallWebhookConfig, parse_call_webhook
from .cpus import default_cpus
from .egress import WebhookConfig, parse_webhook_config
from .paths import (
    REPO_ROOT,
    default_data_dir,
    default_manifest,
    default_models_dir,
    default_scenarios_dir,
    resolve_config_path,
)
from .stacks import DEFAULT_STACK, EngineConfig, get_stack

__all__ = ["REPO_ROOT", "TURN_TAKING_KEYS", "EngineConfig", "ServerConfig", "load_config",
           "parse_cpus", "without_auth"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    # A checkout's scenarios/, models/cache/, models/manifest.yaml; installed: the packaged
    # scenarios and manifest, models in the per-user cache folder (server/paths.py).
    scenarios_dir: Path = field(default_factory=default_scenarios_dir)
    default_scenario: str = "bank_card"
    models_dir: Path = field(default_factory=default_models_dir)
    manifest: Path = field(default_factory=default_manifest)
    worker_threads: int = 2
    engine_threads: int = 1
    max_message_bytes: int = 64 * 1024
    cpus: tuple[int, ...] = field(default_factory=default_cpus)
    """Default: the affinity cut down to the cgroup CPU quota (server/cpus.py)."""
    dialogs_per_core: int = 2
    cells: bool = True
    """One pinned worker process per CPU runs the engines (false: threads in this process)."""
    slo_p95_ms: float = 1500.0
    drain_timeout_s: float = 30.0
    speculative_asr_ms: int = 0
    speculative_replies: bool = False  # with speculative ASR: NLU + first sentence ahead
    turn_policy: str = "silence"
    """How a caller's turn ends in scenarios whose ``endpointing`` does not say: ``silence``
    (the endpointer's fixed pause) or ``model`` (the end-of-turn policy; it needs
    ``engines: turn``, an end-of-turn model: checked at start, server/turn_setup.py)."""
    turn_taking: Mapping[str, float] = field(default_factory=dict)
    """Server-wide values of the end-of-turn policy's keys (:data:`TURN_TAKING_KEYS`) for
    scenarios whose ``endpointing`` does not set them (checked in server/turn_setup.py)."""
    log_level: str = "INFO"
    stack: str = DEFAULT_STACK
    """The named stack (server/stacks.py) ``engines`` started from."""
    engines: EngineConfig = field(
        default_factory=lambda: get_stack(DEFAULT_STACK).engines.merged({}))
    pull_models: bool = True
    """Pull a missing manifest model of the engines at start (false: refuse to start and
    name the ``voicebot models pull`` command)."""
    # Every wait has a bound (docs/security.md, "Timeouts and limits"): a connection that
    # holds a slot and sends nothing, or no audio, is closed with 4408.
    handshake_timeout_s: float = 10.0
    first_message_timeout_s: float = 10.0
    no_audio_timeout_s: float = 10.0
    max_audio_ahead_ms: float = 2000.0
    """A caller may run this far ahead of real time; past it, the server stops reading
    its socket until real time catches up (TCP backpressure)."""
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 3.0
    job_timeout_s: float = 10.0
    stuck_job_s: float = 30.0
    admin_host: str | None = None
    admin_port: int | None = None
    """Serve /metrics (and /healthz, /readyz) on this port apart from the call port."""
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    """The ``auth:`` section (server/auth.py, docs/security.md); ``auth: none`` (or env
    ``VOICEBOT_AUTH=none``) turns authentication off on purpose."""
    # What calls leave behind (docs/records.md).
    data_dir: Path = field(default_factory=default_data_dir)
    records: str = "sqlite"
    """Call records: ``sqlite`` (``data_dir/calls.sqlite3``), ``sqlite:///path``,
    ``postgresql://...`` (env ``VOICEBOT_RECORDS`` keeps a password out of the file), or
    ``none``."""
    records_retention_days: float = 0.0
    """Records of calls that ended longer ago are deleted (hourly); 0 keeps them."""
    recordings: bool = False
    """A stereo WAV per call (caller left, bot right), paused for sensitive slots."""
    recordings_dir: Path | None = None
    """Default ``data_dir/recordings``."""
    log_format: str = "text"
    """``text``, or ``json``: one JSON object per line, with the call id."""
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    """Egress of every webhook (docs/records.md): allowed hosts, private addresses,
    headers; the scenario's webhook actions and the end-of-call webhook."""
    call_webhook: CallWebhookConfig | None = None
    """POST each call's record (masked) here when the call ends, signed, with retries."""
    # The GPU backend (server/devices.py, README "GPU backend").
    device: str = "cpu"
    """``cpu`` or ``cuda``: where the ASR and the TTS run (cuda: the GPU worker, batched
    across calls); VAD, NLU and the turn model stay on CPU unless ``devices`` says."""
    devices: Mapping[str, str] = field(default_factory=dict)
    """Per engine kind, overriding ``device`` (e.g. ``{asr: cuda, tts: cpu}``)."""
    gpu_device: int = 0
    """The CUDA device index this server drives (one GPU per server process)."""
    dialogs_per_gpu: int = 16
    """Live dialogs the GPU takes (with the same latency rule as a cell); then 503."""
    gpu_max_batch: int = 8
    """Most requests of one kind in one GPU batch."""
    demo: bool = False
    """Serve the browser softphone at ``/demo`` on the call port (server/demo.py); the
    development config ``server/configs/dev.yaml`` (``make serve``) turns it on."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is out of range 0..65535")
        for name in ("worker_threads", "engine_threads", "max_message_bytes", "dialogs_per_core",
                     "dialogs_per_gpu", "gpu_max_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        available = os.sched_getaffinity(0)
        if not self.cpus or not set(self.cpus) <= available:
            raise ConfigError(f"cpus {list(self.cpus)} are not all available (have "
                              f"{sorted(available)})")
        if self.slo_p95_ms <= 0 or self.drain_timeout_s < 0:
            raise ConfigError("slo_p95_ms must be positive and drain_timeout_s not negative")
        if self.speculative_asr_ms < 0:
            raise ConfigError("speculative_asr_ms must be 0 (off) or positive")
        if self.turn_policy not in ("silence", "model"):
            raise ConfigError(f"turn_policy must be silence or model, not {self.turn_policy!r}")
        for name in _FLOATS:
            if (name not in ("slo_p95_ms", "drain_timeout_s", "records_retention_days")
                    and getattr(self, name) <= 0):
                raise ConfigError(f"{name} must be positive")
        if self.admin_port is not None and not 0 <= self.admin_port <= 65535:
            raise ConfigError(f"admin_port {self.admin_port} is out of range 0..65535")
        if self.device not in ("cpu", "cuda") or not set(self.devices.values()) <= {"cpu",
                                                                                   "cuda"}:
            raise ConfigError(f"device must be cpu or cuda (device {self.device!r}, devices "
                              f"{dict(self.devices)})")
        if not set(self.devices) <= {"vad", "asr", "nlu", "tts", "turn"}:
            raise ConfigError(f"devices: unknown engine kind(s) {sorted(self.devices)} "
                              "(known: vad, asr, nlu, tts, turn)")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, not {self.log_format!r}")
        if not self.records_retention_days >= 0:
            raise ConfigError("records_retention_days must be 0 (keep) or positive")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ConfigError("tls_cert_file and tls_key_file go together")
        for kind, name in self.engines.all_names().items():
            if name not in ENGINE_NAMES[kind]:
                known = ", ".join(ENGINE_NAMES[kind])
                raise ConfigError(f"unknown {kind} engine {name!r}; known: {known}")


_PATHS = ("scenarios_dir", "models_dir", "manifest", "tls_cert_file", "tls_key_file", "data_dir",
          "recordings_dir")
_INTS = ("port", "worker_threads", "engine_threads", "max_message_bytes", "dialogs_per_core",
         "speculative_asr_ms", "admin_port", "gpu_device", "dialogs_per_gpu", "gpu_max_batch")
_FLOATS = ("slo_p95_ms", "drain_timeout_s", "handshake_timeout_s", "first_message_timeout_s",
           "no_audio_timeout_s", "max_audio_ahead_ms", "heartbeat_interval_s",
           "heartbeat_timeout_s", "job_timeout_s", "stuck_job_s", "records_retention_days")


def parse_cpus(value: Any) -> tuple[int, ...]:
    """``"0-2,5"``, ``[0, 1]`` or ``3`` → ``(0, 1, 2, 5)`` (the taskset list format)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list | tuple):
        parts = [str(v) for v in value]
    else:
        parts = str(value).split(",")
    cpus: set[int] = set()
    try:
        for part in (p.strip() for p in parts):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError as exc:
        raise ConfigError(f"cpus must look like 0-3,6 (got {value!r})") from exc
    return tuple(sorted(cpus))


def _coerce(key: str, value: Any, base: Path) -> Any:
    if key in _PATHS:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else base / path
    if key == "cpus":
        return parse_cpus(value)
    if key == "turn_taking":
        if not isinstance(value, Mapping) or not set(value) <= set(TURN_TAKING_KEYS):
            raise ConfigError(f"turn_taking takes {', '.join(TURN_TAKING_KEYS)}: "
                              f"a mapping of numbers, not {value!r}")
        try:
            return {str(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"turn_taking values must be numbers, not {value!r}") from exc
    if key == "devices":
        if not isinstance(value, Mapping):
            raise ConfigError(f"devices must map an engine kind to cpu or cuda, not {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    if key in _FLOATS:
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be a number, not {value!r}") from exc
    if key in _INTS:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} must be a whole number, not {value!r}") from exc
    if key in _BOOLS:
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value if isinstance(value, bool) else str(value).lower() == "true"
    return str(value)


_BOOLS = ("cells", "pull_models", "recordings", "demo", "speculative_replies")
TURN_TAKING_KEYS = ("short_pause_ms", "max_silence_ms", "digits_max_silence_ms", "turn_threshold")
_MODEL_KEYS = ("model", "voice", "model_path")


def _resolve_model_paths(options: Any, base: Path) -> dict[str, dict[str, Any]]:
    """Engine options naming a model by relative path are relative to the config file."""
    if not isinstance(options, Mapping) or not all(
        isinstance(v, Mapping) for v in options.values()
    ):
        raise ConfigError("'engines.options' must map an engine kind to a mapping of options")
    resolved: dict[str, dict[str, Any]] = {}
    for kind, opts in options.items():
        resolved[kind] = dict(opts)
        for key in _MODEL_KEYS:
            value = opts.get(key)
            if isinstance(value, str) and "/" in value and not value.startswith("synthetic:"):
                path = Path(value).expanduser()
                resolved[kind][key] = str(path if path.is_absolute() else base / path)
    return resolved


def _from_mapping(config: ServerConfig, data: Mapping[str, Any], base: Path,
                  env: Mapping[str, str]) -> ServerConfig:
    known = {f.name for f in fields(ServerConfig)}
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown configuration key {key!r}")
        if key in ("webhooks", "call_webhook"):  # after the loop: one needs the other
            continue
        if key == "stack":  # chosen before any layer applies (load_config)
            if not isinstance(value, str):
                raise ConfigError(f"stack must be a name, not {value!r}")
            continue
        if key == "auth":
            changes[key] = parse_auth_config(value, env=env, base_dir=base)
        elif key == "engines":
            if not isinstance(value, Mapping):
                raise ConfigError("'engines' must be a mapping")
            value = dict(value)
            if "options" in value:
                value["options"] = _resolve_model_paths(value["options"], base)
            changes[key] = config.engines.merged(value)
        else:
            changes[key] = _coerce(key, value, base)
    if "webhooks" in data:
        changes["webhooks"] = parse_webhook_config(data["webhooks"], env)
    if "call_webhook" in data:
        policy = changes.get("webhooks", config.webhooks).policy
        changes["call_webhook"] = parse_call_webhook(data["call_webhook"], env, policy=policy)
    return replace(config, **changes)


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Build the configuration: defaults, the stack, then ``path`` (YAML), env, then
    ``overrides``. A ``path`` that is a bare name and no file here (``reference``,
    ``bench-lite.yaml``) names a shipped stack config (server/configs/).

    Environment: ``VOICEBOT_HOST``, ``VOICEBOT_PORT``, ``VOICEBOT_STACK``,
    ``VOICEBOT_MODELS_DIR``, ``VOICEBOT_LOG_LEVEL``, ``VOICEBOT_ADMIN_PORT``,
    ``VOICEBOT_AUTH=none``, ``VOICEBOT_RECORDS``, ``VOICEBOT_DATA_DIR``, ``VOICEBOT_DEVICE``;
    the secrets of the ``auth:`` section are read from the variables (or files) it names.
    """
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    data: Mapping[str, Any] = {}
    if path is not None:
        path = resolve_config_path(Path(path))
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: the configuration must be a mapping")
        if str(env.get("VOICEBOT_AUTH", "")).strip().lower() == "none":
            data = {k: v for k, v in data.items() if k != "auth"}  # its secrets not needed
    config = _stack_base(overrides.get("stack") or env.get("VOICEBOT_STACK")
                         or data.get("stack") or DEFAULT_STACK)
    if path is not None:
        config = _from_mapping(config, data, Path(path).resolve().parent, env)
    from_env = {
        key: env[var]
        for key, var in (
            ("host", "VOICEBOT_HOST"),
            ("port", "VOICEBOT_PORT"),
            ("models_dir", "VOICEBOT_MODELS_DIR"),
            ("log_level", "VOICEBOT_LOG_LEVEL"),
            ("admin_port", "VOICEBOT_ADMIN_PORT"),
            ("auth", "VOICEBOT_AUTH"),
            ("records", "VOICEBOT_RECORDS"),
            ("data_dir", "VOICEBOT_DATA_DIR"),
            ("device", "VOICEBOT_DEVICE"),
        )
        if env.get(var)
    }
    if "auth" in from_env and from_env["auth"].strip().lower() != "none":
        raise ConfigError("VOICEBOT_AUTH can only be 'none'; configure authentication in the "
                          "config file's auth: section")
    config = _from_mapping(config, from_env, Path.cwd(), env)
    return _from_mapping(config, overrides, Path.cwd(), env)


def without_auth(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a command that opens no call port (``voicebot models``, ``voicebot
    calls``): ``VOICEBOT_AUTH=none``, so the ``auth:`` section's secrets need not be set."""
    return {**env, "VOICEBOT_AUTH": "none"}


def _stack_base(name: Any) -> ServerConfig:
    """The defaults with the stack ``name``'s engines and settings."""
    if not isinstance(name, str):
        raise ConfigError(f"stack must be a name, not {name!r}")
    stack = get_stack(name.strip())
    return replace(ServerConfig(stack=stack.name, engines=stack.engines.merged({})),
                   **stack.settings)
