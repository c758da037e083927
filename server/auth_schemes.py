"""Credential schemes for the call-websocket handshake: pure checks, no configuration.

:mod:`server.auth` decides which schemes an endpoint accepts; this module checks one
credential against the secrets it is given. The clock is an argument.

* signed query tokens -- :func:`mint_token` (also ``voicebot token mint``, see
  :mod:`server.auth_cli`) and :func:`verify_token`:
  ``<key_id>.<expiry unix s>.<base64url HMAC-SHA256(key, "key_id.expiry.path")>``;
* Twilio -- :func:`twilio_signature` (``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with
  the account auth token) of the URL Twilio requested (:func:`twilio_signed_url`), in any
  of its :func:`twilio_url_variants` (with and without the default port);
* Vonage -- :func:`verify_hs256_jwt`: an HS256 JWT, ``iat`` at most ``max_age_s`` old;
* Basic -- :func:`verify_basic` against :class:`BasicCredential` entries.

Secrets are :class:`Secret` objects: ``repr`` is ``'***'``, comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .netpolicy import HandshakeRequest, NetworkPolicy, public_host

__all__ = [
    "KEY_ID_PATTERN",
    "BasicCredential",
    "Secret",
    "SigningKey",
    "any_match",
    "mint_token",
    "twilio_signature",
    "twilio_signed_url",
    "twilio_url_variants",
    "verify_basic",
    "verify_hs256_jwt",
    "verify_token",
]

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A signing key id (``auth.token_keys[].id``, the first part of a signed token)."""
_EXPIRY = re.compile(r"[0-9]{1,12}")


class Secret:
    """A secret value: never shown (``repr`` is ``'***'``), compared in constant time."""

    __slots__ = ("_digest", "_value")

    def __init__(self, value: str | bytes) -> None:
        self._value = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._digest = hashlib.sha256(self._value).digest()

    def reveal(self) -> bytes:
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        raw = candidate.encode("utf-8", "surrogatepass") if isinstance(candidate, str) \
            else candidate
        return hmac.compare_digest(hashlib.sha256(raw).digest(), self._digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._digest, other._digest)

    def __hash__(self) -> int:
        return hash(self._digest)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class BasicCredential:
    username: str
    password: Secret


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    secret: Secret


class _SignedUrlConfig(Protocol):
    """What :func:`twilio_signed_url` reads of the configuration (an ``AuthConfig``)."""

    @property
    def public_url(self) -> str | None: ...

    @property
    def network(self) -> NetworkPolicy: ...


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _token_mac(key: bytes, key_id: str, expiry: int, path: str) -> str:
    path = path.split("?", 1)[0].rstrip("/") or "/"
    message = f"{key_id}.{expiry}.{path}".encode()
    return _b64url(hmac.new(key, message, hashlib.sha256).digest())


