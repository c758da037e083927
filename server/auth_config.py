"""The per-endpoint part of the ``auth:`` section: :class:`EndpointAuth` and its parsing.

:func:`server.auth.parse_auth_config` reads the whole section with these helpers; every
ConfigError names the bad key. Secrets come from ``<key>_env`` (a variable name, or a
list for rotation) or ``<key>_file`` (a path, or a list; one secret per file, trailing
newline dropped; relative to ``base_dir``); a literal ``<key>`` is accepted for tests.
They become :class:`~server.auth_schemes.Secret` objects. Pure logic: env is a mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from voicebot.errors import ConfigError

from .auth_schemes import KEY_ID_PATTERN, BasicCredential, Secret, SigningKey
from .netpolicy import IPNetwork, parse_networks

__all__ = [
    "MIN_SECRET_CHARS",
    "EndpointAuth",
    "check_mapping",
    "parse_endpoint",
    "parse_public_url",
    "parse_secrets",
    "parse_token_keys",
]

MIN_SECRET_CHARS = 16
"""Shortest bearer token, signing key or admin token accepted (``voicebot token new-secret``)."""

_COMMON_KEYS = frozenset({"basic", "signed_tokens", "trusted_networks"}
                         | {f"tokens{s}" for s in ("", "_env", "_file")})
_EXTRA_KEYS = {
    "twilio": frozenset(f"auth_tokens{s}" for s in ("", "_env", "_file")),
    "vonage": frozenset({f"signature_secrets{s}" for s in ("", "_env", "_file")}
                        | {"api_key", "application_id", "max_age_s"}),
}


@dataclass(frozen=True, slots=True)
class EndpointAuth:
    tokens: tuple[Secret, ...] = ()
    basic: tuple[BasicCredential, ...] = ()
    signed_tokens: bool = False
    trusted_networks: tuple[IPNetwork, ...] = ()
    twilio_auth_tokens: tuple[Secret, ...] = ()
    vonage_signature_secrets: tuple[Secret, ...] = ()
    vonage_claims: Mapping[str, str] = field(default_factory=dict)
    """Claims the Vonage JWT must carry (``api_key``, ``application_id``) when configured."""
    vonage_max_age_s: float = 300.0

    @property
    def configured(self) -> bool:
        return bool(self.tokens or self.basic or self.signed_tokens or self.trusted_networks
                    or self.twilio_auth_tokens or self.vonage_signature_secrets)


def _strings(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    if any(isinstance(v, bool) or not isinstance(v, str | int) for v in items):
        raise ConfigError(f"{key} must be a string or a list of strings")
    return [str(v) for v in items]


def parse_secrets(section: Mapping[str, Any], name: str, *, where: str,
                  env: Mapping[str, str], base_dir: Path,
                  min_chars: int = 1) -> tuple[Secret, ...]:
    """``name`` (literal), ``name_env`` (variable names), ``name_file`` (paths) → secrets."""
    found: list[tuple[str, str]] = [(f"{where}.{name}", v)
                                    for v in _strings(section.get(name), f"{where}.{name}")]
    for var in _strings(section.get(f"{name}_env"), f"{where}.{name}_env"):
        if var not in env:
            raise ConfigError(f"{where}.{name}_env: environment variable {var} is not set")
        found.append((f"{where}.{name}_env ({var})", env[var]))
    for item in _strings(section.get(f"{name}_file"), f"{where}.{name}_file"):
        path = Path(item).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            found.append((f"{where}.{name}_file ({path})", path.read_text(encoding="utf-8")))
        except (OSError, UnicodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ConfigError(f"{where}.{name}_file: cannot read {path}: {why}") from None
    secrets: list[Secret] = []
    for source, value in found:
        value = value.rstrip("\r\n")
        if len(value) < min_chars:
            raise ConfigError(f"{source}: the secret is empty or shorter than {min_chars} "
                              "characters (make one with `voicebot token new-secret`)")
        secrets.append(Secret(value))
    return tuple(secrets)


def check_mapping(value: Any, where: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    """``value`` if it is a mapping with no key outside ``allowed``; else ConfigError."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    unknown = sorted(str(k) for k in set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0][:40]} (see docs/security.md)")
    return value


