"""Handshake authentication schemes: Twilio, Vonage, Telnyx, Exotel, jambonz, native.

Each provider's credentials (signatures, JWTs, Basic, bearer and query tokens,
trusted networks) and the signed query tokens.  The ``auth:`` section, paths,
exposure and admin: test_auth_policy.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.auth import AuthConfig, parse_auth_config
from server.auth_schemes import (
    Secret,
    SigningKey,
    mint_token,
    twilio_signature,
    twilio_url_variants,
    verify_token,
)
from tests.unit.auth_helpers import (
    ENV,
    EXOTEL_TOKEN,
    EXOTEL_USER,
    JAMBONZ_PASSWORD,
    KEY_1,
    KEY_2,
    NATIVE,
    NATIVE_2,
    NOW,
    SECTION,
    TELNYX,
    TWILIO_TOKEN,
    TWILIO_TOKEN_2,
    VONAGE_SECRET,
    bearer,
    check,
    twilio_sig,
)

__all__: list[str] = []


@pytest.fixture(scope="module")
def config() -> AuthConfig:
    return parse_auth_config(SECTION, env=ENV, base_dir=Path("/nonexistent"))


# Independent re-implementations of the documented algorithms (not the code under test).

def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwt(claims: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    head = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    sig = _b64url(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def _basic(user: str, password: str) -> tuple[str, str]:
    return "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ------------------------------------------------------------------ Twilio


def test_twilio_documented_example() -> None:
    # Twilio's request-validation example (docs/usage/security, twilio-python tests).
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
              "From": "+14158675309", "To": "+18005551212"}
    assert twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", "12345",
                            params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilio_websocket_signature(config: AuthConfig) -> None:
    url = "wss://bot.example.com/twilio"
    ok = check(config, "/twilio", ("X-Twilio-Signature", twilio_sig(url, TWILIO_TOKEN)))
    assert (ok.allowed, ok.scheme, ok.endpoints) == (True, "twilio-signature",
                                                     frozenset({"twilio"}))
    rotated = check(config, "/twilio", ("X-Twilio-Signature", twilio_sig(url, TWILIO_TOKEN_2)))
    assert rotated.allowed
    wrong = check(config, "/twilio", ("X-Twilio-Signature", twilio_sig(url, "x" * 32)))
    assert (wrong.allowed, wrong.status, wrong.reason) == (False, 401,
                                                           "twilio: bad X-Twilio-Signature")
    missing = check(config, "/twilio")
    assert (missing.status, missing.reason) == (401, "twilio: no credentials")
    assert missing.challenge == 'Bearer realm="voicebot"'


def test_twilio_signature_covers_query_and_scheme(config: AuthConfig) -> None:
    url = "wss://bot.example.com/twilio?scenario=bank_card"
    sig = ("X-Twilio-Signature", twilio_sig(url, TWILIO_TOKEN))
    assert check(config, "/twilio?scenario=bank_card", sig).allowed
    assert not check(config, "/twilio?scenario=other", sig).allowed
    assert not check(config, "/twilio", sig).allowed
    assert not check(config, "/twilio?scenario=bank_card", sig, tls=False).allowed  # ws://


@pytest.mark.parametrize("signed_url, host", [
    ("wss://bot.example.com/twilio", "bot.example.com:443"),
    ("wss://bot.example.com:443/twilio", "bot.example.com"),
    ("wss://bot.example.com:8443/twilio", "bot.example.com:8443"),
    ("wss://bot.example.com/twilio", "bot.example.com:8443"),  # the validator drops any port
])
def test_twilio_port_variants(config: AuthConfig, signed_url: str, host: str) -> None:
    sig = ("X-Twilio-Signature", twilio_sig(signed_url, TWILIO_TOKEN))
    assert check(config, "/twilio", sig, host=host).allowed


def test_twilio_url_variants() -> None:
    assert twilio_url_variants("wss://h.example/x?a=1") == (
        "wss://h.example/x?a=1", "wss://h.example:443/x?a=1")
    assert twilio_url_variants("ws://h.example:8765/x") == (
        "ws://h.example:8765/x", "ws://h.example/x")
    assert twilio_url_variants("wss://[2001:db8::1]/t") == (
        "wss://[2001:db8::1]/t", "wss://[2001:db8::1]:443/t")
    assert set(twilio_url_variants("wss://h.example/")) == {
        "wss://h.example", "wss://h.example:443", "wss://h.example/", "wss://h.example:443/"}


def test_twilio_public_url_and_trusted_proxy() -> None:
    section = {"twilio": {"auth_tokens": TWILIO_TOKEN}, "trusted_proxies": ["10.0.0.0/8"]}
    behind = parse_auth_config(section, env={}, base_dir=Path())
    public = "wss://voice.example.com/twilio"
    sig = ("X-Twilio-Signature", twilio_sig(public, TWILIO_TOKEN))
    forwarded = (("X-Forwarded-Host", "voice.example.com"), ("X-Forwarded-Proto", "https"))
    assert check(behind, "/twilio", sig, *forwarded, host="app:8765", peer="10.1.1.1",
                 tls=False).allowed
    # the same headers from an untrusted peer are not believed
    assert not check(behind, "/twilio", sig, *forwarded, host="app:8765", tls=False).allowed
    with_url = parse_auth_config({**section, "public_url": "wss://voice.example.com/vb/"},
                                 env={}, base_dir=Path())
    prefixed = ("X-Twilio-Signature",
                twilio_sig("wss://voice.example.com/vb/twilio", TWILIO_TOKEN))
    assert check(with_url, "/twilio", prefixed, host="app:8765", tls=False).allowed


# ------------------------------------------------------------------ Vonage


def _vonage_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"iat": int(NOW) - 2, "jti": "a1b2", "iss": "Vonage",
                              "api_key": "abcd1234", "application_id": "app-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def test_vonage_jwt(config: AuthConfig) -> None:
    ok = check(config, "/vonage", bearer(_jwt(_vonage_claims(), VONAGE_SECRET)))
    assert (ok.allowed, ok.scheme) == (True, "vonage-jwt")
    assert check(config, "/vonage", bearer(_jwt(_vonage_claims(exp=NOW + 60),
                                                 VONAGE_SECRET))).allowed


@pytest.mark.parametrize("token, reason", [
    (_jwt(_vonage_claims(), "another-secret-xxxxxxxx"), "bad JWT signature"),
    (_jwt(_vonage_claims(), VONAGE_SECRET, alg="none"), "JWT alg is not HS256"),
    (_jwt(_vonage_claims(), VONAGE_SECRET, alg="HS512"), "JWT alg is not HS256"),
    (_jwt(_vonage_claims(iat=NOW - 400), VONAGE_SECRET), "JWT expired"),
    (_jwt(_vonage_claims(exp=NOW - 60), VONAGE_SECRET), "JWT expired"),
    (_jwt(_vonage_claims(iat=NOW + 120), VONAGE_SECRET), "JWT not valid yet"),
    (_jwt(_vonage_claims(iat=None), VONAGE_SECRET), "JWT without a numeric iat"),
    (_jwt(_vonage_claims(iat="now"), VONAGE_SECRET), "JWT without a numeric iat"),
    (_jwt(_vonage_claims(api_key="other"), VONAGE_SECRET), "JWT api_key does not match"),
    ("not.a.jwt", "malformed JWT"),
    ("only-one-part", "malformed JWT"),
])
def test_vonage_jwt_refusals(config: AuthConfig, token: str, reason: str) -> None:
    decision = check(config, "/vonage", bearer(token))
    assert (decision.allowed, decision.status, decision.reason) == (False, 401,
                                                                    f"vonage: {reason}")


def test_vonage_jwt_within_skew_and_missing(config: AuthConfig) -> None:
    assert check(config, "/vonage",
                 bearer(_jwt(_vonage_claims(iat=NOW + 20), VONAGE_SECRET))).allowed
    assert check(config, "/vonage").reason == "vonage: no credentials"


def test_vonage_custom_authorization_value() -> None:
    config = parse_auth_config({"vonage": {"tokens": NATIVE}}, env={}, base_dir=Path())
    assert check(config, "/vonage", bearer(NATIVE)).scheme == "bearer"
    assert not check(config, "/vonage", bearer(NATIVE_2)).allowed


# ------------------------------------------------------------------ Telnyx, Exotel, jambonz


def test_telnyx_stream_token_header_or_query(config: AuthConfig) -> None:
    assert check(config, "/telnyx", bearer(TELNYX)).scheme == "bearer"
    assert check(config, f"/telnyx?token={TELNYX}").scheme == "query-token"
    assert check(config, "/telnyx", bearer("x" * 30)).reason == "telnyx: unknown bearer token"
    assert check(config, "/telnyx?token=nope").reason == "telnyx: unknown token"
    assert check(config, "/telnyx").reason == "telnyx: no credentials"


def test_exotel_basic_auth(config: AuthConfig) -> None:
    ok = check(config, "/exotel", _basic(EXOTEL_USER, EXOTEL_TOKEN))
    assert (ok.allowed, ok.scheme) == (True, "basic")
    assert check(config, "/exotel", _basic(EXOTEL_USER, "wrong")).reason == \
        "exotel: wrong Basic credentials"
    assert check(config, "/exotel", _basic("someone", EXOTEL_TOKEN)).reason == \
        "exotel: wrong Basic credentials"
    assert check(config, "/exotel", ("Authorization", "Basic !!!")).reason == \
        "exotel: malformed Basic credentials"
    assert check(config, "/exotel", ("Authorization", "Basic " + base64.b64encode(
        b"no-colon").decode())).reason == "exotel: malformed Basic credentials"
    missing = check(config, "/exotel")
    assert (missing.status, missing.challenge) == (401, 'Basic realm="voicebot"')
    assert check(config, "/exotel", bearer(EXOTEL_TOKEN)).reason == \
        "exotel: bearer not accepted"
    assert check(config, "/exotel?token=abc").reason == "exotel: query token not accepted"


def test_jambonz_basic_or_signed_token(config: AuthConfig) -> None:
    assert check(config, "/jambonz", _basic("jambonz", JAMBONZ_PASSWORD)).allowed
    token = mint_token("k1", KEY_1, "/jambonz", NOW + 60)
    assert check(config, f"/jambonz?token={token}").scheme == "signed-token"
    assert check(config, "/jambonz", ("Authorization", "Digest x=1")).reason == \
        "jambonz: this Authorization scheme not accepted"


def test_trusted_networks_and_anonymous_endpoints(config: AuthConfig) -> None:
    assert check(config, "/asterisk", peer="10.20.3.4").scheme == "network"
    assert check(config, "/asterisk").status == 401
    assert check(config, "/freeswitch").scheme == "anonymous"  # nothing configured for it


# ------------------------------------------------------------------ native: bearer, tokens


def test_native_bearer_with_rotation(config: AuthConfig) -> None:
    assert check(config, "/native", bearer(NATIVE)).scheme == "bearer"
    assert check(config, "/native", bearer(NATIVE_2)).scheme == "bearer"
    assert check(config, "/native", ("Authorization", f"bearer   {NATIVE} ")).allowed
    wrong = check(config, "/native", bearer(NATIVE[:-1] + "X"))
    assert (wrong.status, wrong.reason) == (401, "native: unknown bearer token")
    assert NATIVE[:-1] not in wrong.reason


def test_mint_token_format_is_documented() -> None:
    token = mint_token("k1", KEY_1, "/native", 1_700_000_000.9)
    mac = hmac.new(KEY_1.encode(), b"k1.1700000000./native", hashlib.sha256).digest()
    assert token == f"k1.1700000000.{_b64url(mac)}"
    assert mint_token("k1", Secret(KEY_1), "/native/", 1_700_000_000) == token
    with pytest.raises(ValueError, match="key id"):
        mint_token("bad.id", KEY_1, "/native", 1)


def test_signed_tokens(config: AuthConfig) -> None:
    token = mint_token("k1", KEY_1, "/native", NOW + 3600)
    assert check(config, f"/native?token={token}").scheme == "signed-token"
    assert check(config, f"/native/?token={token}").allowed  # same endpoint
    rotated = mint_token("k2", KEY_2, "/native", NOW + 3600)
    assert check(config, f"/native?scenario=x&token={rotated}").allowed
    expiring = mint_token("k1", KEY_1, "/native", NOW - 10)
    assert check(config, f"/native?token={expiring}").allowed  # within 30 s skew
    refusals = {
        mint_token("k1", KEY_1, "/native", NOW - 31): "token expired",
        mint_token("k1", KEY_1, "/jambonz", NOW + 60): "bad token signature",
        mint_token("k1", KEY_2, "/native", NOW + 60): "bad token signature",
        mint_token("k9", KEY_1, "/native", NOW + 60): "unknown token key id",
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"): "bad token signature",
        token.replace(str(int(NOW + 3600)), str(int(NOW + 99999))): "bad token signature",
        "k1.soon.abc": "malformed signed token",
        "garbage": "malformed signed token",
    }
    for bad, reason in refusals.items():
        decision = check(config, f"/native?token={bad}")
        assert (decision.status, decision.reason.split(" (")[0]) == (401, f"native: {reason}")


@given(st.integers(0, 200), st.characters(min_codepoint=33, max_codepoint=126))
def test_any_one_character_change_breaks_a_token(position: int, char: str) -> None:
    keys = [SigningKey("k1", Secret(KEY_1))]
    token = mint_token("k1", KEY_1, "/native", NOW + 60)
    position %= len(token)
    changed = token[:position] + char + token[position + 1:]
    if changed != token:
        assert verify_token(changed, keys, "/native", now_s=NOW) is not None


def test_verify_token_directly() -> None:
    keys = [SigningKey("k1", Secret(KEY_1))]
    token = mint_token("k1", KEY_1, "/native", 100)
    assert verify_token(token, keys, "/native", now_s=100) is None
    assert verify_token(token, keys, "/native", now_s=101) == "token expired"
    assert verify_token(token, keys, "/native", now_s=130, skew_s=30) is None
    assert verify_token("k1.²³.x", keys, "/native", now_s=0) == "malformed signed token"
