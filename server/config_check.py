"""Check a server configuration file without serving: the config half of ``voicebot check``.

:func:`check_config` applies the file's keys one by one through the same code
as :func:`~server.config.load_config` (so it checks exactly what a start
checks: unknown keys, types, ranges, the stack, engine names, the ``auth:``,
``webhooks:`` and ``call_webhook:`` sections, the exposure rule), records every
:class:`~server.config.ConfigError` at the line of the key it names, and goes
on with the next key; then it applies all the good keys together for the rules
that tie keys (``tls_cert_file`` with ``tls_key_file``). ``auth:`` and
``engines:`` are narrowed to their sub-keys, so that two bad endpoints are two
problems. The YAML text is linted first (voicebot.dialog.yamllint).

What depends on the machine that serves rather than on the file is a *note*,
never an error: a secret's environment variable that is not set here (a
placeholder stands in for it, so the rest of its section is still checked), a
secret file that cannot be read here, CPUs this machine lacks, a
``scenarios_dir`` given as an absolute path that does not exist here.
The ``VOICEBOT_*`` overrides of the environment are not applied: the file is
checked. :func:`scenario_paths` finds the scenarios a start would load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voicebot.dialog.yamllint import KeyPlaces, key_places, lint_yaml, scalar_places
from voicebot.dialog.yamlnodes import Problem, Severity, syntax_problem
from voicebot.errors import ConfigError

from .auth import check_exposure
from .config import ServerConfig, _from_mapping, _stack_base
from .paths import resolve_config_path
from .stacks import DEFAULT_STACK

__all__ = ["ConfigCheck", "check_config", "default_scenario_problem", "scenario_paths"]

_PLACEHOLDER = "voicebot-check-placeholder-0123456789abcdef"  # long enough for any secret
_NARROW: Mapping[str, tuple[str, ...]] = {"engines": (), "auth": ("token_keys",)}
"""Sections whose sub-keys are checked one by one (with these sub-keys as context)."""
_MACHINE = ("are not all available", "_file: cannot read")
"""ConfigError messages about this machine rather than the file: notes."""


class _ProbeEnv(Mapping[str, str]):
    """The environment, where any variable it lacks reads as a placeholder secret; the
    names asked for and lacking are kept in :attr:`missing`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.missing: list[str] = []

    def __getitem__(self, key: str) -> str:
        value = self._env.get(key)
        if value:
            return value
        if key not in self.missing:
            self.missing.append(key)
        return _PLACEHOLDER

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigCheck:
    """What :func:`check_config` found; ``config`` is the file's good keys applied."""

    path: Path | None
    config: ServerConfig
    problems: tuple[Problem, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)  # may hold secrets
    places: KeyPlaces = field(default_factory=dict)

    def place(self, *keys: str) -> tuple[int, int]:
        """(line, column) of the first of ``keys`` written in the file, else (0, 0)."""
        return next((self.places[(k,)] for k in keys if (k,) in self.places), (0, 0))


