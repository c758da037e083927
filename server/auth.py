"""Who may open a call websocket: per-endpoint authentication at the handshake.

:func:`check_handshake` sees the upgrade request (path, query, headers, peer, TLS) before
the 101 answer and returns a :class:`Decision`: allowed, or 401 / 403 / 429 with a short
reason for the log line (never a secret). The network rules (source networks, proxies,
Origin, rate) are in :mod:`server.netpolicy`. An endpoint accepts a call when any scheme
configured for it accepts the request; an endpoint with no scheme is anonymous; the
``auth: none`` setting makes every endpoint anonymous. The schemes (checked by
:mod:`server.auth_schemes`):

* ``twilio`` — ``X-Twilio-Signature`` of the wss:// URL Twilio requested;
* ``vonage`` — ``Authorization: Bearer <JWT>``, HS256 with the signature secret (the NCCO
  websocket endpoint's ``"authorization": {"type": "vonage"}``);
* any endpoint — ``tokens`` (``Authorization: Bearer`` or ``?token=``), ``basic``
  (``Authorization: Basic``), ``signed_tokens`` (``?token=`` minted by
  :func:`~server.auth_schemes.mint_token` with one of ``token_keys``),
  ``trusted_networks`` (callers from there need nothing else).

:func:`parse_auth_config` reads the ``auth:`` section (secrets from ``<key>_env`` or
``<key>_file``: :mod:`server.auth_config`). Pure logic: env is a mapping, the clock an
argument.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

from voicebot.errors import ConfigError

from .auth_config import (
    MIN_SECRET_CHARS,
    EndpointAuth,
    check_mapping,
    parse_endpoint,
    parse_public_url,
    parse_secrets,
    parse_token_keys,
)
from .auth_schemes import (
    Secret,
    SigningKey,
    any_match,
    twilio_signature,
    twilio_signed_url,
    twilio_url_variants,
    verify_basic,
    verify_hs256_jwt,
    verify_token,
)
from .netpolicy import (
    NETWORK_KEYS,
    HandshakeRequest,
    IPAddress,
    NetworkPolicy,
    RateLimiter,
    check_network,
    in_networks,
    parse_ip,
    parse_network_policy,
)

__all__ = [
    "DETECT",
    "ENDPOINTS",
    "TOKEN_PARAM",
    "AuthConfig",
    "Decision",
    "HandshakeRequest",
    "check_admin",
    "check_exposure",
    "check_handshake",
    "endpoint_for_path",
    "make_rate_limiter",
    "parse_auth_config",
]

ENDPOINTS = ("twilio", "vonage", "telnyx", "exotel", "freeswitch", "jambonz", "asterisk",
             "native")
DETECT = "/"
"""The path whose provider is detected from the first message: every endpoint's schemes."""
TOKEN_PARAM = "token"

_NOT_ACCEPTED = "not accepted"
_TOP_KEYS = frozenset({*ENDPOINTS, *NETWORK_KEYS, "token_keys", "public_url", "clock_skew_s",
                       "admin"})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    disabled: bool = False
    """``auth: none``: every endpoint anonymous, on purpose."""
    endpoints: Mapping[str, EndpointAuth] = field(default_factory=dict)
    token_keys: tuple[SigningKey, ...] = ()
    public_url: str | None = None
    """``wss://host[:port][/prefix]`` the providers connect to (Twilio signs that URL)."""
    clock_skew_s: float = 30.0
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    admin_tokens: tuple[Secret, ...] = ()

    def endpoint(self, name: str) -> EndpointAuth:
        return self.endpoints.get(name) or EndpointAuth()

    @property
    def anonymous_endpoints(self) -> tuple[str, ...]:
        return tuple(n for n in ENDPOINTS if self.disabled or not self.endpoint(n).configured)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    status: int | None
    """None when allowed; else 401 (credentials), 403 (network, Origin) or 429 (rate)."""
    reason: str
    """For the log line: fixed text, no secret, nothing copied from the request."""
    endpoints: frozenset[str] = frozenset()
    """Who the caller may be; on ``/`` the detected provider must be one of them."""
    scheme: str | None = None
    client_ip: str | None = None
    challenge: str | None = None
    """``WWW-Authenticate`` value to send with a 401."""

    def permits(self, provider: str) -> bool:
        return self.allowed and provider in self.endpoints