def mint_token(key_id: str, key: str | bytes | Secret, path: str, expires_at: float) -> str:
    """``<key_id>.<expiry unix s>.<base64url HMAC-SHA256(key, "key_id.expiry.path")>``."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ValueError("the key id must be 1-64 of A-Z a-z 0-9 _ -")
    raw = key.reveal() if isinstance(key, Secret) else \
        key.encode("utf-8") if isinstance(key, str) else key
    expiry = int(expires_at)
    return f"{key_id}.{expiry}.{_token_mac(raw, key_id, expiry, path)}"


def verify_token(token: str, keys: Sequence[SigningKey], path: str, *, now_s: float,
                 skew_s: float = 0.0) -> str | None:
    """None if ``token`` is a valid unexpired token for ``path``; else why not."""
    parts = token.split(".")
    if len(parts) != 3 or not KEY_ID_PATTERN.fullmatch(parts[0]) or not _EXPIRY.fullmatch(parts[1]):
        return "malformed signed token"
    key_id, expiry = parts[0], int(parts[1])
    matching = [k for k in keys if k.key_id == key_id]
    if not matching:
        return "unknown token key id"
    given = parts[2].encode("utf-8", "surrogatepass")
    expected = _token_mac(matching[0].secret.reveal(), key_id, expiry, path).encode("ascii")
    if not hmac.compare_digest(expected, given):
        return "bad token signature (wrong key or path, or tampered)"
    if now_s > expiry + skew_s:
        return "token expired"
    return None


def twilio_signature(url: str, auth_token: str | bytes,
                     params: Mapping[str, str] | None = None) -> str:
    """Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(token, url + sorted k+v params))."""
    key = auth_token.encode("utf-8") if isinstance(auth_token, str) else auth_token
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    return base64.b64encode(hmac.new(key, data.encode("utf-8"), hashlib.sha1).digest()).decode()


def twilio_url_variants(url: str) -> tuple[str, ...]:
    """``url``, without its port, and with the scheme's default port (Twilio's validator
    accepts a signature of either form); for the root path also without the ``/``."""
    parts = urlsplit(url)
    if parts.path == "/" and not parts.query:
        bare_root = parts._replace(path="").geturl()
        return tuple(dict.fromkeys(twilio_url_variants(bare_root) + _port_variants(url)))
    return _port_variants(url)


def _port_variants(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    host, sep, port = parts.netloc.rpartition(":")
    has_port = bool(sep and port.isdigit() and host and not host.endswith(":"))
    bare = host if has_port else parts.netloc
    default = 443 if parts.scheme in ("https", "wss") else 80
    with_port = parts.netloc if has_port else f"{bare}:{default}"
    variants = (url, parts._replace(netloc=bare).geturl(),
                parts._replace(netloc=with_port).geturl())
    return tuple(dict.fromkeys(variants))


def twilio_signed_url(request: HandshakeRequest, config: _SignedUrlConfig) -> str | None:
    """The URL Twilio signed: ``public_url`` + path + query, else from Host and scheme."""
    target = request.path + (f"?{request.query}" if request.query else "")
    if config.public_url:
        return config.public_url + target
    host, secure = public_host(request, config.network)
    return f"{'wss' if secure else 'ws'}://{host}{target}" if host else None


def verify_hs256_jwt(token: str, secrets: Sequence[Secret], *, now_s: float, max_age_s: float,
                     skew_s: float = 0.0, claims: Mapping[str, str] | None = None) -> str | None:
    """None if ``token`` is an HS256 JWT signed with one of ``secrets``, issued (``iat``)
    at most ``max_age_s`` ago, not expired, carrying ``claims``; else why not."""
    parts = token.split(".")
    if len(parts) != 3:
        return "malformed JWT"
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, binascii.Error):
        return "malformed JWT"
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return "JWT alg is not HS256"
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    ok = False
    for secret in secrets:
        mac = hmac.new(secret.reveal(), signing_input, hashlib.sha256).digest()
        ok |= hmac.compare_digest(mac, signature)
    if not ok:
        return "bad JWT signature"
    if not isinstance(payload, dict):
        return "malformed JWT"
    times = {k: payload.get(k) for k in ("iat", "exp", "nbf")}
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
           for v in times.values()) or times["iat"] is None:
        return "JWT without a numeric iat"
    iat, exp, nbf = times["iat"], times["exp"], times["nbf"]
    if iat > now_s + skew_s or (nbf is not None and nbf > now_s + skew_s):
        return "JWT not valid yet"
    if now_s - iat > max_age_s + skew_s or (exp is not None and now_s > exp + skew_s):
        return "JWT expired"
    for name, expected in (claims or {}).items():
        if payload.get(name) != expected:
            return f"JWT {name} does not match"
    return None


def verify_basic(credential: str, accounts: Sequence[BasicCredential]) -> str | None:
    """None if ``credential`` (base64 ``user:password`` of ``Authorization: Basic``) is one
    of ``accounts``; else why not. Every account is compared (constant time)."""
    try:
        decoded = base64.b64decode(credential, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return "malformed Basic credentials"
    username, sep, password = decoded.partition(":")
    if not sep:
        return "malformed Basic credentials"
    ok = False
    for account in accounts:
        same_user = hmac.compare_digest(account.username.encode(), username.encode())
        ok |= same_user & account.password.matches(password)
    return None if ok else "wrong Basic credentials"


def any_match(secrets: Sequence[Secret], value: str) -> bool:
    """Whether ``value`` is one of ``secrets``; every secret is compared (constant time)."""
    ok = False
    for secret in secrets:
        ok |= secret.matches(value)
    return ok