class _Checker:
    def __init__(self, path: Path, text: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.text = text
        self.places = key_places(text)
        self.env = _ProbeEnv(env)
        self.base_dir = path.resolve().parent
        self.problems: list[Problem] = []

    def add(self, severity: Severity, place: tuple[int, int], message: str) -> None:
        self.problems.append(Problem(path=self.path, line=place[0], column=place[1],
                                     severity=severity, message=message))

    def apply(self, config: ServerConfig, data: Mapping[str, Any]) -> ServerConfig | ConfigError:
        try:
            return _from_mapping(config, data, self.base_dir, self.env)
        except ConfigError as exc:
            return exc

    def locate(self, message: str, prefix: tuple[str, ...]) -> tuple[int, int]:
        """The deepest key path the message names (``auth.native.tokens_env``), within
        ``prefix`` when given; else ``prefix``'s place; else line 1."""
        best: tuple[str, ...] = ()
        for token in re.findall(r"[A-Za-z_][\w-]*(?:\.[\w-]+)*", message):
            parts = tuple(token.split("."))
            if prefix and parts[0] != prefix[0]:
                continue
            while parts and parts not in self.places:
                parts = parts[:-1]
            if len(parts) > len(best):
                best = parts
        if len(prefix) > len(best) or not best:
            best = prefix
        while best and best not in self.places:
            best = best[:-1]
        return self.places.get(best, (1, 1)) if best else (1, 1)

    def report(self, error: ConfigError, prefix: tuple[str, ...]) -> None:
        message = str(error)
        if any(marker in message for marker in _MACHINE):
            self.add("note", self.locate(message, prefix),
                     f"{message} (on this machine; the one that serves may differ)")
        else:
            self.add("error", self.locate(message, prefix), message)

    def check_key(self, base: ServerConfig, key: str, value: Any) -> bool:
        """Whether ``key: value`` applies cleanly; its problems reported otherwise."""
        result = self.apply(base, {key: value})
        if not isinstance(result, ConfigError):
            return True
        narrow = key in _NARROW and isinstance(value, Mapping) and bool(value)
        if not (narrow and self.narrow(base, key, value)):
            self.report(result, (key,))
        return False

    def narrow(self, base: ServerConfig, key: str, value: Mapping[str, Any]) -> bool:
        """Report the problems of each sub-key of the section ``key`` (checked with its
        context sub-keys); False when no sub-key alone has one."""
        context = {k: value[k] for k in _NARROW[key] if k in value}
        found = False
        if context and isinstance(broken := self.apply(base, {key: context}), ConfigError):
            self.report(broken, (key, *context))
            context, found = {}, True
        for sub, sub_value in value.items():
            if sub in _NARROW[key]:
                continue
            error = self.apply(base, {key: {**context, sub: sub_value}})
            if isinstance(error, ConfigError):
                self.report(error, (key, str(sub)))
                found = True
        return found

    def check(self, data: Mapping[str, Any]) -> ServerConfig:
        try:
            base = _stack_base(data.get("stack") or DEFAULT_STACK)
        except ConfigError as exc:
            self.report(exc, ("stack",))
            base = _stack_base(DEFAULT_STACK)
        good: dict[str, Any] = {}
        later = ("webhooks", "call_webhook")  # call_webhook needs the webhooks policy
        for key, value in [*((k, v) for k, v in data.items() if k not in later),
                           *((k, data[k]) for k in later if k in data)]:
            if key == "stack":
                continue
            both = {"webhooks": good["webhooks"]} if key == "call_webhook" and \
                "webhooks" in good else {}
            if both:
                if isinstance(error := self.apply(base, {**both, key: value}), ConfigError):
                    self.report(error, (key,))
                    continue
            elif not self.check_key(base, key, value):
                continue
            good[key] = value
        config = self.apply(base, good)
        if isinstance(config, ConfigError):  # a rule that ties keys together
            self.report(config, ())
            keep: dict[str, Any] = {k: good[k] for k in ("scenarios_dir", "default_scenario")
                                    if k in good}
            config = self.apply(base, keep)
            config = base if isinstance(config, ConfigError) else config
        elif all(k in good or k not in data for k in ("host", "auth")):
            self.check_exposure(config)
        for var in self.env.missing:
            place = scalar_places(self.text).get(var, (1, 1))
            self.add("note", place, f"environment variable {var} is not set here: voicebot "
                                    "serve needs it (the secret itself was not checked)")
        return config

    def check_exposure(self, config: ServerConfig) -> None:
        place = self.places.get(("host",)) or self.places.get(("auth",)) or (1, 1)
        try:
            warning = check_exposure(config.host, config.auth)
        except ConfigError as exc:
            self.add("error", place, str(exc))
            return
        if warning is not None:
            self.add("warning", place, warning)


def check_config(path: Path | None, *, env: Mapping[str, str] | None = None) -> ConfigCheck:
    """Every problem of the configuration file ``path`` (None: the defaults, no problem);
    secrets are looked up in ``env`` (default: this process's environment)."""
    if path is None:
        return ConfigCheck(path=None, config=_stack_base(DEFAULT_STACK))
    path = resolve_config_path(Path(path))
    defaults = _stack_base(DEFAULT_STACK)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        problem = Problem(path=path, line=0, column=0, severity="error",
                          message=f"cannot read config: {exc}")
        return ConfigCheck(path=path, config=defaults, problems=(problem,))
    problems = lint_yaml(text, path)
    if any(p.severity == "error" for p in problems):  # YAML syntax
        return ConfigCheck(path=path, config=defaults, problems=tuple(problems))
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:  # composes, but does not construct (an unknown tag)
        problems.append(syntax_problem(path, exc).as_problem())
        return ConfigCheck(path=path, config=defaults, problems=tuple(problems))
    if not isinstance(data, Mapping):
        problems.append(Problem(path=path, line=1, column=1, severity="error",
                                message="the configuration must be a mapping"))
        return ConfigCheck(path=path, config=defaults, problems=tuple(problems))
    checker = _Checker(path, text, os.environ if env is None else env)
    config = checker.check(data)
    ordered = sorted([*problems, *checker.problems], key=lambda p: (p.line, p.column))
    return ConfigCheck(path=path, config=config, problems=tuple(ordered), data=data,
                       places=checker.places)


def scenario_paths(check: ConfigCheck) -> tuple[list[Path], list[Problem]]:
    """The scenario files a start with this configuration loads, or why there are none."""
    folder = check.config.scenarios_dir
    line, column = check.place("scenarios_dir")
    where = check.path if check.path is not None else folder
    raw = check.data.get("scenarios_dir")
    if not folder.is_dir():
        elsewhere = raw is not None and Path(str(raw)).expanduser().is_absolute() \
            and not folder.exists()
        message = (f"scenarios_dir {folder} is not on this machine: its scenarios were not "
                   "checked (name the scenario files after the config to check them)"
                   if elsewhere else f"scenarios_dir {folder} is not a folder")
        return [], [Problem(path=where, line=line, column=column,
                            severity="note" if elsewhere else "error", message=message)]
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        return [], [Problem(path=where, line=line, column=column, severity="error",
                            message=f"no scenarios (*.yaml) in {folder}")]
    return paths, []


def default_scenario_problem(check: ConfigCheck, names: Iterable[str]) -> Problem | None:
    """An error when the configuration's ``default_scenario`` is none of ``names``."""
    names = sorted(set(names))
    wanted = check.config.default_scenario
    if wanted in names:
        return None
    line, column = check.place("default_scenario", "scenarios_dir")
    return Problem(path=check.path if check.path is not None else check.config.scenarios_dir,
                   line=line, column=column, severity="error",
                   message=f"default scenario {wanted!r} is none of the scenarios of "
                           f"{check.config.scenarios_dir} ({', '.join(names) or 'none loads'})")
