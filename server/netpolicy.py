"""Network rules of the websocket handshake: source networks, proxies, Origin, rate.

* **Source networks** — with ``allowed_networks`` set, only callers whose address is in
  one of them get through (403 otherwise).
* **Trusted proxies** — ``X-Forwarded-For`` is believed only when the direct peer is in
  ``trusted_proxies``; the caller is then the right-most address of the chain that is
  not itself a trusted proxy.
* **Origin** — a request with no ``Origin`` (telephony platforms send none), or with the
  request's own origin, or with one of ``allowed_origins``, passes; any other Origin is a
  browser page of another site trying to use the caller's network position (cross-site
  websocket hijacking): 403.
* **Rate** — a token bucket per source (IPv6: per /64) of ``max_new_connections_per_s``
  and ``burst``; at most ``max_sources`` buckets are kept (least recently used evicted).

Pure logic: the clock is passed in, nothing is read from the environment.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import urlsplit

from voicebot.errors import ConfigError

__all__ = [
    "NETWORK_KEYS",
    "HandshakeRequest",
    "IPAddress",
    "IPNetwork",
    "NetworkPolicy",
    "RateLimitConfig",
    "RateLimiter",
    "check_network",
    "client_ip",
    "in_networks",
    "normalize_origin",
    "origin_allowed",
    "parse_ip",
    "parse_network_policy",
    "parse_networks",
    "public_host",
    "rate_key",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NETWORK_KEYS = ("allowed_networks", "trusted_proxies", "allowed_origins", "rate_limit")
"""The keys of the ``auth:`` section that :func:`parse_network_policy` reads."""

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    max_new_connections_per_s: float
    burst: int
    max_sources: int = 10_000

    def __post_init__(self) -> None:
        if not self.max_new_connections_per_s > 0:
            raise ConfigError("auth.rate_limit.max_new_connections_per_s must be positive")
        if self.burst < 1 or self.max_sources < 1:
            raise ConfigError("auth.rate_limit.burst and max_sources must be at least 1")


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Empty: callers from anywhere (authentication still applies)."""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    allowed_origins: frozenset[str] = field(default_factory=frozenset)
    """Normalized (``scheme://host[:port]``, default ports dropped)."""
    rate_limit: RateLimitConfig | None = None


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """The websocket upgrade request as the server's ``process_request`` sees it."""

    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    peer_ip: str = ""
    tls: bool = False
    """The listener itself speaks TLS."""
    host: str | None = None
    """Default: the ``Host`` header."""

    @classmethod
    def from_target(cls, target: str, headers: Any, *, peer_ip: str, tls: bool = False) -> Self:
        """From ``"/twilio?x=1"`` and headers: (name, value) pairs, a mapping, or
        websockets' ``Headers`` (every value kept, via ``raw_items()``)."""
        raw_items = getattr(headers, "raw_items", None)
        items = raw_items() if callable(raw_items) else \
            headers.items() if isinstance(headers, Mapping) else headers
        path, _, query = target.partition("?")
        return cls(path=path or "/", query=query, peer_ip=peer_ip, tls=tls,
                   headers=tuple((str(k), str(v)) for k, v in items))

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [v for k, v in self.headers if k.lower() == lower]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None


# ------------------------------------------------------------------ parsing


def parse_ip(value: str) -> IPAddress | None:
    """An address (IPv4-mapped IPv6 as IPv4, brackets and zone dropped), or None."""
    text = value.strip().strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(value: Any, *, key: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8"`` or ``["192.0.2.1", "2001:db8::/32"]`` → networks (bare address: /32)."""
    if value is None:
        return ()
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{key} must be a list of CIDR networks")
    networks: list[IPNetwork] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(str(item).strip(), strict=True))
        except ValueError as exc:
            raise ConfigError(f"{key}: {item!r} is not a CIDR network ({exc})") from exc
    return tuple(networks)