def parse_auth_config(data: Mapping[str, Any] | str | None, *, env: Mapping[str, str],
                      base_dir: Path) -> AuthConfig:
    """The ``auth:`` section → :class:`AuthConfig`; ConfigError names the bad key.

    ``None`` (no section): nothing configured (see :func:`check_exposure`); ``"none"``:
    authentication off on purpose. Relative ``_file`` paths are relative to ``base_dir``.
    """
    if data is None:
        return AuthConfig()
    if isinstance(data, str):
        if data.strip().lower() == "none":
            return AuthConfig(disabled=True)
        raise ConfigError("auth must be a mapping or the word none")
    data = check_mapping(data, "auth", _TOP_KEYS)
    kw: dict[str, Any] = {"env": env, "base_dir": base_dir}
    keys = parse_token_keys(data.get("token_keys"), **kw)
    endpoints = {name: parse_endpoint(name, data[name], has_keys=bool(keys), **kw)
                 for name in ENDPOINTS if name in data}
    admin = check_mapping(data.get("admin") or {}, "auth.admin",
                          {f"tokens{s}" for s in ("", "_env", "_file")})
    try:
        skew_s = float(data.get("clock_skew_s", 30.0))
    except (TypeError, ValueError) as exc:
        raise ConfigError("auth.clock_skew_s must be a number") from exc
    if skew_s < 0:
        raise ConfigError("auth.clock_skew_s must not be negative")
    return AuthConfig(
        endpoints=MappingProxyType(endpoints), token_keys=keys,
        public_url=parse_public_url(data.get("public_url")), clock_skew_s=skew_s,
        network=parse_network_policy({k: data[k] for k in NETWORK_KEYS if k in data}),
        admin_tokens=parse_secrets(admin, "tokens", where="auth.admin",
                                   min_chars=MIN_SECRET_CHARS, **kw))


def check_exposure(host: str | None, auth: AuthConfig) -> str | None:
    """Refuse to serve ``host`` openly; a warning to log at start, or None.

    With no credential configured at all, only a loopback ``host`` may be served
    (ConfigError otherwise) unless ``auth: none`` was set; that, and endpoints left
    anonymous on a non-loopback host, return a warning.
    """
    text = (host or "").strip().strip("[]").lower()
    address = parse_ip(text)
    loopback = text == "localhost" or (address is not None and address.is_loopback)
    where = host or "all interfaces"
    if auth.disabled:
        return (f"authentication is off (auth: none): anyone who can reach {where} "
                "can open calls")
    anonymous = auth.anonymous_endpoints
    if loopback or not anonymous:
        return None
    if len(anonymous) == len(ENDPOINTS):
        raise ConfigError(
            f"refusing to serve {where} with no authentication: set auth.native.tokens_env "
            "(or another scheme of docs/security.md), bind a loopback host, or set "
            "auth: none to serve without authentication on purpose")
    return f"endpoints open without authentication on {where}: " + \
        ", ".join(f"/{name}" for name in anonymous)


def check_admin(authorization: str | None, auth: AuthConfig) -> bool:
    """``Authorization: Bearer <admin token>`` (for /metrics); False when none configured."""
    word, _, credential = (authorization or "").strip().partition(" ")
    credential = credential.strip()
    if word.lower() != "bearer" or not credential or not auth.admin_tokens:
        return False
    ok = False
    for secret in auth.admin_tokens:
        ok |= secret.matches(credential)
    return ok