def _one_secret(item: Mapping[str, Any], name: str, where: str, **kw: Any) -> Secret:
    secrets = parse_secrets(item, name, where=where, **kw)
    if len(secrets) != 1:
        raise ConfigError(f"{where} needs exactly one of {name}_env, {name}_file or {name}")
    return secrets[0]


def parse_token_keys(value: Any, *, env: Mapping[str, str],
                     base_dir: Path) -> tuple[SigningKey, ...]:
    """``auth.token_keys`` (a list of ``id`` + ``secret_env``/``_file`` entries) → keys."""
    kw: dict[str, Any] = {"env": env, "base_dir": base_dir}
    keys: list[SigningKey] = []
    raw_keys = value or []
    if not isinstance(raw_keys, list):
        raise ConfigError("auth.token_keys must be a list of id/secret_env entries")
    for i, item in enumerate(raw_keys):
        where = f"auth.token_keys[{i}]"
        item = check_mapping(item, where, {"id", "secret", "secret_env", "secret_file"})
        key_id = str(item.get("id", ""))
        if not KEY_ID_PATTERN.fullmatch(key_id) or any(k.key_id == key_id for k in keys):
            raise ConfigError(f"{where}.id must be unique, 1-64 of A-Z a-z 0-9 _ -")
        keys.append(SigningKey(key_id, _one_secret(item, "secret", where,
                                                   min_chars=MIN_SECRET_CHARS, **kw)))
    return tuple(keys)


def parse_endpoint(name: str, data: Any, *, has_keys: bool, env: Mapping[str, str],
                   base_dir: Path) -> EndpointAuth:
    """``auth.<name>`` → :class:`EndpointAuth`; ``has_keys``: ``auth.token_keys`` is set."""
    kw: dict[str, Any] = {"env": env, "base_dir": base_dir}
    where = f"auth.{name}"
    data = check_mapping(data, where, _COMMON_KEYS | _EXTRA_KEYS.get(name, frozenset()))
    signed = data.get("signed_tokens", False)
    if not isinstance(signed, bool):
        raise ConfigError(f"{where}.signed_tokens must be true or false")
    if signed and not has_keys:
        raise ConfigError(f"{where}.signed_tokens needs auth.token_keys")
    basic_items = data.get("basic") or []
    basic_items = [basic_items] if isinstance(basic_items, Mapping) else basic_items
    if not isinstance(basic_items, list):
        raise ConfigError(f"{where}.basic must be a list of username/password_env entries")
    basic = []
    for i, item in enumerate(basic_items):
        item_where = f"{where}.basic[{i}]"
        item = check_mapping(item, item_where, {"username", "password", "password_env",
                                                "password_file"})
        username = item.get("username")
        if not isinstance(username, str) or not username or ":" in username:
            raise ConfigError(f"{item_where}.username must be a non-empty string without ':'")
        basic.append(BasicCredential(username, _one_secret(item, "password", item_where, **kw)))
    claims = {k: str(data[k]) for k in ("api_key", "application_id") if data.get(k)}
    vonage = parse_secrets(data, "signature_secrets", where=where, **kw)
    if claims and not vonage:
        raise ConfigError(f"{where}.api_key/application_id need signature_secrets_env")
    try:
        max_age_s = float(data.get("max_age_s", 300.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.max_age_s must be a number") from exc
    if max_age_s <= 0:
        raise ConfigError(f"{where}.max_age_s must be positive")
    return EndpointAuth(
        tokens=parse_secrets(data, "tokens", where=where, min_chars=MIN_SECRET_CHARS, **kw),
        basic=tuple(basic), signed_tokens=signed,
        trusted_networks=parse_networks(data.get("trusted_networks"),
                                        key=f"{where}.trusted_networks"),
        twilio_auth_tokens=parse_secrets(data, "auth_tokens", where=where, **kw),
        vonage_signature_secrets=vonage, vonage_claims=MappingProxyType(claims),
        vonage_max_age_s=max_age_s)


def parse_public_url(value: Any) -> str | None:
    """``auth.public_url``: ``wss://host[:port][/prefix]`` (trailing ``/`` dropped), or None."""
    if value is None:
        return None
    parts = urlsplit(str(value))
    if parts.scheme not in ("ws", "wss") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"auth.public_url must look like wss://host[:port][/prefix], "
                          f"not {value!r}")
    return str(value).rstrip("/")