def normalize_origin(origin: str) -> str | None:
    """``"HTTPS://Example.com:443/"`` → ``"https://example.com"``; None if not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or parts.username or parts.password:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_network_policy(data: Mapping[str, Any]) -> NetworkPolicy:
    """The network keys (:data:`NETWORK_KEYS`) of the ``auth:`` section."""
    origins: set[str] = set()
    raw_origins = data.get("allowed_origins") or []
    if not isinstance(raw_origins, list | tuple):
        raise ConfigError("auth.allowed_origins must be a list of origins")
    for item in raw_origins:
        normalized = normalize_origin(str(item))
        if normalized is None:
            raise ConfigError(f"auth.allowed_origins: {item!r} is not an origin "
                              "(scheme://host[:port])")
        origins.add(normalized)
    rate = data.get("rate_limit")
    limit: RateLimitConfig | None = None
    if rate is not None:
        if not isinstance(rate, Mapping):
            raise ConfigError("auth.rate_limit must be a mapping")
        unknown = set(rate) - {"max_new_connections_per_s", "burst", "max_sources"}
        if unknown:
            raise ConfigError(f"unknown key auth.rate_limit.{sorted(unknown)[0]}")
        try:
            limit = RateLimitConfig(
                max_new_connections_per_s=float(rate["max_new_connections_per_s"]),
                burst=int(rate.get("burst", 1)),
                max_sources=int(rate.get("max_sources", 10_000)))
        except KeyError as exc:
            raise ConfigError("auth.rate_limit needs max_new_connections_per_s") from exc
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"auth.rate_limit: {exc}") from exc
    return NetworkPolicy(
        allowed_networks=parse_networks(data.get("allowed_networks"),
                                        key="auth.allowed_networks"),
        trusted_proxies=parse_networks(data.get("trusted_proxies"), key="auth.trusted_proxies"),
        allowed_origins=frozenset(origins),
        rate_limit=limit)


# ------------------------------------------------------------------ decisions


def in_networks(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(peer_ip: str, forwarded_for: Sequence[str],
              trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    """The caller's address: the peer, or (peer a trusted proxy) from ``X-Forwarded-For``.

    ``forwarded_for`` holds every X-Forwarded-For header value in order. Walking the chain
    right to left, trusted proxies are skipped; the first other address is the caller. A
    malformed entry before that makes the caller unknown (None); a chain of nothing but
    trusted proxies yields its left-most address.
    """
    peer = parse_ip(peer_ip)
    if peer is None or not in_networks(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    address = peer
    for hop in reversed(hops):
        parsed = parse_ip(hop)
        if parsed is None:
            return None
        address = parsed
        if not in_networks(address, trusted_proxies):
            return address
    return address


def origin_allowed(origin: str | None, *, own_origins: Iterable[str],
                   allowed_origins: frozenset[str]) -> bool:
    """No Origin, the request's own origin, or a configured one (all normalized)."""
    if origin is None:
        return True
    normalized = normalize_origin(origin)
    if normalized is None:
        return False  # "null" (sandboxed page, file:) or garbage
    own = {o for o in (normalize_origin(x) for x in own_origins) if o is not None}
    return normalized in own or normalized in allowed_origins


def rate_key(address: IPAddress | None, peer_ip: str) -> str:
    """The bucket of a source: its address; IPv6 by /64 (one subscriber's allocation)."""
    if address is None:
        return f"peer:{peer_ip}"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class RateLimiter:
    """Token buckets of new connections per source, at most ``max_sources`` of them.

    Each source starts with ``burst`` tokens, refilled at ``max_new_connections_per_s``;
    a connection takes one. While at most ``max_sources`` sources are active, no source
    is admitted more than ``burst + rate * elapsed`` times; past that the least recently
    seen source is forgotten (it starts again with a full bucket).
    """

    def __init__(self, config: RateLimitConfig) -> None:
        self.config = config
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: str, now_s: float) -> bool:
        """Take a token of ``source``'s bucket at ``now_s``; False when it is empty."""
        rate, burst = self.config.max_new_connections_per_s, float(self.config.burst)
        entry = self._buckets.pop(source, None)
        if entry is None:
            tokens, last_s = burst, now_s
        else:
            tokens, last_s = entry
            if now_s > last_s:  # a clock going backwards refills nothing
                tokens = min(burst, tokens + (now_s - last_s) * rate)
                last_s = now_s
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, last_s)
        while len(self._buckets) > self.config.max_sources:
            self._buckets.popitem(last=False)
        return allowed


def _first(value: str | None) -> str | None:
    first = (value or "").split(",", 1)[0].strip()
    return first or None


def public_host(request: HandshakeRequest, policy: NetworkPolicy) -> tuple[str | None, bool]:
    """(host, secure) as the caller addressed us: the Host header and the listener's TLS,
    or a trusted proxy's ``X-Forwarded-Host`` / ``X-Forwarded-Proto`` (https, wss)."""
    host, secure = request.host or request.header("Host"), request.tls
    if in_networks(parse_ip(request.peer_ip), policy.trusted_proxies):
        host = _first(request.header("X-Forwarded-Host")) or host
        proto = _first(request.header("X-Forwarded-Proto"))
        secure = secure or (proto or "").lower() in ("https", "wss")
    return host, secure


def check_network(request: HandshakeRequest, policy: NetworkPolicy, *, public_url: str | None,
                  now_s: float, limiter: RateLimiter | None = None,
                  ) -> tuple[IPAddress | None, tuple[int, str] | None]:
    """(caller address, None) or (address, (403 | 429, reason)): source, Origin, rate.

    The request's own origin is ``http(s)://`` + its public host, and ``public_url``
    (``wss://`` read as ``https://``).
    """
    address = client_ip(request.peer_ip, request.header_values("X-Forwarded-For"),
                        policy.trusted_proxies)
    if policy.allowed_networks and not in_networks(address, policy.allowed_networks):
        return address, (403, "source address not allowed")
    host, secure = public_host(request, policy)
    own = [f"{'https' if secure else 'http'}://{host}"] if host else []
    if public_url:
        own.append(public_url.replace("ws", "http", 1))
    if not origin_allowed(request.header("Origin"), own_origins=own,
                          allowed_origins=policy.allowed_origins):
        return address, (403, "origin not allowed")
    if limiter is not None and not limiter.allow(rate_key(address, request.peer_ip), now_s):
        return address, (429, "too many new connections from this source")
    return address, None