def _authenticate(name: str, request: HandshakeRequest, config: AuthConfig,
                  address: IPAddress | None, now_s: float) -> tuple[str | None, str | None]:
    """(scheme, None) when accepted; (None, why) when refused (why None: no credential)."""
    ep = config.endpoint(name)
    if not ep.configured:
        return "anonymous", None
    if ep.trusted_networks and in_networks(address, ep.trusted_networks):
        return "network", None
    failure: str | None = None
    signature = request.header("X-Twilio-Signature")
    if ep.twilio_auth_tokens and signature is not None:
        url = twilio_signed_url(request, config)
        given, ok = signature.strip().encode("utf-8", "surrogatepass"), False
        for variant in twilio_url_variants(url) if url else ():
            for auth_token in ep.twilio_auth_tokens:
                expected = twilio_signature(variant, auth_token.reveal()).encode()
                ok |= hmac.compare_digest(expected, given)
        if ok:
            return "twilio-signature", None
        failure = "bad X-Twilio-Signature" if url else "no Host to rebuild the signed URL"
    word, _, credential = (request.header("Authorization") or "").strip().partition(" ")
    word, credential = word.lower(), credential.strip()
    if word == "bearer" and credential:
        if any_match(ep.tokens, credential):
            return "bearer", None
        if ep.vonage_signature_secrets:
            why = verify_hs256_jwt(credential, ep.vonage_signature_secrets, now_s=now_s,
                                   max_age_s=ep.vonage_max_age_s, skew_s=config.clock_skew_s,
                                   claims=ep.vonage_claims)
            if why is None:
                return "vonage-jwt", None
            failure = failure or why
        failure = failure or ("unknown bearer token" if ep.tokens else "bearer not accepted")
    elif word == "basic" and credential:
        why = verify_basic(credential, ep.basic) if ep.basic else "Basic not accepted"
        if why is None:
            return "basic", None
        failure = failure or why
    elif word:
        failure = failure or "this Authorization scheme not accepted"
    tokens = parse_qs(request.query, keep_blank_values=True).get(TOKEN_PARAM)
    if tokens:
        token = tokens[0]
        if any_match(ep.tokens, token):
            return "query-token", None
        why = verify_token(token, config.token_keys, request.path, now_s=now_s,
                           skew_s=config.clock_skew_s) if ep.signed_tokens else \
            "unknown token" if ep.tokens else "query token not accepted"
        if why is None:
            return "signed-token", None
        failure = failure or why
    return None, failure


def endpoint_for_path(path: str) -> str | None:
    """``"/twilio"`` → ``"twilio"``, ``"/"`` → :data:`DETECT`, other paths → None."""
    path = path.split("?", 1)[0]
    if path == DETECT:
        return DETECT
    name = path.rstrip("/").removeprefix("/")
    return name if name in ENDPOINTS else None


def make_rate_limiter(config: AuthConfig) -> RateLimiter | None:
    """One per server (it holds the buckets); None when no rate limit is configured."""
    limit = config.network.rate_limit
    return RateLimiter(limit) if limit is not None else None


def check_handshake(request: HandshakeRequest, config: AuthConfig, *, now_s: float,
                    limiter: RateLimiter | None = None) -> Decision:
    """Source networks (403), Origin (403), rate (429), then the endpoint's schemes (401).

    ``now_s`` is wall-clock Unix time (token and JWT expiry). Paths that are not call
    endpoints get the network rules only (the server answers 404 for them).
    """
    address, refusal = check_network(request, config.network, public_url=config.public_url,
                                     now_s=now_s, limiter=limiter)
    ip = str(address) if address is not None else None
    if refusal is not None:
        return Decision(False, refusal[0], refusal[1], client_ip=ip)
    name = endpoint_for_path(request.path)
    if name is None:
        return Decision(True, None, "not a call endpoint", client_ip=ip)
    names = ENDPOINTS if name == DETECT else (name,)
    if config.disabled:
        return Decision(True, None, "authentication off", frozenset(names), "none", ip)
    passed: dict[str, str] = {}
    failures: list[str] = []
    for endpoint in names:
        scheme, why = _authenticate(endpoint, request, config, address, now_s)
        if scheme is not None:
            passed[endpoint] = scheme
        elif why is not None:
            failures.append(f"{endpoint}: {why}")
    # A credential checked and found wrong explains more than one of a kind not accepted.
    failures.sort(key=lambda f: f.endswith(_NOT_ACCEPTED))
    failure = failures[0] if failures else None
    if passed:
        scheme = next((s for s in passed.values() if s != "anonymous"), "anonymous")
        return Decision(True, None, f"accepted ({scheme})", frozenset(passed), scheme, ip)
    basic = any(config.endpoint(n).basic for n in names)
    return Decision(False, 401, failure or f"{'/' if name == DETECT else name}: no credentials",
                    client_ip=ip,
                    challenge='Basic realm="voicebot"' if basic else 'Bearer realm="voicebot"')
