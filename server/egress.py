"""Egress policy of outgoing webhooks: which URLs and addresses may be reached, and
the ``webhooks:`` configuration section (policy plus the headers every hook gets).

A webhook URL comes from a scenario file and a redirect target from a remote server;
neither may turn the voice-bot into a proxy towards the operator's internal network
(SSRF: the cloud metadata service at 169.254.169.254, an admin port on localhost, a
database in 10.0.0.0/8).  Two checks, both pure:

* :meth:`EgressPolicy.check_url` — before anything is sent: the scheme is one of
  ``schemes``, the host is one of ``allowed_hosts`` (``hooks.example.com`` exactly, or
  ``*.example.com`` for any name *below* example.com; an empty list allows any host),
  and an IP-literal host is public unless ``allow_private``.
* :meth:`EgressPolicy.check_addresses` — after the host is resolved and before the
  connection is opened: every address it resolves to is public unless
  ``allow_private`` (one private answer refuses the host: a DNS answer that mixes a
  public and an internal address is a rebinding attempt, not a fallback).

"Private" (:func:`is_private_address`) is any address that is not globally routable:
loopback, RFC 1918, link-local (the metadata service), CGNAT 100.64.0.0/10, the
documentation, benchmarking and reserved ranges, unspecified, multicast, IPv6
loopback, ULA, link- and site-local; an IPv4-mapped, NAT64 or 6to4 IPv6 address is
judged by the IPv4 address it carries.  Host names are compared in ASCII (write an
internationalized name in its ``xn--`` form).

Pure: nothing here resolves, connects or reads the environment (``env`` is passed in).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from voicebot.errors import ConfigError

__all__ = [
    "EGRESS_KEYS",
    "WEBHOOK_KEYS",
    "EgressPolicy",
    "IPAddress",
    "WebhookConfig",
    "is_private_address",
    "normalize_host",
    "parse_egress_policy",
    "parse_headers",
    "parse_webhook_config",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

EGRESS_KEYS = ("allowed_hosts", "allow_private", "schemes", "max_redirects")
"""The keys of a configuration section that :func:`parse_egress_policy` reads."""

_SCHEMES = frozenset({"http", "https"})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")

_PRIVATE_V4 = tuple(ipaddress.IPv4Network(net) for net in (
    "0.0.0.0/8",        # "this network", unspecified
    "10.0.0.0/8",       # RFC 1918
    "100.64.0.0/10",    # carrier-grade NAT
    "127.0.0.0/8",      # loopback
    "169.254.0.0/16",   # link-local, cloud metadata 169.254.169.254
    "172.16.0.0/12",    # RFC 1918
    "192.0.0.0/24",     # IETF protocol assignments
    "192.0.2.0/24",     # TEST-NET-1
    "192.88.99.0/24",   # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",   # RFC 1918
    "198.18.0.0/15",    # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",   # TEST-NET-3
    "224.0.0.0/4",      # multicast
    "240.0.0.0/4",      # reserved, broadcast
))
_PRIVATE_V6 = tuple(ipaddress.IPv6Network(net) for net in (
    "::/96",            # unspecified, loopback, IPv4-compatible (deprecated)
    "64:ff9b:1::/48",   # local-use NAT64
    "100::/64",         # discard-only
    "2001::/23",        # IETF protocol assignments (Teredo, ORCHID, benchmarking...)
    "2001:db8::/32",    # documentation
    "3fff::/20",        # documentation
    "5f00::/16",        # SRv6 SIDs
    "fc00::/7",         # unique local
    "fe80::/10",        # link-local
    "fec0::/10",        # site-local (deprecated)
    "ff00::/8",         # multicast
))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def is_private_address(address: IPAddress) -> bool:
    """Whether ``address`` is not a globally routable unicast address (see module doc)."""
    if isinstance(address, ipaddress.IPv4Address):
        return any(address in net for net in _PRIVATE_V4)
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if embedded is not None:
        return is_private_address(embedded)
    return any(address in net for net in _PRIVATE_V6)


def normalize_host(host: str) -> str:
    """``"Hooks.Example.COM."`` → ``"hooks.example.com"``; an IP literal in its short form."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])  # drop an IPv6 zone id
    except ValueError:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressPolicy:
    """Where webhooks may go; the default allows any public host over http(s)."""

    allowed_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    schemes: tuple[str, ...] = ("https", "http")
    max_redirects: int = 3

    def __post_init__(self) -> None:
        hosts = tuple(normalize_host(host) for host in self.allowed_hosts)
        for host in hosts:
            name = host.removeprefix("*.")
            if _parse_address(name) is None and not _HOST_NAME.fullmatch(name):
                raise ConfigError(f"allowed host {host!r} is not a host name or *.domain")
        object.__setattr__(self, "allowed_hosts", hosts)
        schemes = tuple(scheme.lower() for scheme in self.schemes)
        if not schemes or not set(schemes) <= _SCHEMES:
            raise ConfigError(f"schemes must be among {sorted(_SCHEMES)}, not {schemes}")
        object.__setattr__(self, "schemes", schemes)
        if self.max_redirects < 0:
            raise ConfigError("max_redirects must not be negative")

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` matches ``allowed_hosts`` (any host when it is empty)."""
        if not self.allowed_hosts:
            return True
        host = normalize_host(host)
        return any(
            host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern
            for pattern in self.allowed_hosts
        )

    def check_url(self, url: str) -> str | None:
        """Why ``url`` may not be requested, or None when it may."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return "the URL is malformed"
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            return f"scheme {scheme or '(none)'!r} is not allowed"
        host = normalize_host(parts.hostname or "")
        if not host:
            return "the URL has no host"
        if not host.isascii():
            return f"host {host} is not ASCII (write it in its xn-- form)"
        if not self.host_allowed(host):
            return f"host {host} is not allowed"
        address = _parse_address(host)
        if address is not None and not self.allow_private and is_private_address(address):
            return f"host {host} is a private address"
        return None

    def check_addresses(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why ``host``, resolved to ``addresses``, may not be connected to, or None."""
        texts = list(addresses)
        if not texts:
            return f"host {host} resolved to no address"
        for text in texts:
            address = _parse_address(text)
            if address is None:
                return f"host {host} resolved to {text!r}, not an IP address"
            if not self.allow_private and is_private_address(address):
                return f"host {host} resolves to the private address {address}"
        return None


def _string_list(value: Any, *, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"{key} must be a list of strings")
    return tuple(items)


def parse_egress_policy(data: Mapping[str, Any], *, section: str = "webhooks") -> EgressPolicy:
    """The :data:`EGRESS_KEYS` of a configuration section (other keys are the caller's)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section} must be a mapping")
    allow_private = data.get("allow_private", False)
    if not isinstance(allow_private, bool):
        raise ConfigError(f"{section}.allow_private must be true or false")
    max_redirects = data.get("max_redirects", 3)
    if not isinstance(max_redirects, int) or isinstance(max_redirects, bool):
        raise ConfigError(f"{section}.max_redirects must be a whole number")
    schemes = _string_list(data.get("schemes", ["https", "http"]), key=f"{section}.schemes")
    try:
        return EgressPolicy(
            allowed_hosts=_string_list(data.get("allowed_hosts"),
                                       key=f"{section}.allowed_hosts"),
            allow_private=allow_private, schemes=schemes, max_redirects=max_redirects)
    except ConfigError as exc:
        raise ConfigError(f"{section}: {exc}") from exc


# ------------------------------------------------- the webhooks: section

WEBHOOK_KEYS = (*EGRESS_KEYS, "headers", "headers_env")
"""The keys of the ``webhooks:`` section."""

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RESERVED = frozenset({"host", "content-length", "content-type", "transfer-encoding",
                       "connection", "user-agent"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """The ``webhooks:`` section: the egress policy and the headers sent to every hook."""

    policy: EgressPolicy = field(default_factory=EgressPolicy)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets


def parse_headers(data: Mapping[str, Any], env: Mapping[str, str], *,
                  section: str) -> dict[str, str]:
    """``headers: {Name: value}`` plus ``headers_env: {Name: ENV_VAR}`` (a secret such as
    ``Authorization: Bearer ...`` belongs in the environment, not in the file)."""
    headers: dict[str, str] = {}
    for key in ("headers", "headers_env"):
        raw = data.get(key) or {}
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{section}.{key} must map a header name to a string")
        for name, value in raw.items():
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise ConfigError(f"{section}.{key}: {name!r} is not a header name")
            if name.lower() in _RESERVED:
                raise ConfigError(f"{section}.{key}: {name} is set by voicebot")
            if not isinstance(value, str):
                raise ConfigError(f"{section}.{key}.{name} must be a string")
            if key == "headers_env":
                if not env.get(value):
                    raise ConfigError(f"{section}.{key}.{name}: environment variable "
                                      f"{value} is not set")
                value = env[value]
            if any(char in value for char in "\r\n\0"):
                raise ConfigError(f"{section}.{key}.{name}: a header value is one line")
            headers[name] = value
    return headers


def parse_webhook_config(data: Mapping[str, Any] | None,
                         env: Mapping[str, str]) -> WebhookConfig:
    """The ``webhooks:`` section (absent: any public host, no extra header)."""
    if data is None:
        return WebhookConfig()
    if not isinstance(data, Mapping):
        raise ConfigError("webhooks must be a mapping")
    if unknown := sorted(set(data) - set(WEBHOOK_KEYS)):
        raise ConfigError(f"unknown key webhooks.{unknown[0]}")
    return WebhookConfig(policy=parse_egress_policy(data, section="webhooks"),
                         headers=parse_headers(data, env, section="webhooks"))
